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
# Up to MAX_KEYS keys, whatever they are: the ring stays in its file and RAM holds an index (key
# id and offset of each entry: 6 bytes a key, 1.5 KB for 256, in pieces of 64 keys) and the
# CACHE keys used last, decoded, with their table files open. Every entry is checked when the
# ring is loaded, a window of MAX_ENTRY bytes at a time; no block over 256 bytes is needed.
#
# Issuer signatures verify faster with a fixed-base table of the key (validator.p256.FixedBase).
# A table must come from a trusted place, since a wrong table would accept forged signatures:
# - a frozen module of constants built with the firmware (`tables` = {key id: blob});
# - the reader's own table directory (`tables` = a path), files "<key id>.p2t" written by
#   build_tables() or by deployment, never by the depot sync; when the signed ring gives a
#   table's SHA-256 (key 6), the file must match it.
# A key without a table verifies without one (slower, still correct); the reader builds the
# tables of the keys it is given when a ring is installed (validator.app).
import os
from array import array

from validator import atomicfile, cbor, p256, reasons, signedfile

try:
    from micropython import const
except ImportError:  # CPython: the pure-logic tests
    def const(x):
        return x

FORMAT = const(1)
ACTIVE = const(0)
RETIRED = const(1)
MAX_KEYS = const(256)
# The largest entry: map head 1, id 1+5, key 1+2+65, valid_from and valid_until 1+9 each,
# status 1+1, table digest 1+2+32.
MAX_ENTRY = const(132)
ENTRY_ITEMS = const(13)         # a map of 6 keys and 6 values
# map head, format key and value, array key and head (3 bytes for 256), every entry at its largest
MAX_BODY = const(7 + MAX_KEYS * MAX_ENTRY)
MAX_ITEMS = const(5 + ENTRY_ITEMS * MAX_KEYS)
CACHE = const(4)                # keys kept decoded, with their table files open
TABLE_SUFFIX = ".p2t"
_ENOSPC = const(28)


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
        self.used = 0        # when the ring last handed it out (its cache's clock)

    def close(self):
        if self.fixed is not None:
            self.fixed.close()
            self.fixed = None


def _uint(v, limit=1 << 64):
    return type(v) is int and 0 <= v < limit


def _entry(e):
    """IssuerKey of a decoded entry; KeyRingError(MALFORMED) if it is not a good one."""
    if type(e) is not dict or len(e) != 5 + (6 in e):
        raise KeyRingError(signedfile.MALFORMED)
    kid, pub, vf, vu, st, td = e.get(1), e.get(2), e.get(3), e.get(4), e.get(5), e.get(6)
    if not (_uint(kid, 1 << 32) and _uint(vf) and _uint(vu) and st in (ACTIVE, RETIRED)
            and type(st) is int and type(pub) is bytes
            and ((len(pub) == 33 and pub[0] in (2, 3)) or (len(pub) == 65 and pub[0] == 4))
            and (td is None or (type(td) is bytes and len(td) == 32))):
        raise KeyRingError(signedfile.MALFORMED)
    return IssuerKey(kid, pub, vf, vu, st, td)


class _Bytes:
    """A body in RAM, read like a file (KeyRing.from_body: tests and host tools)."""

    def __init__(self, data):
        self.data = data

    def read_at(self, off, mv):
        n = max(0, min(len(mv), len(self.data) - off))
        mv[:n] = memoryview(self.data)[off:off + n]
        return n


class _File:
    """A body in a file, opened for each read (an open file would hold a handle and a cache)."""

    def __init__(self, path, start):
        self.path = path
        self.start = start

    def read_at(self, off, mv):
        with open(self.path, "rb") as f:
            f.seek(self.start + off)
            return f.readinto(mv)


class _Ints:
    """`n` unsigned ints (array typecode "I" or "H") in pieces of 64, so that no block is over
    256 bytes (the index of a 256-key ring would otherwise be a 1 KB block)."""

    def __init__(self, code, n):
        size = 4 if code == "I" else 2
        self.n = n
        self.pieces = [array(code, bytearray(size * min(64, n - i))) for i in range(0, n, 64)]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.pieces[i >> 6][i & 63]

    def __setitem__(self, i, v):
        self.pieces[i >> 6][i & 63] = v

    def find(self, v, end=None):
        """The index of the first `v` before `end` (default: all), or -1."""
        end = self.n if end is None else end
        i = 0
        for piece in self.pieces:
            for x in piece:
                if i >= end:
                    return -1
                if x == v:
                    return i
                i += 1
        return -1


def _head(src, pos, buf):
    n = src.read_at(pos, memoryview(buf)[:9])
    try:
        major, arg, end = cbor.decode_head(memoryview(buf)[:n])
    except cbor.CBORError:
        raise KeyRingError(signedfile.MALFORMED)
    return major, arg, pos + end


