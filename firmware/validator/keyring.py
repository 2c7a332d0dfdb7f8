# The issuer keys this reader trusts (key id -> public key, validity, status).
#
# The depot pushes the key ring as a signed envelope (validator/signedfile.py, kind KEYRING) whose
# body is CBOR:
#   { 1: 1 (format version),
#     2: [ {1: key id (uint < 2**32), 2: public key (SEC1, 33 or 65 bytes),
#           3: valid_from, 4: valid_until (Unix seconds, inclusive), 5: status (0 active, 1 retired)},
#          ... ] }
# A key's validity is the period during which the reader accepts credentials signed by it: the
# issuer sets valid_until to the end of the key's signing period plus the longest credential
# lifetime it issues, and retires a compromised key at once (status 1).
from validator import cbor, p256, reasons, signedfile

FORMAT = 1
ACTIVE = 0
RETIRED = 1
MAX_KEYS = 256
MAX_BODY = 32768


class KeyRingError(Exception):
    """The key ring file was refused; args[0] is a signedfile reason string (MALFORMED, ...)."""


class IssuerKey:
    def __init__(self, key_id, public_key, valid_from, valid_until, status=ACTIVE, table=None):
        self.key_id = key_id
        self.public_key = public_key
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.status = status
        # fixed-base table for this key's signatures (p256), when the ring ships one
        self.table = table


def _uint(v, limit=1 << 64):
    return type(v) is int and 0 <= v < limit


def parse_body(body):
    """List of IssuerKey from a key ring body; raises KeyRingError("MALFORMED")."""
    try:
        m = cbor.decode(body, max_depth=3, max_items=3 + 11 * MAX_KEYS, max_len=MAX_BODY)
    except cbor.CBORError:
        raise KeyRingError(signedfile.MALFORMED)
    if type(m) is not dict or m.get(1) != FORMAT or type(m.get(2)) is not list or len(m) != 2:
        raise KeyRingError(signedfile.MALFORMED)
    keys = []
    seen = set()
    for e in m[2]:
        if type(e) is not dict or len(e) != 5:
            raise KeyRingError(signedfile.MALFORMED)
        kid, pub, vf, vu, st = e.get(1), e.get(2), e.get(3), e.get(4), e.get(5)
        if not (_uint(kid, 1 << 32) and _uint(vf) and _uint(vu) and st in (ACTIVE, RETIRED)
                and type(st) is int and type(pub) is bytes and p256.decode_point(pub) is not None):
            raise KeyRingError(signedfile.MALFORMED)
        if kid in seen:
            raise KeyRingError(signedfile.MALFORMED)
        seen.add(kid)
        keys.append(IssuerKey(kid, pub, vf, vu, st))
    return keys


class KeyRing:
    def __init__(self, keys=(), version=0):
        self.version = version
        self._keys = {}
        for k in keys:
            self._keys[k.key_id] = k

    @classmethod
    def load(cls, path, operator_keys, now=None):
        """The key ring in the signed file at `path`, checked against `operator_keys` (key id ->
        (public key, valid_until or 0)). Raises KeyRingError(reason) if the file is refused."""
        reason, h = signedfile.verify_file(path, operator_keys, signedfile.KEYRING, now)
        if reason != signedfile.OK:
            raise KeyRingError(reason)
        if h.body_len > MAX_BODY:
            raise KeyRingError(signedfile.MALFORMED)
        f = signedfile.open_body(path)
        try:
            body = f.read(h.body_len)
        finally:
            f.close()
        return cls(parse_body(body), h.version)

    @classmethod
    def from_body(cls, body, version=0):
        return cls(parse_body(body), version)

    def __len__(self):
        return len(self._keys)

    def get(self, key_id):
        return self._keys.get(key_id)

    def keys(self):
        return list(self._keys.values())

    def lookup(self, key_id, now):
        """(reasons.OK, IssuerKey) if credentials signed by `key_id` are acceptable at `now`;
        else (reasons.UNKNOWN_KEY or reasons.KEY_RETIRED, None)."""
        k = self._keys.get(key_id)
        if k is None:
            return reasons.UNKNOWN_KEY, None
        if k.status != ACTIVE or now < k.valid_from or now > k.valid_until:
            return reasons.KEY_RETIRED, None
        return reasons.OK, k
