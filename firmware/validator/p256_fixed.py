# Fixed-base (comb) tables for validator.p256: the generator and issuer keys.
#
# Table blob: a header, then teeth * 2^(width-1) entries of 64 bytes (x || y, big-endian, affine);
# entry (t, m) = m * 2^(t*d) * B with d = 256 / teeth, 1 <= m <= 2^(width-1), stored at
# HEADER_SIZE + ((t << (width-1)) + m - 1) * 64. Header (104 bytes):
#   magic "P2T1" | teeth u8 | width u8 | 2 zero bytes | B.x (32) | B.y (32) | SHA-256(entries) (32)
# A 256-bit scalar is cut into pieces of L bits (L = length of the doubling chain, a multiple of
# d); piece q uses tooth q*L/d, read in signed windows of `width` bits (comb_digits).
# Made on the host by host_tools/issuing/p256tables.py (python-ecdsa) or on the reader by
# build_table, whose arithmetic runs in the native engine (p256_field).
import hashlib

from validator import p256_field as F
from validator import p256_progs as G
from validator import watchdog

try:  # MicroPython: the digit loops as native code
    from validator.p256_digits import comb_into as _comb_native
except (ImportError, SyntaxError):
    _comb_native = None

TABLE_MAGIC = b"P2T1"
HEADER_SIZE = 104
TEETH_CHOICES = (1, 2, 4, 8)
MAX_WIDTH = 10
# FixedBase(public_key) with no table: 4 teeth * 16 entries = 4 KB of RAM
RAM_TABLE_TEETH = 4
RAM_TABLE_WIDTH = 5
_CHUNK = 512                  # file reads and the points of one batch (8 x 64 bytes)
_chunk = bytearray(_CHUNK)    # allocated once, at import


