# Credentials, ride codes and the NFC exchange: parse untrusted bytes, verify both signatures,
# return (reason, RideToken). The byte-level format is in docs/tokens.md; in short:
#
#   credential  = CBOR map {1 version, 2 issuer key id, 3 credential id, 4 account, 5 rider key,
#                           6 valid_from, 7 valid_until, 8 max rides, 9 max amount, 10 product}
#   issuer sig  = ECDSA P-256 over SHA-256(credential bytes)                 (64 bytes r||s)
#   dynamic     = CBOR map {1 time, 2 counter}
#   ride code   = CBOR array [credential bytes, issuer sig, dynamic bytes, rider sig, recovery id]
#   QR text     = "FV1:" + base45(ride code)
#   rider sig   = ECDSA P-256 over SHA-256(TAG_QR || SHA-256(credential) || issuer sig || dynamic)
#   NFC answer  = rider sig over SHA-256(TAG_NFC || SHA-256(credential) || issuer sig || challenge
#                 || dynamic), challenge = reader id u32 | reader time u32 | 16 random bytes
#
# Signatures are checked over the exact bytes received (the credential and dynamic part travel as
# byte strings inside the envelope), never over a re-encoding. Time and policy checks are not made
# here (validator.policy), except the issuer key's own validity (validator.keyring).
import hashlib
import struct

from validator import base45, cbor, p256, reasons

VERSION = 1
QR_PREFIX = "FV1:"
TAG_QR = b"FV-ride-qr-1"
TAG_NFC = b"FV-ride-nfc-1"

# credential map keys
C_VERSION = 1
C_KEY_ID = 2
C_ID = 3
C_ACCOUNT = 4
C_RIDER_KEY = 5
C_VALID_FROM = 6
C_VALID_UNTIL = 7
C_MAX_RIDES = 8
C_MAX_AMOUNT = 9
C_PRODUCT = 10
# dynamic part map keys
D_TIME = 1
D_COUNTER = 2

# Bounds on untrusted sizes
MAX_CRED = 200           # credential bytes (a full one is about 90)
MAX_DYN = 32             # dynamic part bytes
MAX_CODE = 400           # ride code bytes (about 240)
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

_U32 = 1 << 32
_U64 = 1 << 64


class RideToken:
    """A ride code (or NFC answer) whose two signatures verified. Fields as in docs/design.md."""

    def __init__(self, kind, cred, cred_hash, time, counter, raw):
        self.kind = kind
        self.cred_id = cred[1]
        self.cred_hash = cred_hash
        self.account = cred[2]
        self.key_id = cred[0]
        self.valid_from = cred[4]
        self.valid_until = cred[5]
        self.max_rides = cred[6]
        self.max_amount = cred[7]
        self.product = cred[8]
        self.time = time
        self.counter = counter
        self.raw = raw

    def __repr__(self):
        return "<RideToken %s account=%d counter=%d time=%d>" % (
            self.kind, self.account, self.counter, self.time)


class _Reject(Exception):
    pass


class CredCache:
    """Credentials whose issuer signature verified recently, keyed by SHA-256 of the credential
    bytes. A hit needs the same issuer signature bytes and the same issuer public key, so a
    tampered signature or a replaced key is never served from the cache. Least recently used
    entries go first."""

    def __init__(self, size=64):
        self.size = size
        self._d = {}      # cred_hash -> [stamp, issuer sig, issuer public key, cred tuple]
        self._stamp = 0
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._d)

    def get(self, cred_hash, isig):
        e = self._d.get(cred_hash)
        if e is None or e[1] != isig:
            self.misses += 1
            return None
        self._stamp += 1
        e[0] = self._stamp
        self.hits += 1
        return e

    def put(self, cred_hash, isig, issuer_key, cred):
        d = self._d
        if cred_hash not in d and len(d) >= self.size:
            old = None
            oldest = None
            for h in d:
                s = d[h][0]
                if oldest is None or s < oldest:
                    oldest = s
                    old = h
            del d[old]
        self._stamp += 1
        d[cred_hash] = [self._stamp, isig, issuer_key, cred]

    def clear(self):
        self._d = {}


def _uint(v, limit=_U64):
    return type(v) is int and 0 <= v < limit


