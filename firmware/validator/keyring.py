# The issuer keys this reader trusts (key id -> public key, validity, status).
#
# The depot pushes the key ring as a signed envelope (validator/signedfile.py, kind KEYRING) whose
# body is CBOR:
#   { 1: 1 (format version),
#     2: [ {1: key id (uint < 2**32), 2: public key (SEC1, 33 or 65 bytes),
#           3: valid_from, 4: valid_until (Unix seconds, inclusive), 5: status (0 active, 1 retired),
#           6: SHA-256 of the key's fixed-base table file (optional)},
#          ... ] }
# A key's validity is the period during which the reader accepts credentials signed by it: the
# issuer sets valid_until to the end of the key's signing period plus the longest credential
# lifetime it issues, and retires a compromised key at once (status 1).
#
# Issuer signatures verify faster with a fixed-base table of the key (validator.p256.FixedBase).
# A table must come from a trusted place, since a wrong table would accept forged signatures:
# - a frozen module of constants built with the firmware (`tables` = {key id: blob});
# - the reader's own table directory (`tables` = a path), files "<key id>.p2t" written by
#   build_tables() or by deployment, never by the depot sync; when the signed ring gives a
#   table's SHA-256 (key 6), the file must match it;
# - a small table the reader computes in RAM (about 5 KB) for at most RAM_TABLES keys, on first use or
#   in prepare(). Beyond that, a key is verified without a table (slower, still correct).
import os

from validator import atomicfile, cbor, p256, reasons, signedfile

FORMAT = 1
ACTIVE = 0
RETIRED = 1
MAX_KEYS = 256
MAX_BODY = 32768
RAM_TABLES = 2          # RAM tables at most (about 5 KB each)
TABLE_SUFFIX = ".p2t"


class KeyRingError(Exception):
    """The key ring file was refused; args[0] is a signedfile reason string (MALFORMED, ...)."""


class IssuerKey:
    """One issuer key. The point itself is checked on first use (decoding every key of a long
    ring at boot would cost seconds on an ESP32); a key that is not a P-256 point verifies
    nothing."""

    def __init__(self, key_id, public_key, valid_from, valid_until, status=ACTIVE,
                 table_digest=None):
        self.key_id = key_id
        self.public_key = bytes(public_key)
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.status = status
        self.table_digest = table_digest
        self.table = None    # trusted table source (blob or file path) once known
        self.fixed = None    # p256.FixedBase, made on first use
        self.no_fixed = False


def _uint(v, limit=1 << 64):
    return type(v) is int and 0 <= v < limit


def parse_body(body):
    """List of IssuerKey from a key ring body; raises KeyRingError("MALFORMED")."""
    try:
        m = cbor.decode(body, max_depth=3, max_items=3 + 13 * MAX_KEYS, max_len=MAX_BODY)
    except cbor.CBORError:
        raise KeyRingError(signedfile.MALFORMED)
    if (type(m) is not dict or m.get(1) != FORMAT or type(m.get(2)) is not list or len(m) != 2
            or len(m[2]) > MAX_KEYS):
        raise KeyRingError(signedfile.MALFORMED)
    keys = []
    seen = set()
    for e in m[2]:
        if type(e) is not dict or len(e) != 5 + (6 in e):
            raise KeyRingError(signedfile.MALFORMED)
        kid, pub, vf, vu, st, td = e.get(1), e.get(2), e.get(3), e.get(4), e.get(5), e.get(6)
        if not (_uint(kid, 1 << 32) and _uint(vf) and _uint(vu) and st in (ACTIVE, RETIRED)
                and type(st) is int and type(pub) is bytes
                and ((len(pub) == 33 and pub[0] in (2, 3)) or (len(pub) == 65 and pub[0] == 4))
                and (td is None or (type(td) is bytes and len(td) == 32))):
            raise KeyRingError(signedfile.MALFORMED)
        if kid in seen:
            raise KeyRingError(signedfile.MALFORMED)
        seen.add(kid)
        keys.append(IssuerKey(kid, pub, vf, vu, st, td))
    return keys


