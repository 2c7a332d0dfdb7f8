# The credential level of the token format (docs/tokens.md), shared by QR and NFC: parsing the
# credential and the dynamic part, the issuer signature check with its cache, the rider digest,
# and RideToken. validator.tokens builds the QR and NFC paths on it.
#
#   credential  = CBOR map {1 version, 2 issuer key id, 3 credential id, 4 account, 5 rider key,
#                           6 valid_from, 7 valid_until, 8 max rides, 9 max amount, 10 product}
#   issuer sig  = ECDSA P-256 over SHA-256(credential bytes)                 (64 bytes r||s)
#   dynamic     = CBOR map {1 time, 2 counter}
#   rider sig   = ECDSA P-256 over SHA-256(tag || SHA-256(credential) || issuer sig
#                                          [|| challenge] || dynamic)
import hashlib

from validator import cbor, p256, reasons

try:
    from micropython import const
except ImportError:  # CPython: the pure-logic tests and host tools
    def const(x):
        return x

VERSION = const(1)
TAG_QR = b"FV-ride-qr-1"
TAG_NFC = b"FV-ride-nfc-1"

# credential map keys
C_VERSION = const(1)
C_KEY_ID = const(2)
C_ID = const(3)
C_ACCOUNT = const(4)
C_RIDER_KEY = const(5)
C_VALID_FROM = const(6)
C_VALID_UNTIL = const(7)
C_MAX_RIDES = const(8)
C_MAX_AMOUNT = const(9)
C_PRODUCT = const(10)
# dynamic part map keys
D_TIME = const(1)
D_COUNTER = const(2)

MAX_CRED = const(200)           # credential bytes (a full one is about 90)
MAX_DYN = const(32)             # dynamic part bytes

_U32 = 1 << 32
_U64 = 1 << 64


class Reject(Exception):
    """A token is refused; args[0] is the reason code."""


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


