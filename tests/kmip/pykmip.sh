#!/bin/sh
# tests/kmip/pykmip.sh - the test PKI and server configuration for a PyKMIP
# server started by tests/check_kmip.c (issue 19).
#
#   pykmip.sh certs DIR        makes in DIR: ca.crt (EC P-256 CA), server.crt/key
#                              (SAN IP:127.0.0.1, serverAuth), server-both.crt/key
#                              (the same with clientAuth too: etcd's JSON gateway
#                              dials etcd with it, tests/etcdtest.c), client.crt/key (CN
#                              libkm-a, clientAuth), client2.crt/key (CN libkm-b),
#                              noeku.crt/key (no clientAuth), other-ca.crt with
#                              other.crt/key (a client of another CA), and
#                              client-enc.key (client.key under a passphrase)
#   pykmip.sh conf DIR PORT [PKI]
#                              writes DIR/server.conf for 127.0.0.1:PORT (database
#                              and policies in DIR; the certificates of PKI, by
#                              default DIR)
#
# PyKMIP 0.10 needs TLS 1.2 with its ECDHE-ECDSA AES-GCM suites, hence EC
# certificates; a client certificate must carry the clientAuth EKU.
set -eu
cmd=$1
dir=$2
cd "$dir"

ca() { # name cn
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
        -out "$1.crt" -days 3 -subj "/CN=$2" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}

leaf() { # name cn ca eku-line san-line
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
        -out "$1.csr" -subj "/CN=$2" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\n%s\n%s\n' \
        "$4" "$5" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial \
        -out "$1.crt" -days 3 -extfile "$1.ext" 2>/dev/null
    chmod 600 "$1.key"
    rm -f "$1.csr" "$1.ext"
}

case $cmd in
certs)
    ca ca "libkm test CA"
    ca other-ca "another CA"
    leaf server 127.0.0.1 ca extendedKeyUsage=serverAuth subjectAltName=IP:127.0.0.1
    leaf server-both 127.0.0.1 ca extendedKeyUsage=serverAuth,clientAuth subjectAltName=IP:127.0.0.1
    leaf client libkm-a ca extendedKeyUsage=clientAuth ""
    leaf client2 libkm-b ca extendedKeyUsage=clientAuth ""
    leaf noeku libkm-c ca extendedKeyUsage=serverAuth ""
    leaf other libkm-a other-ca extendedKeyUsage=clientAuth ""
    openssl pkey -in client.key -aes256 -passout pass:secret -out client-enc.key 2>/dev/null
    chmod 600 ca.key other-ca.key client-enc.key
    ;;
conf)
    pki=${4:-$dir}
    mkdir -p policies
    cat > server.conf <<CONF
[server]
hostname=127.0.0.1
port=$3
certificate_path=$pki/server.crt
key_path=$pki/server.key
ca_path=$pki/ca.crt
auth_suite=TLS1.2
enable_tls_client_auth=True
policy_path=$dir/policies
database_path=$dir/pykmip.db
logging_level=INFO
CONF
    ;;
*)
    echo "usage: pykmip.sh certs DIR | conf DIR PORT [PKI]" >&2
    exit 2
    ;;
esac
