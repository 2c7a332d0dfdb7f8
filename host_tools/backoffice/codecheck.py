"""A ride code or NFC transcript checked again on the host, as the reader checked it: the envelope,
the credential and the dynamic part parsed by the firmware's own parsers (so the host accepts
exactly what a reader accepts), the issuer signature against the back office's key ring, the rider
signature against the credential's key. ECDSA P-256 with pyca `cryptography` (OpenSSL).

What the code says (credential fields, time, counter, the NFC challenge's reader) is returned for
clearing to compare with the record's own fields in SQL (host_tools/backoffice/clearing.py). Time
and key validity are not judged here: they depend on the ride's time and the configuration in
force, which clearing joins in.

A `Checker` verifies each credential once (a cache of recent credentials: clearing feeds it the
records sorted by credential) and each rider signature once (the same code seen again, a
screenshot shown on two buses, is not verified twice). The recovery id that ride codes carry is a
speed hint for the reader's verifier; the host checks the signature itself and only the id's
range (0..3)."""
import hashlib

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from host_tools.common.fw import validator  # noqa: F401  (puts the firmware on the path)
from validator import cbor, reasons
from validator import triplog as tl
from validator.credential import (C_ACCOUNT, C_ID, C_KEY_ID, C_MAX_AMOUNT, C_MAX_RIDES,
                                  C_PRODUCT, C_RIDER_KEY, C_VALID_FROM, C_VALID_UNTIL,
                                  C_VERSION, MAX_CRED, TAG_NFC, TAG_QR, VERSION, Reject,
                                  parse_credential, parse_dynamic)

OK = "ok"
MALFORMED = "malformed"
UNSUPPORTED = "unsupported"
UNKNOWN_KEY = "unknown_key"
BAD_ISSUER_SIG = "bad_issuer_sig"
BAD_RIDER_SIG = "bad_rider_sig"

_ALG = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
_CURVE = ec.SECP256R1()
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
CACHE = 4096           # credentials remembered; cleared when full (the input is sorted by credential)
I64_MAX = (1 << 63) - 1


def load_key(sec1):
    """A pyca public key from SEC1 bytes (33 or 65), or None if it is not a point on P-256."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, bytes(sec1))
    except ValueError:
        return None


def _verify(key, sig, digest):
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if key is None or not (0 < r < _N and 0 < s < _N):
        return False
    try:
        key.verify(utils.encode_dss_signature(r, s), digest, _ALG)
        return True
    except InvalidSignature:
        return False


class Credential:
    """A credential as clearing records it: its fields, whether its issuer signature holds (ok,
    bad_issuer_sig, unknown_key), and the rider key loaded for the rider signatures."""
    __slots__ = ("cred_hash", "fields", "status", "rider_key", "new")

    def __init__(self, cred_hash, fields, status, rider_key, new):
        self.cred_hash = cred_hash
        self.fields = fields      # (key_id, cred_id, account, rider_key, valid_from, valid_until,
        self.status = status      #  max_rides, max_amount, product) as the firmware parses them
        self.rider_key = rider_key
        self.new = new            # verified here (not known from an earlier run)

    def row(self):
        """The clearing_credentials row (times clamped to bigint: they are compared with u32
        ride times only)."""
        kid, cid, account, _, vf, vu, mr, ma, product = self.fields
        return (self.cred_hash, cid, kid, account, product, min(vf, I64_MAX), min(vu, I64_MAX),
                mr, ma, self.status)


class Result:
    """What one code says: status (ok or the first check that failed), kind (qr, nfc, or None),
    the Credential (None if it did not parse), the code's time (QR: when it was made; NFC: the
    reader's challenge time), its counter, and for NFC the reader whose challenge it answers."""
    __slots__ = ("status", "kind", "cred", "time", "counter", "challenge_reader", "detail")

    def __init__(self, status, kind=None, cred=None, time=None, counter=None,
                 challenge_reader=None, detail=None):
        self.status = status
        self.kind = kind
        self.cred = cred
        self.time = time
        self.counter = counter
        self.challenge_reader = challenge_reader
        self.detail = detail


def _is_sig(b):
    return type(b) is bytes and len(b) == 64


def _fast_decode(data):
    """The value of CBOR bytes in their canonical form (shortest integers and lengths, definite
    lengths, sorted map keys: what wallets write), decoded by cbor2's C decoder; None for
    anything else, which then goes to the firmware's own decoder. A canonical encoding is one
    the firmware's decoder accepts too, so both paths agree; the fast one costs a few
    microseconds instead of tens."""
    try:
        v = cbor2.loads(data)
        if cbor2.dumps(v, canonical=True) == data:
            return v
    except Exception:  # cbor2's errors on hostile bytes: the firmware's decoder says why
        pass
    return None


def _decode(data, **limits):
    v = _fast_decode(data)
    if v is None:
        v = cbor.decode(data, **limits)   # raises cbor.CBORError
    return v


def parse_dynamic_fast(dyn):
    """(time, counter) of a dynamic part, as validator.credential.parse_dynamic decides."""
    m = _fast_decode(dyn)
    if type(m) is dict and len(m) == 2:
        t, c = m.get(1), m.get(2)
        if type(t) is int and type(c) is int and 0 <= t < 1 << 64 and 0 <= c < 1 << 64:
            return t, c
    return parse_dynamic(dyn)


_U32, _U64 = 1 << 32, 1 << 64