def parse_credential(cred):
    """Credential bytes -> tuple (key_id, cred_id, account, rider_key, valid_from, valid_until,
    max_rides, max_amount, product). Raises _Reject(reason)."""
    if len(cred) > MAX_CRED:
        raise _Reject(reasons.MALFORMED)
    m = cbor.decode(cred, max_depth=1, max_items=21, max_len=MAX_CRED)
    if type(m) is not dict:
        raise _Reject(reasons.MALFORMED)
    v = m.get(C_VERSION)
    if v != VERSION or type(v) is not int:
        raise _Reject(reasons.UNSUPPORTED if _uint(v) else reasons.MALFORMED)
    if len(m) != 10:
        raise _Reject(reasons.MALFORMED)
    t = (m.get(C_KEY_ID), m.get(C_ID), m.get(C_ACCOUNT), m.get(C_RIDER_KEY),
         m.get(C_VALID_FROM), m.get(C_VALID_UNTIL), m.get(C_MAX_RIDES), m.get(C_MAX_AMOUNT),
         m.get(C_PRODUCT))
    cid = t[1]
    rk = t[3]
    if not (_uint(t[0], _U32) and type(cid) is bytes and len(cid) == 16 and _uint(t[2])
            and type(rk) is bytes and len(rk) == 33 and rk[0] in (2, 3)
            and _uint(t[4]) and _uint(t[5]) and _uint(t[6], _U32) and _uint(t[7])
            and _uint(t[8], _U32)):
        raise _Reject(reasons.MALFORMED)
    return t


def parse_dynamic(dyn):
    """Dynamic part bytes -> (time, counter). Raises _Reject(MALFORMED)."""
    m = cbor.decode(dyn, max_depth=1, max_items=5, max_len=MAX_DYN)
    if type(m) is not dict or len(m) != 2:
        raise _Reject(reasons.MALFORMED)
    t = m.get(D_TIME)
    c = m.get(D_COUNTER)
    if not (_uint(t) and _uint(c)):
        raise _Reject(reasons.MALFORMED)
    return t, c


def _is_sig(b):
    return type(b) is bytes and len(b) == 64


def _is_recid(v):
    return type(v) is int and 0 <= v <= 3


def _check_credential(cred, isig, keyring, now, cache):
    """(cred tuple, cred hash) after the key ring lookup and the issuer signature (or a cache
    hit). Raises _Reject(reason)."""
    cred_hash = hashlib.sha256(cred).digest()
    hit = cache.get(cred_hash, isig) if cache is not None else None
    t = hit[3] if hit is not None else parse_credential(cred)
    reason, key = keyring.lookup(t[0], now)
    if reason != reasons.OK:
        raise _Reject(reason)
    if hit is not None and hit[2] == key.public_key:
        return t, cred_hash
    if not keyring.verify(key, cred_hash, isig):
        raise _Reject(reasons.BAD_ISSUER_SIG)
    if cache is not None:
        cache.put(cred_hash, isig, key.public_key, t)
    return t, cred_hash


def _rider_digest(tag, cred_hash, isig, challenge, dyn):
    h = hashlib.sha256(tag)
    h.update(cred_hash)
    h.update(isig)
    if challenge is not None:
        h.update(challenge)
    h.update(dyn)
    return h.digest()


def _decode_qr(text):
    """QR text (str or bytes) -> ride code bytes. Raises _Reject."""
    if isinstance(text, str):
        try:
            text = text.encode()
        except Exception:
            raise _Reject(reasons.MALFORMED)
    elif not isinstance(text, (bytes, bytearray)):
        raise _Reject(reasons.MALFORMED)
    # scanners end a line with CR and/or LF
    n = len(text)
    while n and text[n - 1] in (10, 13):
        n -= 1
    if n > MAX_QR_TEXT:
        raise _Reject(reasons.MALFORMED)
    if text[:4] != b"FV1:":
        # another version of ours ("FV2:") is unsupported; anything else is not a ride code
        c = text.find(b":", 0, 8)
        if text[:2] == b"FV" and c > 2 and text[2:c].isdigit():
            raise _Reject(reasons.UNSUPPORTED)
        raise _Reject(reasons.MALFORMED)
    return base45.decode(bytes(text[4:n]))


