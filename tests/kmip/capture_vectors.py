#!/usr/bin/python3
"""capture_vectors.py - KMIP TTLV known-answer vectors made by PyKMIP's own
encoder (kmip.core, Debian python3-pykmip 0.10), for tests/check_kmip_ttlv.c.

    /usr/bin/python3 tests/kmip/capture_vectors.py > tests/kmip/vectors.txt

Each line is "name hex". The requests are the ones libkm's kmip backend sends
(backends/kmip/kmip_msg.c builds them byte for byte the same); the responses
are the ones PyKMIP's server sends back, with fixed time stamps and ids.
Nothing here is secret: the keys, nonces and data are test constants.
"""
import sys

from kmip.core import attributes, enums, objects, secrets, utils
from kmip.core.factories import attributes as attr_factory
from kmip.core.messages import contents, messages, payloads
from kmip.core.messages.contents import ProtocolVersion

F = attr_factory.AttributeFactory()
TS = 1700000000
UID = "1"
KEY = bytes(range(32))
IV = bytes(range(0xA0, 0xAC))
AAD = b"libkm header and aad"
PT = b"plaintext of 23 bytes.."
CT = bytes((b * 7 + 3) & 0xFF for b in range(len(PT)))
TAG = bytes(range(0xF0, 0x100))


def version(v):
    return {(1, 4): enums.KMIPVersion.KMIP_1_4, (2, 0): enums.KMIPVersion.KMIP_2_0}[v]


def request(v, items):
    hdr = messages.RequestHeader(
        protocol_version=ProtocolVersion(*v),
        batch_order_option=contents.BatchOrderOption(True) if len(items) > 1 else None,
        batch_count=contents.BatchCount(len(items)))
    # PyKMIP's server wants a Unique Batch Item ID on every item of a batch of
    # more than one ("Batch item ID is undefined"): libkm numbers them 1, 2, ...
    bis = [messages.RequestBatchItem(
        operation=contents.Operation(op), request_payload=pl,
        unique_batch_item_id=(contents.UniqueBatchItemID(bytes([i + 1]))
                              if len(items) > 1 else None))
        for i, (op, pl) in enumerate(items)]
    m = messages.RequestMessage(request_header=hdr, batch_items=bis)
    s = utils.BytearrayStream()
    m.write(s, kmip_version=version(v))
    return bytes(s.buffer)


def response(v, items):
    hdr = messages.ResponseHeader(
        protocol_version=ProtocolVersion(*v),
        time_stamp=contents.TimeStamp(TS),
        batch_count=contents.BatchCount(len(items)))
    bis = []
    for op, pl, status, reason, msg in items:
        bis.append(messages.ResponseBatchItem(
            operation=contents.Operation(op) if op is not None else None,
            result_status=contents.ResultStatus(status),
            result_reason=contents.ResultReason(reason) if reason is not None else None,
            result_message=contents.ResultMessage(msg) if msg is not None else None,
            response_payload=pl))
    m = messages.ResponseMessage(response_header=hdr, batch_items=bis)
    s = utils.BytearrayStream()
    m.write(s, kmip_version=version(v))
    return bytes(s.buffer)


def aes_template(name, mask, sensitive=False):
    attrs = [
        F.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_ALGORITHM,
                           enums.CryptographicAlgorithm.AES),
        F.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_LENGTH, 256),
        F.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_USAGE_MASK, mask),
        F.create_attribute(enums.AttributeType.NAME, attributes.Name.create(
            name, enums.NameType.UNINTERPRETED_TEXT_STRING)),
    ]
    if sensitive:
        attrs.append(F.create_attribute(enums.AttributeType.SENSITIVE, True))
    return objects.TemplateAttribute(attributes=attrs)


def hmac_template(name, sensitive=False):
    attrs = [
        F.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_USAGE_MASK,
                           [enums.CryptographicUsageMask.MAC_GENERATE,
                            enums.CryptographicUsageMask.MAC_VERIFY]),
        F.create_attribute(enums.AttributeType.NAME, attributes.Name.create(
            name, enums.NameType.UNINTERPRETED_TEXT_STRING)),
    ]
    if sensitive:
        attrs.append(F.create_attribute(enums.AttributeType.SENSITIVE, True))
    return objects.TemplateAttribute(attributes=attrs)


def raw_key(alg, material):
    return secrets.SymmetricKey(objects.KeyBlock(
        key_format_type=objects.KeyFormatType(enums.KeyFormatType.RAW),
        key_value=objects.KeyValue(key_material=objects.KeyMaterial(material)),
        cryptographic_algorithm=attributes.CryptographicAlgorithm(alg),
        cryptographic_length=attributes.CryptographicLength(len(material) * 8)))