def parse_credential_fast(cred):
    """The credential's fields as validator.credential.parse_credential gives them (and refuses
    them), from the fast decoder when the bytes are canonical."""
    m = _fast_decode(cred) if len(cred) <= MAX_CRED else None
    if type(m) is not dict or len(m) != 10 or type(m.get(C_VERSION)) is not int \
            or m[C_VERSION] != VERSION:
        return parse_credential(cred)   # the firmware says what is wrong (or that it is fine)
    t = (m.get(C_KEY_ID), m.get(C_ID), m.get(C_ACCOUNT), m.get(C_RIDER_KEY),
         m.get(C_VALID_FROM), m.get(C_VALID_UNTIL), m.get(C_MAX_RIDES), m.get(C_MAX_AMOUNT),
         m.get(C_PRODUCT))
    cid, rk = t[1], t[3]
    u = [type(v) is int and 0 <= v for v in t]
    if not (u[0] and t[0] < _U32 and type(cid) is bytes and len(cid) == 16
            and u[2] and t[2] < _U64 and type(rk) is bytes and len(rk) == 33 and rk[0] in (2, 3)
            and u[4] and t[4] < _U64 and u[5] and t[5] < _U64 and u[6] and t[6] < _U32
            and u[7] and t[7] < _U64 and u[8] and t[8] < _U32):
        raise Reject(reasons.MALFORMED)
    return t


def parse_envelope(code):
    """(kind, cred, isig, dyn, rsig, challenge) of a ride code (5 items) or an NFC transcript
    (6 items, the last the 24-byte challenge). Raises Reject(MALFORMED)."""
    try:
        a = _decode(code, max_depth=1, max_items=8, max_len=tl.MAX_RAW)
    except cbor.CBORError:
        raise Reject(reasons.MALFORMED)
    if type(a) is not list or len(a) not in (5, 6):
        raise Reject(reasons.MALFORMED)
    cred, isig, dyn, rsig, recid = a[:5]
    if not (type(cred) is bytes and _is_sig(isig) and type(dyn) is bytes and _is_sig(rsig)
            and type(recid) is int and 0 <= recid <= 3):
        raise Reject(reasons.MALFORMED)
    if len(a) == 6:
        ch = a[5]
        if type(ch) is not bytes or len(ch) != 24:
            raise Reject(reasons.MALFORMED)
        return "nfc", cred, isig, dyn, rsig, ch
    return "qr", cred, isig, dyn, rsig, None


class Checker:
    """Verifies codes against the issuer keys {key id: SEC1 public key}."""

    def __init__(self, issuer_keys):
        self.keys = {kid: load_key(pub) for kid, pub in issuer_keys.items()}
        self.creds = {}
        self.last_rider = (None, None, False)
        self.issuer_verifies = 0
        self.rider_verifies = 0
        self.rider_reused = 0

    def credential(self, cred, isig, known=None):
        """The Credential of credential bytes and issuer signature; `known`: {cred_hash: issuer
        status} of credentials an earlier run verified (their signature is not checked again).
        Raises Reject (MALFORMED, UNSUPPORTED) when the credential does not parse."""
        cred_hash = hashlib.sha256(cred).digest()
        key = cred_hash + isig
        c = self.creds.get(key)
        if c is not None:
            return c
        try:
            fields = parse_credential_fast(cred)
        except cbor.CBORError:
            raise Reject(reasons.MALFORMED)
        status = known.get(cred_hash) if known else None
        new = status is None
        if new:
            ikey = self.keys.get(fields[0])
            if fields[0] not in self.keys:
                status = UNKNOWN_KEY
            else:
                self.issuer_verifies += 1
                status = OK if _verify(ikey, isig, cred_hash) else BAD_ISSUER_SIG
        rider_key = load_key(fields[3]) if status == OK else None
        c = Credential(cred_hash, fields, status, rider_key, new)
        if len(self.creds) >= CACHE:
            self.creds.clear()
        self.creds[key] = c
        return c

    def check(self, code, known=None):
        """The Result of one code's bytes (a stored record's `raw`)."""
        try:
            kind, cred, isig, dyn, rsig, challenge = parse_envelope(code)
            c = self.credential(cred, isig, known)
        except Reject as e:
            return Result(UNSUPPORTED if e.args[0] == reasons.UNSUPPORTED else MALFORMED,
                          detail="the code does not parse (%s)" % reasons.name(e.args[0]))
        try:
            t, counter = parse_dynamic_fast(dyn)
        except (Reject, cbor.CBORError):
            return Result(MALFORMED, kind, c, detail="the dynamic part does not parse")
        reader = None
        if challenge is not None:
            reader = int.from_bytes(challenge[:4], "big")
            t = int.from_bytes(challenge[4:8], "big")   # the reader's time is the ride's
        r = Result(c.status, kind, c, min(t, I64_MAX), counter, reader)
        if c.status == UNKNOWN_KEY:
            r.detail = "issuer key %d is not in the key ring" % c.fields[0]
            return r
        if c.status == BAD_ISSUER_SIG:
            r.detail = "the credential's issuer signature does not verify (key %d)" % c.fields[0]
            return r
        h = hashlib.sha256(TAG_NFC if challenge is not None else TAG_QR)
        h.update(c.cred_hash)
        h.update(isig)
        if challenge is not None:
            h.update(challenge)
        h.update(dyn)
        digest = h.digest()
        last_digest, last_sig, last_ok = self.last_rider
        if digest == last_digest and rsig == last_sig:
            self.rider_reused += 1
            ok = last_ok
        else:
            self.rider_verifies += 1
            ok = _verify(c.rider_key, rsig, digest)
            self.last_rider = (digest, rsig, ok)
        if not ok:
            r.status = BAD_RIDER_SIG
            r.detail = "the rider signature does not verify"
        return r