def table_path(directory, key_id):
    return "%s/%d%s" % (directory, key_id, TABLE_SUFFIX)


class KeyRing:
    def __init__(self, keys=(), version=0, tables=None):
        self.version = version
        self._keys = {}
        self._ram_tables = 0
        for k in keys:
            self._keys[k.key_id] = k
        self._attach_tables(tables)

    def _attach_tables(self, tables):
        if tables is None:
            return
        for k in self._keys.values():
            if isinstance(tables, dict):
                k.table = tables.get(k.key_id)
            else:
                path = table_path(tables, k.key_id)
                try:
                    if k.table_digest is None or atomicfile.sha256(path) == k.table_digest:
                        os.stat(path)
                        k.table = path
                except OSError:
                    pass

    @classmethod
    def load(cls, path, operator_keys, now=None, tables=None, prepare=True):
        """The key ring in the signed file at `path`, checked against `operator_keys` (key id ->
        (public key, valid_until or 0)). `tables`: None, {key id: table blob} from a frozen
        module, or a directory of table files. With `now`, operator key expiry is checked and
        (if `prepare`) the keys valid then get their fixed-base tables at once. Raises
        KeyRingError(reason) if the file is refused."""
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
        ring = cls(parse_body(body), h.version, tables)
        if now is not None and prepare:
            ring.prepare(now)
        return ring

    @classmethod
    def from_body(cls, body, version=0, tables=None):
        return cls(parse_body(body), version, tables)

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

    def _fixed(self, k):
        if k.fixed is None and not k.no_fixed:
            if k.table is not None:
                try:
                    k.fixed = p256.FixedBase(k.public_key, k.table)
                    return k.fixed
                except (ValueError, OSError):   # a damaged table: do without it
                    k.table = None
            if self._ram_tables >= RAM_TABLES:
                return None
            try:
                k.fixed = p256.FixedBase(k.public_key, None)
            except ValueError:                  # not a P-256 point: verifies nothing
                k.no_fixed = True
                return None
            except MemoryError:                 # no room: no more RAM tables
                self._ram_tables = RAM_TABLES
                return None
            self._ram_tables += 1
        return k.fixed

    def prepare(self, now):
        """Make the fixed bases of the keys usable at `now` (tables read or built), so that
        taps do not pay for it."""
        for k in self._keys.values():
            if self.lookup(k.key_id, now)[0] == reasons.OK:
                self._fixed(k)

    def build_tables(self, directory, now=None):
        """Compute a table file in `directory` (the reader's own) for each active key that has
        no table yet and is not expired at `now`; the keys use them from then on. Slow on an
        ESP32 (seconds per key): run it when a key ring is installed, not during taps.
        Returns the key ids built."""
        built = []
        for k in self._keys.values():
            if k.table is not None or k.status != ACTIVE or (now is not None
                                                            and now > k.valid_until):
                continue
            if p256.decode_point(k.public_key) is None:
                continue
            path = table_path(directory, k.key_id)
            tmp = path + ".tmp"
            p256.build_table(k.public_key, tmp)
            os.rename(tmp, path)
            if k.fixed is not None:     # it had a RAM table until now
                k.fixed = None
                self._ram_tables -= 1
            k.table = path
            built.append(k.key_id)
        return built

    def verify(self, key, digest, signature):
        """ECDSA check of an issuer signature by `key` (an IssuerKey of this ring)."""
        fb = self._fixed(key)
        if fb is not None:
            return p256.verify_fixed(fb, digest, signature)
        return p256.verify(key.public_key, digest, signature)

    def close(self):
        """Close the table files (before the ring is replaced)."""
        for k in self._keys.values():
            if k.fixed is not None:
                k.fixed.close()
                k.fixed = None
