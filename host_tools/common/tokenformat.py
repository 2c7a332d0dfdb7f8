"""Host-side encoding of credentials, ride codes, NFC answers and key rings (docs/tokens.md).

Constants (map keys, tags, AID, instruction bytes) come from the firmware's `validator.tokens`
and `validator.keyring`, so both sides share one definition; the bytes are produced with cbor2,
an encoder independent of the firmware's decoder, so every wallet-made code also cross-checks it.
"""
import hashlib
import struct

import cbor2

from host_tools.common.fw import validator  # noqa: F401  (puts firmware/ on sys.path)
from validator import base45, p256
from validator import keyring as fw_keyring
from validator import tokens as fw

from host_tools.common import ecsign


def encode(obj):
    # canonical=True: shortest integers and lengths, definite lengths (what the reader requires)
    return cbor2.dumps(obj, canonical=True)


# The field bounds of the reader's parse_credential (firmware/validator/credential.py): a credential
# outside them is refused as MALFORMED by every reader, so the issuer must not sign one.
U32 = 1 << 32
U64 = 1 << 64


def _check_uint(name, value, limit):
    # type() and not isinstance(): a bool would be encoded as a CBOR simple value, not an integer
    if type(value) is not int or not 0 <= value < limit:
        raise ValueError("%s must be an integer from 0 to %d, not %r" % (name, limit - 1, value))


def credential_bytes(key_id, cred_id, account, rider_pub, valid_from, valid_until,
                     max_rides, max_amount, product, version=fw.VERSION):
    """The credential's canonical CBOR. Raises ValueError for a field the reader would refuse:
    out of its range, a rider key that is not a compressed P-256 point, or valid_until before
    valid_from. (`version` is left free so that tests can make other versions.)"""
    _check_uint("issuer key id", key_id, U32)
    if type(cred_id) not in (bytes, bytearray) or len(cred_id) != 16:
        raise ValueError("credential id must be 16 bytes")
    _check_uint("account", account, U64)
    if (type(rider_pub) not in (bytes, bytearray) or len(rider_pub) != 33
            or rider_pub[0] not in (2, 3)):
        raise ValueError("rider key must be a 33-byte compressed SEC1 point")
    if p256.decode_point(bytes(rider_pub)) is None:
        raise ValueError("rider key is not a point on P-256")
    _check_uint("valid_from", valid_from, U64)
    _check_uint("valid_until", valid_until, U64)
    if valid_until < valid_from:
        raise ValueError("valid_until (%d) is before valid_from (%d)" % (valid_until, valid_from))
    _check_uint("max rides", max_rides, U32)
    _check_uint("max amount", max_amount, U64)
    _check_uint("product", product, U32)
    cred = encode({
        fw.C_VERSION: version, fw.C_KEY_ID: key_id, fw.C_ID: bytes(cred_id),
        fw.C_ACCOUNT: account, fw.C_RIDER_KEY: bytes(rider_pub),
        fw.C_VALID_FROM: valid_from, fw.C_VALID_UNTIL: valid_until,
        fw.C_MAX_RIDES: max_rides, fw.C_MAX_AMOUNT: max_amount, fw.C_PRODUCT: product,
    })
    assert len(cred) <= fw.MAX_CRED  # every field at its largest makes 115 bytes
    return cred


def sign_credential(issuer_key, cred):
    """Issuer signature (64 bytes) over the exact credential bytes."""
    sig, _ = ecsign.sign_digest(issuer_key, hashlib.sha256(cred).digest())
    return sig


def credential_blob(cred, isig):
    """What the phone stores and the NFC READ returns: [credential bytes, issuer signature]."""
    return encode([cred, isig])


def split_blob(blob):
    cred, isig = cbor2.loads(blob)
    return cred, isig


def decode_credential(cred):
    """Dict of the credential fields (for tools and reports, not for trust)."""
    m = cbor2.loads(cred)
    return {
        "version": m[fw.C_VERSION], "key_id": m[fw.C_KEY_ID], "cred_id": m[fw.C_ID].hex(),
        "account": m[fw.C_ACCOUNT], "rider_key": m[fw.C_RIDER_KEY].hex(),
        "valid_from": m[fw.C_VALID_FROM], "valid_until": m[fw.C_VALID_UNTIL],
        "max_rides": m[fw.C_MAX_RIDES], "max_amount": m[fw.C_MAX_AMOUNT],
        "product": m[fw.C_PRODUCT],
    }


def dynamic_bytes(time, counter):
    return encode({fw.D_TIME: time, fw.D_COUNTER: counter})


def rider_digest_qr(cred, isig, dyn):
    return hashlib.sha256(fw.TAG_QR + hashlib.sha256(cred).digest() + isig + dyn).digest()


def rider_digest_nfc(cred, isig, challenge, dyn):
    return hashlib.sha256(fw.TAG_NFC + hashlib.sha256(cred).digest() + isig + challenge
                          + dyn).digest()


def ride_code_bytes(rider_key, cred, isig, time, counter):
    dyn = dynamic_bytes(time, counter)
    rsig, recid = ecsign.sign_digest(rider_key, rider_digest_qr(cred, isig, dyn))
    return encode([cred, isig, dyn, rsig, recid])


def qr_text(code_bytes):
    return fw.QR_PREFIX + base45.encode(code_bytes)


def nfc_answer(rider_key, cred, isig, challenge, time, counter):
    """Data of the answer to the NFC challenge: [dynamic bytes, rider signature, recovery id]."""
    dyn = dynamic_bytes(time, counter)
    rsig, recid = ecsign.sign_digest(rider_key, rider_digest_nfc(cred, isig, challenge, dyn))
    return encode([dyn, rsig, recid])


def parse_challenge(challenge):
    """(reader id, reader time, nonce) of a 24-byte challenge."""
    reader_id, reader_time = struct.unpack(">II", challenge[:8])
    return reader_id, reader_time, challenge[8:]


def keyring_body(entries):
    """Key ring body: `entries` are dicts with key_id, public_key, valid_from, valid_until,
    status and optionally table_digest (SHA-256 of the key's table file)."""
    out = []
    for e in entries:
        m = {1: e["key_id"], 2: bytes(e["public_key"]), 3: e["valid_from"],
             4: e["valid_until"], 5: e["status"]}
        if e.get("table_digest") is not None:
            m[6] = bytes(e["table_digest"])
        out.append(m)
    return encode({1: fw_keyring.FORMAT, 2: out})