# Signed window digits of 0 <= k < 2^255 for pieces of L bits, as i16 (little-endian) into the
# buffer `out`: digit [q * nw + i] is piece q, window i (bits q*L + i*w ...). Digits lie in
# [-(2^(w-1)-1), 2^(w-1)]; the top window of a piece may be narrower (then its digit is >= 0 and
# carries nothing). k < 2^255 keeps the last carry 0. Returns the number of digits. Native code
# on MicroPython (p256_digits), the same loop here on CPython.
def comb_digits(k, w, L, out):
    kb = k.to_bytes(35, "little")
    if _comb_native is not None:
        return _comb_native(kb, w, L, out)
    nw = (L + w - 1) // w
    topw = L - (nw - 1) * w
    full = 1 << w
    half = full >> 1
    carry = 0
    o = 0
    for q in range(256 // L):
        pos = q * L
        for i in range(nw):
            wi = w if i < nw - 1 else topw
            j = pos >> 3
            u = (((kb[j] | (kb[j + 1] << 8) | (kb[j + 2] << 16)) >> (pos & 7))
                 & ((1 << wi) - 1)) + carry
            if wi == w and u > half:
                u -= full
                carry = 1
            else:
                carry = 0
            out[o] = u & 255
            out[o + 1] = (u >> 8) & 255
            o += 2
            pos += w
    return o >> 1


# A fixed base point with its table. `table`: None (computed now, in RAM), a bytes-like blob
# (a frozen module's constant stays in flash) or the path of a table file (read by offset).
# The table is checked against the key: header, size, SHA-256 of the entries, entry (0, 1) == B.
class FixedBase:
    def __init__(self, public_key, table=None):
        if not F.load_key(public_key, 0):
            raise ValueError("bad public key")
        self.public_key = bytes(public_key)
        F.call(G.STORE_POINT_0, F.io)
        self.xy = bytes(F.io)
        self._f = None
        self._data = None
        self._buf = None
        if table is None:
            table = build_table(public_key, None, RAM_TABLE_TEETH, RAM_TABLE_WIDTH)
        if isinstance(table, str):
            f = open(table, "rb")
            try:
                self._check(f.read(HEADER_SIZE), f, None)
            except Exception:
                f.close()
                raise
        else:
            data = memoryview(table)
            self._check(data[:HEADER_SIZE], None, data)

    @property
    def x(self):
        return int.from_bytes(self.xy[0:32], "big")

    @property
    def y(self):
        return int.from_bytes(self.xy[32:64], "big")

    def _check(self, head, f, data):
        if len(head) != HEADER_SIZE or bytes(head[0:4]) != TABLE_MAGIC or head[6] or head[7]:
            raise ValueError("not a table")
        teeth = head[4]
        width = head[5]
        if teeth not in TEETH_CHOICES or not 2 <= width <= MAX_WIDTH:
            raise ValueError("bad table parameters")
        if bytes(head[8:72]) != self.xy:
            raise ValueError("table of another key")
        size = (teeth << (width - 1)) * 64
        h = hashlib.sha256()
        if f is None:
            if len(data) != HEADER_SIZE + size:
                raise ValueError("bad table size")
            h.update(data[HEADER_SIZE:])
        else:
            mv = memoryview(_chunk)
            left = size
            while left:
                n = f.readinto(mv[:min(_CHUNK, left)])
                if not n:
                    raise ValueError("bad table size")
                h.update(mv[:n])
                left -= n
            if f.read(1):
                raise ValueError("bad table size")
            self._f = f
            self._buf = bytearray(64)
        if h.digest() != bytes(head[72:104]):
            raise ValueError("table checksum")
        self.teeth = teeth
        self.width = width
        self.spacing = 256 // teeth
        self._data = data
        b, o = self.entry_at(0, 1)
        if bytes(b[o:o + 64]) != self.xy:
            raise ValueError("table of another key")

    # Where the affine m * 2^(t * spacing) * B is: (a buffer, the offset of its 64 bytes).
    def entry_at(self, t, m):
        o = HEADER_SIZE + (((t << (self.width - 1)) + m - 1) << 6)
        if self._data is not None:
            return self._data, o
        f = self._f
        f.seek(o)
        f.readinto(self._buf)
        return self._buf, 0

    # Entry (t, m)'s 64 bytes into the buffer `out` (a table file's read by offset).
    def read_entry(self, t, m, out):
        o = HEADER_SIZE + (((t << (self.width - 1)) + m - 1) << 6)
        if self._data is not None:
            out[:] = self._data[o:o + 64]
        else:
            self._f.seek(o)
            self._f.readinto(out)

    # The same as (x, y) ints (tests, tools).
    def entry(self, t, m):
        b, o = self.entry_at(t, m)
        return int.from_bytes(b[o:o + 32], "big"), int.from_bytes(b[o + 32:o + 64], "big")

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None


# Table points are made in batches of up to BATCH (p256_progs, TB_*): each new point is kept in
# the batch area with the running products of its Z, one inversion serves the batch, and the
# affine points go out as 64-byte entries into _chunk. The programs are patched per point.
def _batch(n, fresh, pr):
    ws = F.ws
    run = F.run
    step, first, second, prod, inv, out, out0 = pr
    a = G.AREA
    c = G.BATCH_C
    for i in range(n):
        p = step
        if fresh and i < 2:
            p = second if i else first
        k = len(p) - 16     # its three MOVs before END
        p[k + 1] = a + 3 * i
        p[k + 5] = a + 3 * i + 1
        p[k + 9] = a + 3 * i + 2
        if run(ws, ws, p, 0) & 1:   # m * B = +-B for 2 < m < n: not a point of prime order
            raise ValueError("degenerate table point")
        if i:
            prod[0], prod[1], prod[2], prod[3] = G.MUL, c + i, c + i - 1, a + 3 * i + 2
        else:
            prod[0], prod[1], prod[2], prod[3] = G.MOV, c, a + 2, 0
        run(ws, ws, prod, 0)
    inv[2] = c + n - 1
    run(ws, ws, inv, 0)
    for i in range(n - 1, -1, -1):
        if i:
            p = out
            p[3] = c + i - 1
            p[7] = a + 3 * i + 2
            p[14] = a + 3 * i
            p[22] = a + 3 * i + 1
            p[35] = 2 * i
            p[47] = 2 * i + 1
        else:
            p = out0
            p[10] = a
            p[18] = a + 1
        run(ws, _chunk, p, 0)


# The table blob of a key: written to the file `path` (streaming, small RAM; returns None) or
# returned as a bytearray. A 32 KB table takes about a second on an ESP32 (docs/performance.md):
# the watchdog is fed after every batch.
def build_table(public_key, path=None, teeth=4, width=8):
    if teeth not in TEETH_CHOICES or not 2 <= width <= MAX_WIDTH:
        raise ValueError("bad table parameters")
    if not F.load_key(public_key, 0):
        raise ValueError("bad public key")
    cnt = 1 << (width - 1)
    F.call(G.STORE_POINT_0, F.io)
    head = bytearray(TABLE_MAGIC + bytes((teeth, width, 0, 0)) + F.io + bytes(32))
    F.call(G.TB_SET_BASE)     # the base of tooth 0 into (X2, Y2)
    pr = [F.copy(p) for p in (G.TB_STEP, G.TB_FIRST, G.TB_SECOND, G.TB_PROD, G.TB_INV, G.TB_OUT,
                              G.TB_OUT0)]
    h = hashlib.sha256()
    f = blob = None
    if path is None:
        blob = bytearray(HEADER_SIZE + teeth * cnt * 64)
        o = HEADER_SIZE
    else:
        f = open(path, "wb")
        f.write(head)
    try:
        for t in range(teeth):
            m = 0
            while m < cnt:
                n = min(G.BATCH, cnt - m)
                _batch(n, m == 0, pr)
                watchdog.kick()
                mv = memoryview(_chunk)[:64 * n]
                h.update(mv)
                if f is None:
                    blob[o:o + 64 * n] = mv
                    o += 64 * n
                else:
                    f.write(mv)
                m += n
            if t + 1 < teeth:   # the next tooth's base: 2^(256/teeth) times this one
                F.call(G.TB_FROM_BASE)
                k = 256 // teeth
                while k:
                    n = k if k < 255 else 128
                    F.run(F.ws, F.ws, F.chain_step(F.DBLS, n), 0)
                    k -= n
                F.call(G.TO_AFFINE)
        head[72:104] = h.digest()
        if f is None:
            blob[0:HEADER_SIZE] = head
            return blob
        f.seek(0)
        f.write(head)
    finally:
        if f is not None:
            f.close()
    return None

