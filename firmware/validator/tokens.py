# Ride codes (QR) and the NFC exchange: parse untrusted bytes, verify both signatures, return
# (reason, RideToken). The byte-level format is in docs/tokens.md; the credential level is in
# validator.credential. In short:
#
#   ride code   = CBOR array [credential bytes, issuer sig, dynamic bytes, rider sig, recovery id]
#   QR text     = "FV1:" + base45(ride code)
#   NFC         = SELECT (AID), READ CREDENTIAL (offset chunks of [credential, issuer sig]),
#                 CHALLENGE (reader id u32 | reader time u32 | 16 random bytes) answered with
#                 [dynamic bytes, rider sig, recovery id]
#
# Signatures are checked over the exact bytes received (the credential and dynamic part travel as
# byte strings inside the envelope), never over a re-encoding. Time and policy checks are not made
# here (validator.policy), except the issuer key's own validity (validator.keyring).
import struct

from validator import base45, cbor, p256, reasons
from validator.credential import (  # noqa: F401  (re-exported: the tokens API)
    VERSION, TAG_QR, TAG_NFC, C_VERSION, C_KEY_ID, C_ID, C_ACCOUNT, C_RIDER_KEY, C_VALID_FROM,
    C_VALID_UNTIL, C_MAX_RIDES, C_MAX_AMOUNT, C_PRODUCT, D_TIME, D_COUNTER, MAX_CRED, MAX_DYN,
    Reject, RideToken, CredCache, parse_credential, parse_dynamic, check_credential,
    rider_digest)

QR_PREFIX = "FV1:"
MAX_CODE = 400           # ride code bytes (about 235)
MAX_QR_TEXT = 4 + 600    # prefix + base45 of MAX_CODE bytes
MAX_BLOB = 400           # NFC credential blob: [credential, issuer sig]

# NFC (ISO 7816-4 APDUs over ISO 14443-4). A proprietary AID: "F0" + "FAREV1".
AID = b"\xf0FAREV1"
CLA_PROP = 0x80
INS_SELECT = 0xA4
INS_READ = 0xB0          # READ CREDENTIAL: P1P2 = offset, Le = bytes wanted
INS_CHALLENGE = 0x88     # like INTERNAL AUTHENTICATE: data = 24-byte challenge
NFC_PROTOCOL = 1
READ_CHUNK = 224         # data bytes per READ answer (+ 2 status bytes: fits a 240-byte APDU)
MAX_READS = 8            # READ commands per exchange at most
CHALLENGE_LEN = 24
SW_OK = b"\x90\x00"
SW_NOT_FOUND = 0x6A82    # SELECT of an application the device does not have
MAX_RESPONSE = 258


def _is_sig(b):
    return type(b) is bytes and len(b) == 64


def _is_recid(v):
    return type(v) is int and 0 <= v <= 3


def _uint(v):
    return type(v) is int and 0 <= v < 1 << 64


def _decode_qr(text):
    """QR text (str or bytes) -> ride code bytes. Raises Reject."""
    if isinstance(text, str):
        try:
            text = text.encode()
        except Exception:
            raise Reject(reasons.MALFORMED)
    elif not isinstance(text, (bytes, bytearray)):
        raise Reject(reasons.MALFORMED)
    # scanners end a line with CR and/or LF
    n = len(text)
    while n and text[n - 1] in (10, 13):
        n -= 1
    if n > MAX_QR_TEXT:
        raise Reject(reasons.MALFORMED)
    if text[:4] != b"FV1:":
        # another version of ours ("FV2:") is unsupported; anything else is not a ride code
        c = text.find(b":", 0, 8)
        if text[:2] == b"FV" and c > 2 and text[2:c].isdigit():
            raise Reject(reasons.UNSUPPORTED)
        raise Reject(reasons.MALFORMED)
    return base45.decode(bytes(text[4:n]))


def verify_qr(text, keyring, now, cache=None):
    """(reason, RideToken or None) for the text a QR scanner read."""
    try:
        raw = _decode_qr(text)
        a = cbor.decode(raw, max_depth=1, max_items=6, max_len=MAX_CODE)
        if type(a) is not list or len(a) != 5:
            raise Reject(reasons.MALFORMED)
        cred, isig, dyn, rsig, recid = a
        if not (type(cred) is bytes and _is_sig(isig) and type(dyn) is bytes and _is_sig(rsig)
                and _is_recid(recid)):
            raise Reject(reasons.MALFORMED)
        t, cred_hash, rider_key = check_credential(cred, isig, keyring, now, cache)
        time, counter = parse_dynamic(dyn)
        digest = rider_digest(TAG_QR, cred_hash, isig, None, dyn)
        if not p256.verify_recoverable(rider_key, digest, rsig, recid):
            raise Reject(reasons.BAD_RIDER_SIG)
        return reasons.OK, RideToken("qr", t, cred_hash, time, counter, raw)
    except Reject as e:
        return e.args[0], None
    except (cbor.CBORError, base45.Base45Error):
        return reasons.MALFORMED, None
    except (MemoryError, OSError) as e:   # the reader's fault (heap, flash), not the rider's
        return _reader_error(e)