def gcm_params():
    return attributes.CryptographicParameters(
        block_cipher_mode=enums.BlockCipherMode.GCM,
        cryptographic_algorithm=enums.CryptographicAlgorithm.AES,
        tag_length=16)


def main():
    ok = enums.ResultStatus.SUCCESS
    Op = enums.Operation
    usage = [enums.CryptographicUsageMask.ENCRYPT, enums.CryptographicUsageMask.DECRYPT]
    out = []
    for v in ((1, 4), (2, 0)):
        tag = "%d%d" % v
        create = payloads.CreateRequestPayload(
            object_type=enums.ObjectType.SYMMETRIC_KEY,
            template_attribute=aes_template("libkm-test", usage))
        out.append(("create_req_" + tag, request(v, [(Op.CREATE, create)])))
        out.append(("create_resp_" + tag, response(v, [
            (Op.CREATE, payloads.CreateResponsePayload(
                object_type=enums.ObjectType.SYMMETRIC_KEY, unique_identifier=UID),
             ok, None, None)])))
    v = (1, 4)
    # PyKMIP's server cannot parse an Activate without a Unique Identifier (the
    # ID placeholder of a Create in the same batch): Activate goes on its own
    out.append(("activate_req", request(v, [
        (Op.ACTIVATE, payloads.ActivateRequestPayload(
            unique_identifier=attributes.UniqueIdentifier(UID)))])))
    out.append(("activate_resp", response(v, [
        (Op.ACTIVATE, payloads.ActivateResponsePayload(
            unique_identifier=attributes.UniqueIdentifier(UID)), ok, None, None)])))
    out.append(("discover_req", request(v, [
        (Op.DISCOVER_VERSIONS, payloads.DiscoverVersionsRequestPayload(
            protocol_versions=[ProtocolVersion(2, 0), ProtocolVersion(1, 4)]))])))
    out.append(("discover_resp", response(v, [
        (Op.DISCOVER_VERSIONS, payloads.DiscoverVersionsResponsePayload(
            protocol_versions=[ProtocolVersion(2, 0), ProtocolVersion(1, 4)]), ok, None, None)])))
    out.append(("encrypt_req", request(v, [
        (Op.ENCRYPT, payloads.EncryptRequestPayload(
            unique_identifier=UID, cryptographic_parameters=gcm_params(), data=PT,
            iv_counter_nonce=IV, auth_additional_data=AAD))])))
    out.append(("encrypt_resp", response(v, [
        (Op.ENCRYPT, payloads.EncryptResponsePayload(
            unique_identifier=UID, data=CT, auth_tag=TAG), ok, None, None)])))
    out.append(("decrypt_req", request(v, [
        (Op.DECRYPT, payloads.DecryptRequestPayload(
            unique_identifier=UID, cryptographic_parameters=gcm_params(), data=CT,
            iv_counter_nonce=IV, auth_additional_data=AAD, auth_tag=TAG))])))
    out.append(("decrypt_resp", response(v, [
        (Op.DECRYPT, payloads.DecryptResponsePayload(unique_identifier=UID, data=PT),
         ok, None, None)])))
    out.append(("revoke_destroy_req", request(v, [
        (Op.REVOKE, payloads.RevokeRequestPayload(
            unique_identifier=attributes.UniqueIdentifier(UID),
            revocation_reason=objects.RevocationReason(
                code=enums.RevocationReasonCode.CESSATION_OF_OPERATION))),
        (Op.DESTROY, payloads.DestroyRequestPayload(
            unique_identifier=attributes.UniqueIdentifier(UID)))])))
    out.append(("get_req", request(v, [
        (Op.GET, payloads.GetRequestPayload(unique_identifier=UID))])))
    key = secrets.SymmetricKey(objects.KeyBlock(
        key_format_type=objects.KeyFormatType(enums.KeyFormatType.RAW),
        key_value=objects.KeyValue(key_material=objects.KeyMaterial(KEY)),
        cryptographic_algorithm=attributes.CryptographicAlgorithm(
            enums.CryptographicAlgorithm.AES),
        cryptographic_length=attributes.CryptographicLength(256)))
    out.append(("get_resp", response(v, [
        (Op.GET, payloads.GetResponsePayload(
            object_type=enums.ObjectType.SYMMETRIC_KEY, unique_identifier=UID, secret=key),
         ok, None, None)])))
    for rv in ((1, 4), (2, 0)):
        out.append(("register_hmac_req_%d%d" % rv, request(rv, [
            (Op.REGISTER, payloads.RegisterRequestPayload(
                object_type=enums.ObjectType.SYMMETRIC_KEY,
                template_attribute=hmac_template("libkm-test"),
                managed_object=raw_key(enums.CryptographicAlgorithm.HMAC_SHA256, KEY)))])))
    out.append(("register_resp", response(v, [
        (Op.REGISTER, payloads.RegisterResponsePayload(unique_identifier=UID), ok, None, None)])))
    out.append(("mac_req", request(v, [
        (Op.MAC, payloads.MACRequestPayload(
            unique_identifier=attributes.UniqueIdentifier(UID),
            cryptographic_parameters=attributes.CryptographicParameters(
                cryptographic_algorithm=enums.CryptographicAlgorithm.HMAC_SHA256),
            data=objects.Data(PT)))])))
    out.append(("mac_resp", response(v, [
        (Op.MAC, payloads.MACResponsePayload(
            unique_identifier=attributes.UniqueIdentifier(UID), mac_data=objects.MACData(TAG * 2)),
         ok, None, None)])))
    out.append(("failure_resp", response(v, [
        (Op.DECRYPT, None, enums.ResultStatus.OPERATION_FAILED,
         enums.ResultReason.GENERAL_FAILURE, "Invalid tag")])))
    out.append(("not_found_resp", response(v, [
        (Op.ENCRYPT, None, enums.ResultStatus.OPERATION_FAILED,
         enums.ResultReason.ITEM_NOT_FOUND, "Could not locate object: 7")])))
    # Sensitive = true after the other attributes (PyKMIP 0.10 knows no
    # Extractable: libkm's Extractable = false has no vector)
    for rv in ((1, 4), (2, 0)):
        out.append(("create_sensitive_req_%d%d" % rv, request(rv, [
            (Op.CREATE, payloads.CreateRequestPayload(
                object_type=enums.ObjectType.SYMMETRIC_KEY,
                template_attribute=aes_template("libkm-test", usage, True)))])))
        out.append(("register_hmac_sensitive_req_%d%d" % rv, request(rv, [
            (Op.REGISTER, payloads.RegisterRequestPayload(
                object_type=enums.ObjectType.SYMMETRIC_KEY,
                template_attribute=hmac_template("libkm-test", True),
                managed_object=raw_key(enums.CryptographicAlgorithm.HMAC_SHA256, KEY)))])))
    # RSA: CreateKeyPair (the private key Sensitive, the public key named
    # "<name>-public") and Sign (PSS, SHA-256; PyKMIP knows no Salt Length)
    for rv in ((1, 4), (2, 0)):
        common = objects.TemplateAttribute(attributes=[
            F.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_ALGORITHM,
                               enums.CryptographicAlgorithm.RSA),
            F.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_LENGTH, 2048)],
            tag=enums.Tags.COMMON_TEMPLATE_ATTRIBUTE)
        private = objects.TemplateAttribute(attributes=[
            F.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_USAGE_MASK,
                               [enums.CryptographicUsageMask.SIGN]),
            F.create_attribute(enums.AttributeType.NAME, attributes.Name.create(
                "libkm-test", enums.NameType.UNINTERPRETED_TEXT_STRING)),
            F.create_attribute(enums.AttributeType.SENSITIVE, True)],
            tag=enums.Tags.PRIVATE_KEY_TEMPLATE_ATTRIBUTE)
        public = objects.TemplateAttribute(attributes=[
            F.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_USAGE_MASK,
                               [enums.CryptographicUsageMask.VERIFY]),
            F.create_attribute(enums.AttributeType.NAME, attributes.Name.create(
                "libkm-test-public", enums.NameType.UNINTERPRETED_TEXT_STRING))],
            tag=enums.Tags.PUBLIC_KEY_TEMPLATE_ATTRIBUTE)
        out.append(("create_key_pair_req_%d%d" % rv, request(rv, [
            (Op.CREATE_KEY_PAIR, payloads.CreateKeyPairRequestPayload(
                common_template_attribute=common,
                private_key_template_attribute=private,
                public_key_template_attribute=public))])))
    out.append(("sign_req", request(v, [
        (Op.SIGN, payloads.SignRequestPayload(
            unique_identifier=UID,
            cryptographic_parameters=attributes.CryptographicParameters(
                padding_method=enums.PaddingMethod.PSS,
                hashing_algorithm=enums.HashingAlgorithm.SHA_256,
                cryptographic_algorithm=enums.CryptographicAlgorithm.RSA),
            data=PT))])))
    for name, b in out:
        sys.stdout.write("%s %s\n" % (name, b.hex()))


if __name__ == "__main__":
    main()