class CredCache:
    """Credentials whose issuer signature verified recently. An entry is the SHA-256 of
    (credential hash || issuer signature || issuer public key), so a tampered signature or a
    replaced key never hits. Entries live in one preallocated buffer (no allocation per tap, no
    long-lived small objects to fragment the heap) and are replaced by the CLOCK rule: a slot
    used since the hand last passed gets a second chance (least-recently-used, roughly)."""

    def __init__(self, size=64):
        self.size = size
        self._buf = bytearray(32 * size)
        # the rider key of each entry, decoded (SEC1 uncompressed, 65 bytes): a known rider's
        # verify skips the square root that decompressing the key costs (docs/performance.md)
        self._keys = bytearray(65 * size)
        self._used = bytearray(size)   # 0 empty, 1 filled, 2 filled and used recently
        self._hand = 0
        self._n = 0
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return self._n

    @staticmethod
    def entry(cred_hash, isig, issuer_key):
        h = hashlib.sha256(cred_hash)
        h.update(isig)
        h.update(issuer_key)
        return h.digest()

    def _find(self, e):
        buf = self._buf
        i = buf.find(e)
        while i >= 0:
            if i % 32 == 0 and self._used[i // 32]:
                return i // 32
            i = buf.find(e, i + 1)
        return -1

    def get(self, e):
        """True if entry `e` is cached (and mark it used)."""
        return self.get_key(e) is not None

    def get_key(self, e):
        """The decoded rider key (p256.decode_key) kept with entry `e` (and mark it used), or
        None if `e` is not cached."""
        slot = self._find(e)
        if slot < 0:
            self.misses += 1
            return None
        self._used[slot] = 2
        self.hits += 1
        o = 65 * slot
        return self._keys[o:o + 65]

    def put(self, e, key=bytes(65)):
        """Cache entry `e` with the credential's decoded rider key (p256.decode_key)."""
        if self._find(e) >= 0:
            return
        used = self._used
        n = self.size
        while used[self._hand] == 2:
            used[self._hand] = 1
            self._hand = (self._hand + 1) % n
        slot = self._hand
        if not used[slot]:
            self._n += 1
        self._buf[32 * slot:32 * slot + 32] = e
        self._keys[65 * slot:65 * slot + 65] = key
        used[slot] = 1
        self._hand = (slot + 1) % n

    def clear(self):
        for i in range(self.size):
            self._used[i] = 0
        self._n = 0


def _uint(v, limit=_U64):
    return type(v) is int and 0 <= v < limit


def parse_credential(cred):
    """Credential bytes -> tuple (key_id, cred_id, account, rider_key, valid_from, valid_until,
    max_rides, max_amount, product). Raises Reject(reason)."""
    if len(cred) > MAX_CRED:
        raise Reject(reasons.MALFORMED)
    m = cbor.decode(cred, max_depth=1, max_items=21, max_len=MAX_CRED)
    if type(m) is not dict:
        raise Reject(reasons.MALFORMED)
    v = m.get(C_VERSION)
    if v != VERSION or type(v) is not int:
        raise Reject(reasons.UNSUPPORTED if _uint(v) else reasons.MALFORMED)
    if len(m) != 10:
        raise Reject(reasons.MALFORMED)
    t = (m.get(C_KEY_ID), m.get(C_ID), m.get(C_ACCOUNT), m.get(C_RIDER_KEY),
         m.get(C_VALID_FROM), m.get(C_VALID_UNTIL), m.get(C_MAX_RIDES), m.get(C_MAX_AMOUNT),
         m.get(C_PRODUCT))
    cid = t[1]
    rk = t[3]
    if not (_uint(t[0], _U32) and type(cid) is bytes and len(cid) == 16 and _uint(t[2])
            and type(rk) is bytes and len(rk) == 33 and rk[0] in (2, 3)
            and _uint(t[4]) and _uint(t[5]) and _uint(t[6], _U32) and _uint(t[7])
            and _uint(t[8], _U32)):
        raise Reject(reasons.MALFORMED)
    return t


def parse_dynamic(dyn):
    """Dynamic part bytes -> (time, counter). Raises Reject(MALFORMED)."""
    m = cbor.decode(dyn, max_depth=1, max_items=5, max_len=MAX_DYN)
    if type(m) is not dict or len(m) != 2:
        raise Reject(reasons.MALFORMED)
    t = m.get(D_TIME)
    c = m.get(D_COUNTER)
    if not (_uint(t) and _uint(c)):
        raise Reject(reasons.MALFORMED)
    return t, c


def check_credential(cred, isig, keyring, now, cache):
    """(cred tuple, cred hash, rider key) after the key ring lookup and the issuer signature
    (or a cache hit). The rider key is decoded (p256.decode_key) when it can be, for the rider's
    signature check; else the credential's bytes (which then fail that check). Raises
    Reject(reason)."""
    cred_hash = hashlib.sha256(cred).digest()
    t = parse_credential(cred)
    reason, key = keyring.lookup(t[0], now)
    if reason != reasons.OK:
        raise Reject(reason)
    if cache is not None:
        e = cache.entry(cred_hash, isig, key.public_key)
        rider_key = cache.get_key(e)
        if rider_key is not None:
            return t, cred_hash, rider_key
    if not keyring.verify(key, cred_hash, isig):
        raise Reject(reasons.BAD_ISSUER_SIG)
    rider_key = p256.decode_key(t[3])
    if rider_key is None:
        return t, cred_hash, t[3]  # signed by the issuer, yet not a point: verifies nothing
    if cache is not None:
        cache.put(e, rider_key)
    return t, cred_hash, rider_key


def rider_digest(tag, cred_hash, isig, challenge, dyn):
    h = hashlib.sha256(tag)
    h.update(cred_hash)
    h.update(isig)
    if challenge is not None:
        h.update(challenge)
    h.update(dyn)
    return h.digest()