def _index(src, body_len, buf):
    """(key ids, entry offsets + the end) of a body, every entry checked; KeyRingError."""
    if body_len > MAX_BODY:
        raise KeyRingError(signedfile.MALFORMED)
    mv = memoryview(buf)
    major, arg, pos = _head(src, 0, buf)
    if (major, arg) != (5, 2):
        raise KeyRingError(signedfile.MALFORMED)
    ids = offs = None
    fmt = None
    for _ in range(2):
        major, key, pos = _head(src, pos, buf)
        if major != 0 or key not in (1, 2) or (key == 1 and fmt is not None) \
                or (key == 2 and ids is not None):
            raise KeyRingError(signedfile.MALFORMED)
        major, arg, pos = _head(src, pos, buf)
        if key == 1:
            if major != 0 or arg != FORMAT:
                raise KeyRingError(signedfile.MALFORMED)
            fmt = arg
            continue
        if major != 4 or arg > MAX_KEYS:
            raise KeyRingError(signedfile.MALFORMED)
        ids = _Ints("I", arg)
        offs = _Ints("H", arg + 1)
        for i in range(arg):
            n = src.read_at(pos, mv)
            try:
                e, used = cbor.decode_prefix(mv[:n], 1, ENTRY_ITEMS)
            except cbor.CBORError:
                raise KeyRingError(signedfile.MALFORMED)
            kid = _entry(e).key_id
            if ids.find(kid, i) >= 0:   # (at most 32,640 comparisons, and no set to allocate)
                raise KeyRingError(signedfile.MALFORMED)
            ids[i] = kid
            offs[i] = pos
            pos += used
        offs[arg] = pos
    if pos != body_len:
        raise KeyRingError(signedfile.MALFORMED)
    return ids, offs


def parse_body(body):
    """List of IssuerKey from a key ring body; raises KeyRingError("MALFORMED")."""
    ring = KeyRing.from_body(body)
    return [ring._decode(i) for i in range(len(ring))]


def table_path(directory, key_id):
    return "%s/%d%s" % (directory, key_id, TABLE_SUFFIX)


