# Fixed-base (comb) tables for validator.p256: the generator and issuer keys.
#
# Table blob: a header, then teeth * 2^(width-1) entries of 64 bytes (x || y, big-endian, affine);
# entry (t, m) = m * 2^(t*d) * B with d = 256 / teeth, 1 <= m <= 2^(width-1), stored at
# HEADER_SIZE + ((t << (width-1)) + m - 1) * 64. Header (104 bytes):
#   magic "P2T1" | teeth u8 | width u8 | 2 zero bytes | B.x (32) | B.y (32) | SHA-256(entries) (32)
# A 256-bit scalar is cut into pieces of L bits (L = length of the doubling chain, a multiple of
# d); piece q uses tooth q*L/d, read in signed windows of `width` bits (comb_digits).
# Made on the host by host_tools/issuing/p256tables.py (python-ecdsa) or on the reader by build_table.
import hashlib

from validator import watchdog  # noqa: F401 (the reader kept its watchdog fed)
from p256_bigint.arith import P, batch_inv, dbl, decode_point, madd, to_affine

TABLE_MAGIC = b"P2T1"
HEADER_SIZE = 104
TEETH_CHOICES = (1, 2, 4, 8)
MAX_WIDTH = 10
# FixedBase(public_key) with no table: 4 teeth * 16 entries = 4 KB of RAM, computed in ~5 ms
RAM_TABLE_TEETH = 4
RAM_TABLE_WIDTH = 5


# Signed window digits of 0 <= k < 2^255 for pieces of L bits: digit [q * nw + i] is piece q,
# window i (bits q*L + i*w ...). Digits lie in [-(2^(w-1)-1), 2^(w-1)]; the top window of a piece
# may be narrower (then its digit is >= 0 and carries nothing). k < 2^255 keeps the last carry 0.
def comb_digits(k, w, L):
    kb = k.to_bytes(35, "little")
    nw = (L + w - 1) // w
    topw = L - (nw - 1) * w
    full = 1 << w
    half = full >> 1
    out = [0] * ((256 // L) * nw)
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
            out[o] = u
            o += 1
            pos += w
    return out


# A fixed base point with its table. `table`: None (computed now, in RAM), a bytes-like blob
# (a frozen module's constant stays in flash) or the path of a table file (read by offset).
# The table is checked against the key: header, size, SHA-256 of the entries, entry (0, 1) == B.
class FixedBase:
    def __init__(self, public_key, table=None):
        pt = decode_point(public_key)
        if pt is None:
            raise ValueError("bad public key")
        self.public_key = bytes(public_key)
        self.x, self.y = pt
        self._f = None
        self._data = None
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

    def _check(self, head, f, data):
        if len(head) != HEADER_SIZE or bytes(head[0:4]) != TABLE_MAGIC or head[6] or head[7]:
            raise ValueError("not a table")
        teeth = head[4]
        width = head[5]
        if teeth not in TEETH_CHOICES or not 2 <= width <= MAX_WIDTH:
            raise ValueError("bad table parameters")
        if (int.from_bytes(head[8:40], "big") != self.x
                or int.from_bytes(head[40:72], "big") != self.y):
            raise ValueError("table of another key")
        size = (teeth << (width - 1)) * 64
        h = hashlib.sha256()
        if f is None:
            if len(data) != HEADER_SIZE + size:
                raise ValueError("bad table size")
            h.update(data[HEADER_SIZE:])
        else:
            mv = memoryview(bytearray(512))
            left = size
            while left:
                n = f.readinto(mv[:min(512, left)])
                if not n:
                    raise ValueError("bad table size")
                h.update(mv[:n])
                left -= n
            if f.read(1):
                raise ValueError("bad table size")
            self._f = f
            self._mv = memoryview(bytearray(64))
        if h.digest() != bytes(head[72:104]):
            raise ValueError("table checksum")
        self.teeth = teeth
        self.width = width
        self.spacing = 256 // teeth
        self._data = data
        if self.entry(0, 1) != (self.x, self.y):
            raise ValueError("table of another key")

    # Affine m * 2^(t * spacing) * B, 1 <= m <= 2^(width-1).
    def entry(self, t, m):
        o = HEADER_SIZE + (((t << (self.width - 1)) + m - 1) << 6)
        d = self._data
        if d is None:
            d = self._mv
            f = self._f
            f.seek(o)
            f.readinto(d)
            o = 0
        return int.from_bytes(d[o:o + 32], "big"), int.from_bytes(d[o + 32:o + 64], "big")

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None


# The table blob of a key: written to the file `path` (streaming, small RAM; returns None) or
# returned as a bytearray. Unix port: ~25 ms for teeth=4, width=8 (512 entries).
def build_table(public_key, path=None, teeth=4, width=8):
    pt = decode_point(public_key)
    if pt is None:
        raise ValueError("bad public key")
    if teeth not in TEETH_CHOICES or not 2 <= width <= MAX_WIDTH:
        raise ValueError("bad table parameters")
    p = P
    bx, by = pt
    cnt = 1 << (width - 1)
    head = bytearray(TABLE_MAGIC + bytes((teeth, width, 0, 0)) + bx.to_bytes(32, "big")
                     + by.to_bytes(32, "big") + bytes(32))
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
            X, Y, Z = 0, 1, 0
            m = 0
            while m < cnt:  # batches of 16 points, made affine with one inversion
                pts = []
                for _ in range(min(16, cnt - m)):
                    X, Y, Z = madd(X, Y, Z, bx, by)
                    pts.append((X, Y, Z))
                m += len(pts)
                watchdog.kick()  # a 32 KB table takes seconds on an ESP32
                invs = batch_inv([q[2] for q in pts])
                chunk = bytearray(64 * len(pts))
                for i in range(len(pts)):
                    zi = invs[i]
                    zi2 = zi * zi % p
                    q = pts[i]
                    chunk[64 * i:64 * i + 32] = (q[0] * zi2 % p).to_bytes(32, "big")
                    chunk[64 * i + 32:64 * i + 64] = (q[1] * zi2 % p * zi % p).to_bytes(32, "big")
                h.update(chunk)
                if f is None:
                    blob[o:o + len(chunk)] = chunk
                    o += len(chunk)
                else:
                    f.write(chunk)
            if t + 1 < teeth:
                X, Y, Z = bx, by, 1
                for _ in range(256 // teeth):
                    X, Y, Z = dbl(X, Y, Z)
                bx, by = to_affine(X, Y, Z)
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