def verify_qr(text, keyring, now, cache=None):
    """(reason, RideToken or None) for the text a QR scanner read."""
    try:
        raw = _decode_qr(text)
        a = cbor.decode(raw, max_depth=1, max_items=6, max_len=MAX_CODE)
        if type(a) is not list or len(a) != 5:
            raise _Reject(reasons.MALFORMED)
        cred, isig, dyn, rsig, recid = a
        if not (type(cred) is bytes and _is_sig(isig) and type(dyn) is bytes and _is_sig(rsig)
                and _is_recid(recid)):
            raise _Reject(reasons.MALFORMED)
        t, cred_hash = _check_credential(cred, isig, keyring, now, cache)
        time, counter = parse_dynamic(dyn)
        digest = _rider_digest(TAG_QR, cred_hash, isig, None, dyn)
        if not p256.verify_recoverable(t[3], digest, rsig, recid):
            raise _Reject(reasons.BAD_RIDER_SIG)
        return reasons.OK, RideToken("qr", t, cred_hash, time, counter, raw)
    except _Reject as e:
        return e.args[0], None
    except (cbor.CBORError, base45.Base45Error):
        return reasons.MALFORMED, None
    except MemoryError:   # the reader's fault, not the rider's
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
    """Data of a 9000 answer. Raises _Reject(NFC_FAILED) on a broken exchange or an error status
    (UNSUPPORTED when the device does not have our application)."""
    try:
        resp = exchange(apdu)
    except Exception:  # the driver's own errors: timeout, card gone, frame errors
        raise _Reject(reasons.NFC_FAILED)
    if not isinstance(resp, (bytes, bytearray)) or len(resp) < 2 or len(resp) > MAX_RESPONSE:
        raise _Reject(reasons.NFC_FAILED)
    if resp[-2:] != SW_OK:
        if apdu[1] == INS_SELECT and (resp[-2] << 8 | resp[-1]) == SW_NOT_FOUND:
            raise _Reject(reasons.UNSUPPORTED)
        raise _Reject(reasons.NFC_FAILED)
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
            raise _Reject(reasons.MALFORMED)
        proto = info.get(1)
        total = info.get(2)
        if proto != NFC_PROTOCOL or type(proto) is not int:
            raise _Reject(reasons.UNSUPPORTED if _uint(proto) else reasons.MALFORMED)
        if not _uint(total) or total == 0 or total > MAX_BLOB:
            raise _Reject(reasons.MALFORMED)
        blob = bytearray(total)
        off = 0
        reads = 0
        while off < total:
            # a device may answer with fewer bytes than asked (small buffers): go on from there,
            # but a device that dribbles is cut off
            reads += 1
            if reads > MAX_READS:
                raise _Reject(reasons.NFC_FAILED)
            want = min(READ_CHUNK, total - off)
            part = _transceive(exchange, apdu_read(off, want))
            n = len(part)
            if n == 0 or n > want:
                raise _Reject(reasons.NFC_FAILED)
            blob[off:off + n] = part
            off += n
        answer = _transceive(exchange, apdu_challenge(challenge))

        a = cbor.decode(blob, max_depth=1, max_items=3, max_len=MAX_BLOB)
        if type(a) is not list or len(a) != 2 or type(a[0]) is not bytes or not _is_sig(a[1]):
            raise _Reject(reasons.MALFORMED)
        cred, isig = a
        b = cbor.decode(answer, max_depth=1, max_items=4, max_len=MAX_RESPONSE)
        if type(b) is not list or len(b) != 3:
            raise _Reject(reasons.MALFORMED)
        dyn, rsig, recid = b
        if not (type(dyn) is bytes and _is_sig(rsig) and _is_recid(recid)):
            raise _Reject(reasons.MALFORMED)
        t, cred_hash = _check_credential(cred, isig, keyring, now, cache)
        _, counter = parse_dynamic(dyn)
        digest = _rider_digest(TAG_NFC, cred_hash, isig, challenge, dyn)
        if not p256.verify_recoverable(t[3], digest, rsig, recid):
            raise _Reject(reasons.BAD_RIDER_SIG)
        raw = cbor.encode([cred, isig, dyn, rsig, recid, challenge])
        return reasons.OK, RideToken("nfc", t, cred_hash, now, counter, raw)
    except _Reject as e:
        return e.args[0], None
    except cbor.CBORError:
        return reasons.MALFORMED, None
    except MemoryError:
        return reasons.READER_ERROR, None