class KeyRing:
    """The keys given (`keys`: IssuerKey, all in RAM), or those of a body indexed by from_body()
    or load(). `tables`: None, {key id: table blob} or the directory of table files."""

    def __init__(self, keys=(), version=0, tables=None):
        self.version = version
        self.tables = tables
        self._keys = {}      # every key (keys given), or the cache of a body's keys
        self._src = None     # the body's source, its ids and offsets
        self._ids = self._offs = None
        self._buf = None
        self._clock = 0
        for k in keys:
            self._keys[k.key_id] = k
            self._attach(k)

    @classmethod
    def _of(cls, src, body_len, version, tables):
        ring = cls((), version, tables)
        ring._buf = bytearray(MAX_ENTRY)
        ring._ids, ring._offs = _index(src, body_len, ring._buf)
        ring._src = src
        return ring

    @classmethod
    def load(cls, path, operator_keys, now=None, tables=None, prepare=True):
        """The key ring in the signed file at `path`, checked against `operator_keys` (key id ->
        (public key, valid_until or 0)). `tables`: None, {key id: table blob} from a frozen
        module, or a directory of table files. With `now`, operator key expiry is checked and
        (if `prepare`) the keys valid then are made ready at once. Raises KeyRingError(reason)
        if the file is refused, OSError if the flash fails reading it. The ring reads its
        entries from `path` from then on (moved(): the file was renamed)."""
        reason, h = signedfile.verify_file(path, operator_keys, signedfile.KEYRING, now)
        if reason != signedfile.OK:
            raise KeyRingError(reason)
        ring = cls._of(_File(path, signedfile.HEADER_SIZE), h.body_len, h.version, tables)
        if now is not None and prepare:
            ring.prepare(now)
        return ring

    @classmethod
    def from_body(cls, body, version=0, tables=None):
        return cls._of(_Bytes(body), len(body), version, tables)

    def moved(self, path):
        """The ring's file is now at `path` (installed by rename)."""
        if isinstance(self._src, _File):
            self._src.path = path

    def __len__(self):
        return len(self._ids) if self._ids is not None else len(self._keys)

    def _decode(self, i):
        """IssuerKey of entry `i` of the body (not cached)."""
        n = self._offs[i + 1] - self._offs[i]
        mv = memoryview(self._buf)[:n]
        if self._src.read_at(self._offs[i], mv) != n:
            raise KeyRingError(signedfile.MALFORMED)
        try:
            return _entry(cbor.decode(mv, 1, ENTRY_ITEMS, MAX_ENTRY))
        except cbor.CBORError:
            raise KeyRingError(signedfile.MALFORMED)

    def get(self, key_id):
        k = self._keys.get(key_id)
        if k is None and self._ids is not None:
            i = self._ids.find(key_id)
            if i >= 0:
                try:
                    k = self._decode(i)
                except (KeyRingError, OSError):   # the flash changed under the ring
                    return None
                self._cache(k)
        if k is not None:
            self._clock += 1
            k.used = self._clock
        return k

    def _cache(self, k):
        if len(self._keys) >= CACHE:
            old = None
            for c in self._keys.values():
                if old is None or c.used < old.used:
                    old = c
            old.close()
            del self._keys[old.key_id]
        self._attach(k)
        self._keys[k.key_id] = k

    def _attach(self, k):
        tables = self.tables
        if tables is None:
            return
        if isinstance(tables, dict):
            k.table = tables.get(k.key_id)
            return
        path = table_path(tables, k.key_id)
        try:
            if k.table_digest is None or atomicfile.sha256(path) == k.table_digest:
                os.stat(path)
                k.table = path
        except OSError:
            pass

    def keys(self):
        """Every key, through the cache (tools and tests; the reader uses len()). Of a ring of
        more than CACHE keys, the first ones handed out are no longer cached."""
        if self._ids is None:
            return list(self._keys.values())
        return [self.get(self._ids[i]) for i in range(len(self._ids))]

    def lookup(self, key_id, now):
        """(reasons.OK, IssuerKey) if credentials signed by `key_id` are acceptable at `now`;
        else (reasons.UNKNOWN_KEY or reasons.KEY_RETIRED, None)."""
        k = self.get(key_id)
        if k is None:
            return reasons.UNKNOWN_KEY, None
        if k.status != ACTIVE or now < k.valid_from or now > k.valid_until:
            return reasons.KEY_RETIRED, None
        return reasons.OK, k

    def _fixed(self, k):
        if k.fixed is None and not k.no_fixed:
            if k.table is None:
                return None
            try:
                k.fixed = p256.FixedBase(k.public_key, k.table)
            except ValueError:          # a damaged table, or not a P-256 point: do without
                k.table = None
                if p256.decode_point(k.public_key) is None:
                    k.no_fixed = True
                return None
            except OSError:             # the table file unreadable: do without
                k.table = None
                return None
        return k.fixed

    def prepare(self, now):
        """Open the tables of the first keys usable at `now` (as many as the cache keeps), so
        that taps do not pay for it."""
        n = 0
        for i in range(len(self)):
            if n >= CACHE:
                break
            kid = self._ids[i] if self._ids is not None else None
            k = self.get(kid) if kid is not None else list(self._keys.values())[i]
            if self.lookup(k.key_id, now)[0] == reasons.OK:
                self._fixed(k)
                n += 1

    def build_tables(self, directory, now=None):
        """Compute a table file in `directory` (the reader's own) for each active key that has
        no good table there yet and is not expired at `now`; the keys use them from then on.
        Slow on an ESP32 (seconds per key): run it when a key ring is installed, not during
        taps. A full flash stops it (the keys left verify without a table). Returns the key ids
        built. OSError or MemoryError otherwise: what was built stays, and serves a retry."""
        built = []
        for i in range(len(self)):
            k = self._decode(i) if self._ids is not None else list(self._keys.values())[i]
            if k.status != ACTIVE or (now is not None and now > k.valid_until):
                continue
            self._attach_dir(k, directory)
            if k.table is not None or p256.decode_point(k.public_key) is None:
                continue
            path = table_path(directory, k.key_id)
            tmp = path + ".tmp"
            try:
                p256.build_table(k.public_key, tmp)
                os.rename(tmp, path)
            except OSError as e:
                atomicfile.remove(tmp)
                if e.args and e.args[0] == _ENOSPC:
                    break
                raise
            except BaseException:
                atomicfile.remove(tmp)
                raise
            built.append(k.key_id)
            c = self._keys.get(k.key_id)   # a cached copy starts using it
            if c is not None and c.fixed is None:
                c.table = path
        return built

    def _attach_dir(self, k, directory):
        saved = self.tables
        self.tables = directory
        try:
            self._attach(k)
        finally:
            self.tables = saved

    def remove_stale_tables(self, directory):
        """Delete the table files in `directory` of keys no longer in the ring, and temporary
        files a cut build left."""
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            if name.endswith(".tmp"):
                atomicfile.remove(directory + "/" + name)
            elif name.endswith(TABLE_SUFFIX):
                try:
                    kid = int(name[:-len(TABLE_SUFFIX)])
                except ValueError:
                    continue
                if not self._has(kid):
                    atomicfile.remove(directory + "/" + name)

    def _has(self, key_id):
        if self._ids is None:
            return key_id in self._keys
        return self._ids.find(key_id) >= 0

    def verify(self, key, digest, signature):
        """ECDSA check of an issuer signature by `key` (an IssuerKey of this ring)."""
        fb = self._fixed(key)
        if fb is not None:
            return p256.verify_fixed(fb, digest, signature)
        return p256.verify(key.public_key, digest, signature)

    def close(self):
        """Close the table files (before the ring is replaced)."""
        for k in self._keys.values():
            k.close()