last_error = None   # the exception behind the last READER_ERROR (the reader reports it)


def _reader_error(e):
    global last_error
    last_error = e
    return reasons.READER_ERROR, None


# --- NFC: reader side of the exchange ---

def apdu_select():
    return bytes((0x00, INS_SELECT, 0x04, 0x00, len(AID))) + AID + b"\x00"


def apdu_read(offset, length):
    return bytes((CLA_PROP, INS_READ, offset >> 8, offset & 0xFF, length))


def apdu_challenge(challenge):
    return bytes((CLA_PROP, INS_CHALLENGE, 0x00, 0x00, len(challenge))) + challenge + b"\x00"


def make_challenge(reader_id, reader_time, rand16):
    if len(rand16) != 16:
        raise ValueError("challenge needs 16 random bytes")
    return struct.pack(">II", reader_id, reader_time) + bytes(rand16)


def _transceive(exchange, apdu):
    """Data of a 9000 answer. Raises Reject(NFC_FAILED) on a broken exchange or an error status
    (UNSUPPORTED when the device does not have our application)."""
    try:
        resp = exchange(apdu)
    except Exception:  # the driver's own errors: timeout, card gone, frame errors
        raise Reject(reasons.NFC_FAILED)
    if not isinstance(resp, (bytes, bytearray)) or len(resp) < 2 or len(resp) > MAX_RESPONSE:
        raise Reject(reasons.NFC_FAILED)
    if resp[-2:] != SW_OK:
        if apdu[1] == INS_SELECT and (resp[-2] << 8 | resp[-1]) == SW_NOT_FOUND:
            raise Reject(reasons.UNSUPPORTED)
        raise Reject(reasons.NFC_FAILED)
    return bytes(resp[:-2])


def read_nfc(exchange, keyring, reader_id, now, rand16, cache=None):
    """Run the exchange with a phone or card through `exchange(apdu) -> response` and verify it.
    All APDUs come first (the device can leave the field sooner), then the signatures.
    Returns (reason, RideToken or None); the token's time is the reader's challenge time and its
    raw bytes are the transcript [credential, issuer sig, dynamic, rider sig, recid, challenge]."""
    challenge = make_challenge(reader_id, now, rand16)
    try:
        info = cbor.decode(_transceive(exchange, apdu_select()), max_depth=1, max_items=5,
                           max_len=64)
        if type(info) is not dict:
            raise Reject(reasons.MALFORMED)
        proto = info.get(1)
        total = info.get(2)
        if proto != NFC_PROTOCOL or type(proto) is not int:
            raise Reject(reasons.UNSUPPORTED if _uint(proto) else reasons.MALFORMED)
        if not _uint(total) or total == 0 or total > MAX_BLOB:
            raise Reject(reasons.MALFORMED)
        blob = bytearray(total)
        off = 0
        reads = 0
        while off < total:
            # a device may answer with fewer bytes than asked (small buffers): go on from there,
            # but a device that dribbles is cut off
            reads += 1
            if reads > MAX_READS:
                raise Reject(reasons.NFC_FAILED)
            want = min(READ_CHUNK, total - off)
            part = _transceive(exchange, apdu_read(off, want))
            n = len(part)
            if n == 0 or n > want:
                raise Reject(reasons.NFC_FAILED)
            blob[off:off + n] = part
            off += n
        answer = _transceive(exchange, apdu_challenge(challenge))

        a = cbor.decode(blob, max_depth=1, max_items=3, max_len=MAX_BLOB)
        if type(a) is not list or len(a) != 2 or type(a[0]) is not bytes or not _is_sig(a[1]):
            raise Reject(reasons.MALFORMED)
        cred, isig = a
        b = cbor.decode(answer, max_depth=1, max_items=4, max_len=MAX_RESPONSE)
        if type(b) is not list or len(b) != 3:
            raise Reject(reasons.MALFORMED)
        dyn, rsig, recid = b
        if not (type(dyn) is bytes and _is_sig(rsig) and _is_recid(recid)):
            raise Reject(reasons.MALFORMED)
        t, cred_hash, rider_key = check_credential(cred, isig, keyring, now, cache)
        _, counter = parse_dynamic(dyn)
        digest = rider_digest(TAG_NFC, cred_hash, isig, challenge, dyn)
        if not p256.verify_recoverable(rider_key, digest, rsig, recid):
            raise Reject(reasons.BAD_RIDER_SIG)
        raw = cbor.encode([cred, isig, dyn, rsig, recid, challenge])
        return reasons.OK, RideToken("nfc", t, cred_hash, now, counter, raw)
    except Reject as e:
        return e.args[0], None
    except cbor.CBORError:
        return reasons.MALFORMED, None
    except (MemoryError, OSError) as e:
        return _reader_error(e)
