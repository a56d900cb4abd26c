#!/bin/sh
# kmctl_backends.sh - kmctl with a TPM 2.0 (swtpm) and a PKCS#11 token (SoftHSM2), both
# started here with temporary state and stopped at the end: backend add, keys with
# --protection tpm2|pkcs11 through the demo's operations, the TPM keyslot opened with
# KM_TPM2_TCTI and no passphrase, and not with another TPM.
# A missing swtpm or SoftHSM2 is a failure, never a skip. Run by make check.
set -u
: "${top_builddir:=.}"
. "$(dirname "$0")/lib.sh"
lib_init kmctl_backends
LIB_SHOW_ERR=1
KMCTL="$top_builddir/src/kmctl/kmctl"
case $KMCTL in /*) ;; *) KMCTL="$PWD/$KMCTL" ;; esac
[ -x "$KMCTL" ] || lib_die "$KMCTL is not built"
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3
MODULE=$LIB_P11_MODULE
lib_need_tools swtpm tpm2_dictionarylockout softhsm2-util openssl
lib_need_softhsm

lib_tmpdir
cd "$tmp" || exit 1
TSS2_LOG=all+NONE
export TSS2_LOG

lib_swtpm_start "$tmp/tpm-a" || lib_die "cannot start swtpm A"
tcti_a=$tcti
lib_swtpm_start "$tmp/tpm-b" || lib_die "cannot start swtpm B"
tcti_b=$tcti

lib_softhsm "$tmp" kmtest 5678 4321 || lib_die "cannot make the SoftHSM2 token"

# token discovery (pkcs11-helper): one line per initialised token, stable ids
t 0 "backend tokens" - backend tokens --module "$MODULE"
check "one token listed, with its label" \
    sh -c '[ "$(wc -l <out)" -eq 1 ] && [ "$(cut -f2 out)" = kmtest ]'
cp out tokens.1
t 0 "backend tokens again" - backend tokens --module "$MODULE"
check "the serialised token id is stable" cmp -s out tokens.1
t 1 "backend tokens without --module" - backend tokens
t 7 "backend tokens of a missing module" - backend tokens --module "$tmp/no-such-module.so"

export KM_VAULT="$tmp/vault" KM_PASSPHRASE="backends test passphrase"
printf 'attack at dawn\n' >msg

t 0 "init" - init --kdf-cost 14

# ---------------------------------------------------------------- TPM keys
t 1 "backend add tpm2 without --tcti" - backend add tpm2
t 0 "backend add tpm2" - backend add tpm2 --tcti "$tcti_a"
t 0 "create a TPM signing key" - key create tsig --type ec-p256 --protection tpm2
t 0 "create a TPM-sealed AES key" - key create taes --type aes-256-gcm --protection tpm2
t 0 "key info shows the protection" - key info tsig --json
check "protection tpm2" grep -q '"protection": *"tpm2"' out
t 0 "encrypt with a TPM key" msg encrypt taes
cp out taes.ct
t 0 "decrypt with a TPM key" taes.ct decrypt
check "the TPM key round-trips" cmp -s out msg
t 0 "sign in the TPM" msg sign tsig --raw
cp out tsig.sig
t 0 "verify the TPM signature" msg verify tsig tsig.sig --raw
t 0 "public key of the TPM key" - key public tsig
cp out tsig.pem
check "openssl verifies the TPM signature" \
    openssl dgst -sha256 -verify tsig.pem -signature tsig.sig msg
t 0 "rotate the TPM key" - key rotate tsig
t 0 "sign with the new TPM version" msg sign tsig

# ---------------------------------------------------------------- the TPM keyslot
t 0 "keyslot add tpm2" - keyslot add tpm2 --tcti "$tcti_a"
(unset KM_PASSPHRASE; KM_TPM2_TCTI="$tcti_a" "$KMCTL" key list >out 2>err)
check "the vault opens with the TPM and no passphrase" [ $? -eq 0 ]
check "and lists its keys" grep -q '^taes' out
(unset KM_PASSPHRASE; KM_TPM2_TCTI="$tcti_a" "$KMCTL" decrypt <taes.ct >out 2>err)
check "opened by the TPM, it decrypts" cmp -s out msg
(unset KM_PASSPHRASE; KM_TPM2_TCTI="$tcti_b" "$KMCTL" key list >out 2>err)
check "another TPM does not open it (exit 5)" [ $? -eq 5 ]
(unset KM_PASSPHRASE; unset KM_TPM2_TCTI; "$KMCTL" key list >out 2>err)
check "no passphrase and no TPM: a usage error" [ $? -eq 1 ]
t 0 "keyslot add tpm2 bound to PCR 16" - keyslot add tpm2 --tcti "$tcti_b" --pcrs sha256:16
t 1 "--pcrs with a bad PCR" - keyslot add tpm2 --tcti "$tcti_b" --pcrs sha256:99
(unset KM_PASSPHRASE; KM_TPM2_TCTI="$tcti_b" "$KMCTL" key list >out 2>err)
check "TPM B opens through its PCR-bound slot" [ $? -eq 0 ]
TPM2TOOLS_TCTI="$tcti_b" tpm2_pcrextend 16:sha256=0000000000000000000000000000000000000000000000000000000000000002 >/dev/null 2>&1
check "PCR 16 extended" [ $? -eq 0 ]
(unset KM_PASSPHRASE; KM_TPM2_TCTI="$tcti_b" "$KMCTL" key list >out 2>err)
check "after the PCR changed, TPM B does not open it (exit 5)" [ $? -eq 5 ]
t 0 "audit records the keyslot" - audit show
check "the keyslot entry" grep -q '"op":"keyslot.add","result":"OK","detail":"tpm2"' out
# a rekey re-seals the device keyslot it can (the TPM registered by backend add, A) and
# drops the other (B's, bound to a PCR that has changed)
printf 'rekeyed backends passphrase' >"$tmp/newpass"
t 0 "vault rekey with two TPM keyslots" - vault rekey --new-passphrase-file "$tmp/newpass"
(unset KM_PASSPHRASE; KM_TPM2_TCTI="$tcti_a" "$KMCTL" key list >out 2>err)
check "after the rekey, TPM A still opens the vault alone" [ $? -eq 0 ]
(unset KM_PASSPHRASE; KM_TPM2_TCTI="$tcti_a" "$KMCTL" decrypt <taes.ct >out 2>err)
check "and decrypts with it" cmp -s out msg
"$KMCTL" key list >out 2>err
check "the old passphrase no longer opens it (exit 5)" [ $? -eq 5 ]
export KM_PASSPHRASE="rekeyed backends passphrase"
t 0 "the new passphrase opens it" - audit show
check "the rekey entry counts the keyslots" \
    grep -q '"op":"vault.rekey","result":"OK","detail":"new master key; keyslots replaced by one passphrase, 1 device keyslot(s) re-sealed, 1 dropped"' out

# ---------------------------------------------------------------- PKCS#11 keys
t 1 "backend add pkcs11 without a pkcs11: URI" - backend add pkcs11 --module "$MODULE" --token-uri token=kmtest
t 0 "backend add pkcs11" - backend add pkcs11 --module "$MODULE" --token-uri "pkcs11:token=kmtest"
export KM_PKCS11_PIN=4321
t 0 "create an HSM AES key" - key create haes --type aes-256-gcm --protection pkcs11
t 0 "create an HSM signing key" - key create hsig --type ec-p256 --protection pkcs11
t 0 "encrypt with the HSM key" msg encrypt haes
cp out haes.ct
t 0 "decrypt with the HSM key" haes.ct decrypt
check "the HSM key round-trips" cmp -s out msg
t 0 "sign in the HSM" msg sign hsig --raw
cp out hsig.sig
t 0 "verify the HSM signature" msg verify hsig hsig.sig --raw
t 0 "public key of the HSM key" - key public hsig
cp out hsig.pem
check "openssl verifies the HSM signature" \
    openssl dgst -sha256 -verify hsig.pem -signature hsig.sig msg
t 0 "rotate the HSM key" - key rotate haes
t 0 "decrypt the old ciphertext after rotation" haes.ct decrypt
check "still the message" cmp -s out msg
unset KM_PKCS11_PIN
"$KMCTL" decrypt <haes.ct >out 2>err
rc=$?
check "no PIN: refused (exit $rc)" [ $rc -ne 0 ]
check "the error never shows a PIN" sh -c '! grep -q 4321 err'
printf '4321\n' >"$tmp/pin"
chmod 600 "$tmp/pin"
t 1 "--pin-file without --store-pin" - backend add pkcs11 --module "$MODULE" --token-uri "pkcs11:token=kmtest" --pin-file "$tmp/pin"
t 0 "backend add pkcs11 --store-pin" - backend add pkcs11 --module "$MODULE" --token-uri "pkcs11:token=kmtest" --pin-file "$tmp/pin" --store-pin
t 0 "the sealed PIN serves" haes.ct decrypt
check "decrypt with the sealed PIN" cmp -s out msg
check "the PIN is not in the vault file in clear" sh -c '! grep -q "pin=4321" "$1/data.mdb"' - "$tmp/vault"

lib_summary
