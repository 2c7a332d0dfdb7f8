"""ECDSA P-256 / SHA-256 signature verification in pure MicroPython (big-int arithmetic).

API (tokens.py, keyring.py and signedfile.py call these; docs/design.md "p256" has the same):

  verify(public_key, digest, signature) -> bool
      Standard ECDSA. public_key: SEC1 bytes, 33 (compressed) or 65 (uncompressed); digest: 32
      bytes; signature: 64 bytes r||s. Both s and n-s verify (no low-S rule).
  verify_recoverable(public_key, digest, signature, recid) -> bool
      The same check, faster (Antipa et al.), for signatures that carry the recovery id of their
      R point (recid 0..3, bit 0: R.y odd, bit 1: R.x = r + n; host_tools.ecsign.sign_digest).
      A valid signature with a wrong recid gives False.
  FixedBase(public_key, table=None)
      A key used as a fixed base (an issuer key) with its precomputed table:
        table=None   a small table computed now and kept in RAM (RAM_TABLE_TEETH/WIDTH);
        bytes-like   a table blob (build_table / host_tools.p256tables), e.g. a constant of a
                     frozen module, which then stays in flash;
        str          path of a table file on flash, read by offset on each verify.
      The table is checked against the key (header, size, SHA-256 of the entries, first entry ==
      the key point); ValueError if the key or the table is bad. `close()` closes a table file.
  verify_fixed(fixed_base, digest, signature) -> bool
      verify() for fixed_base.public_key, using the tables of the generator and of the key.
  build_table(public_key, path=None, teeth=4, width=8) -> bytes or None
      Compute a table blob on the reader (for a key that arrives by sync); written to `path`
      (streaming, small RAM) or returned.
  decode_point(public_key) -> (x, y) or None

Every verify function returns False, never raises, for malformed or hostile input of any type:
wrong lengths, r or s outside [1, n-1], coordinates >= p, points off the curve or at infinity.

How it is fast (docs/performance.md has the figures):
- Jacobian coordinates, a = -3 doubling, mixed additions with affine table points; all scalar
  multiplications of a verify share one doubling chain (interleaved multi-scalar method).
- Variable bases (the rider key, the R point) use width-5 NAF digits; their odd multiples are
  computed with co-Z additions and made affine with one shared inversion.
- Fixed bases (the generator, issuer keys) use comb tables: the 256-bit scalar is cut into
  pieces of L bits (L = length of the doubling chain), and each piece is read in signed windows
  looked up in a table of m * 2^(t*d) * B (t = tooth, d = 256 / teeth, 1 <= m <= 2^(width-1)).
- Inverses by the extended Euclidean algorithm (4-5x faster than Fermat's pow here); the final
  x-coordinate check needs no inversion (X == r * Z^2).
"""
import hashlib

P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b
GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296
GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5
_SQRT_EXP = (P + 1) // 4  # p = 3 mod 4
_HALF_N = 1 << 255

# Table blob: header, then teeth * 2^(width-1) entries of 64 bytes (x || y, big-endian),
# entry (t, m) = m * 2^(t * 256 / teeth) * B, stored at HEADER_SIZE + ((t << (width-1)) + m-1) * 64.
#   magic "P2T1" | teeth u8 | width u8 | 2 zero bytes | B.x (32) | B.y (32) | SHA-256(entries) (32)
TABLE_MAGIC = b"P2T1"
HEADER_SIZE = 104
TEETH_CHOICES = (1, 2, 4, 8)
MAX_WIDTH = 10
RAM_TABLE_TEETH = 4  # FixedBase(public_key) without a table: 4 * 16 entries, 4 KB of RAM
RAM_TABLE_WIDTH = 5
NAF_WIDTH = 5  # variable bases: odd multiples 1, 3, ..., 15


def _inv(x, m):
    """x^-1 mod m (m prime, x not 0 mod m), extended Euclid: much faster than pow(x, m-2, m)."""
    r0, r1 = m, x % m
    t0, t1 = 0, 1
    while r1:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        t0, t1 = t1, t0 - q * t1
    if r0 != 1:
        raise ValueError("not invertible")
    return t0 % m


def _is_bytes(b):
    return isinstance(b, (bytes, bytearray))


def decode_point(public_key):
    """SEC1 compressed (33 bytes) or uncompressed (65 bytes) point -> (x, y), or None."""
    try:
        if not _is_bytes(public_key):
            return None
        n = len(public_key)
        p = P
        if n == 65 and public_key[0] == 4:
            x = int.from_bytes(public_key[1:33], "big")
            y = int.from_bytes(public_key[33:65], "big")
            if x >= p or y >= p or (y * y - x * x * x + 3 * x - B) % p:
                return None
            return x, y
        if n == 33 and public_key[0] in (2, 3):
            x = int.from_bytes(public_key[1:33], "big")
            y = _lift_x(x, public_key[0] & 1)
            if y is None:
                return None
            return x, y
    except Exception:
        pass
    return None


def _lift_x(x, odd):
    """The curve point's y with this x and parity, or None."""
    p = P
    if x >= p:
        return None
    rhs = (x * x * x - 3 * x + B) % p
    y = pow(rhs, _SQRT_EXP, p)
    if y * y % p != rhs:
        return None
    if (y & 1) != odd:
        y = p - y  # rhs != 0 on P-256 (no point of order 2), so y != 0 and the parities differ
    return y


def _encode_uncompressed(x, y):
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


# ---------------------------------------------------------------- point arithmetic (Jacobian)
# A point is (X, Y, Z) with x = X/Z^2, y = Y/Z^3; Z == 0 is the point at infinity. Coordinates
# are kept reduced in [0, p), which the exceptional-case tests below rely on.

def _dbl(X, Y, Z):
    p = P
    if not Z:
        return 0, 1, 0
    d = Z * Z % p
    g = Y * Y % p
    b = X * g % p
    a = 3 * (X - d) * (X + d) % p  # 3X^2 + aZ^4 with a = -3
    X3 = (a * a - 8 * b) % p
    return X3, (a * (4 * b - X3) - 8 * g * g) % p, 2 * Y * Z % p


def _madd(X1, Y1, Z1, x2, y2):
    """(X1, Y1, Z1) + affine (x2, y2), complete: infinity, equal and opposite points handled."""
    p = P
    if not Z1:
        return x2, y2, 1
    zz = Z1 * Z1 % p
    h = x2 * zz % p - X1
    r = y2 * zz % p * Z1 % p - Y1
    if not h:
        if not r:
            return _dbl(x2, y2, 1)
        return 0, 1, 0
    hh = h * h % p
    hhh = h * hh % p
    v = X1 * hh % p
    X3 = (r * r - hhh - 2 * v) % p
    return X3, (r * (v - X3) - Y1 * hhh) % p, Z1 * h % p


def _add(X1, Y1, Z1, X2, Y2, Z2):
    """General Jacobian addition, complete (used by the table builder)."""
    p = P
    if not Z1:
        return X2, Y2, Z2
    if not Z2:
        return X1, Y1, Z1
    z1z1 = Z1 * Z1 % p
    z2z2 = Z2 * Z2 % p
    u1 = X1 * z2z2 % p
    s1 = Y1 * z2z2 % p * Z2 % p
    h = X2 * z1z1 % p - u1
    r = Y2 * z1z1 % p * Z1 % p - s1
    if not h:
        if not r:
            return _dbl(X1, Y1, Z1)
        return 0, 1, 0
    hh = h * h % p
    hhh = h * hh % p
    v = u1 * hh % p
    X3 = (r * r - hhh - 2 * v) % p
    return X3, (r * (v - X3) - s1 * hhh) % p, Z1 * Z2 % p * h % p


def _odd_multiples(x, y, count):
    """Co-Z precomputation: the Jacobian odd multiples P, 3P, ..., (2*count-1)P of the affine
    P = (x, y), as a flat list [X1, Y1, X3, Y3, ...] plus the scale factors `lam`, where the
    multiple k has Z_k = z0 * lam[1] * ... * lam[k] (multiple 0 is P itself with Z = 1 after
    rescaling: its entry holds x, y). Returns (flat, lam, Z of the last multiple)."""
    p = P
    # 2P and P on the same Z = 2y (doubling of an affine point, a = -3)
    e = y * y % p
    s = 4 * x * e % p
    m = 3 * (x * x - 1) % p
    tx = (m * m - 2 * s) % p
    ty = (m * (s - tx) - 8 * e * e) % p
    z = 2 * y % p
    ax, ay = s, 8 * e * e % p
    flat = [x, y]
    lam = [z]
    for _ in range(count - 1):
        # co-Z addition (Meloni): A + T and T rescaled to the new Z = Z * (tx - ax)
        dx = tx - ax
        if not dx % p:
            raise ValueError("degenerate point")
        c = dx * dx % p
        w1 = tx * c % p
        w2 = ax * c % p
        dy = ty - ay
        a1 = ty * (w1 - w2) % p
        ax = (dy * dy - w1 - w2) % p
        ay = (dy * (w1 - ax) - a1) % p
        tx, ty = w1, a1
        flat.append(ax)
        flat.append(ay)
        lam.append(dx % p)
    zlast = z
    for i in range(1, count):
        zlast = zlast * lam[i] % p
    return flat, lam, zlast


def _to_affine_multiples(flat, lam, zinv):
    """Make the co-Z multiples affine in place, given the inverse of the last Z."""
    p = P
    k = len(lam) - 1
    while k > 0:
        zi2 = zinv * zinv % p
        flat[2 * k] = flat[2 * k] * zi2 % p
        flat[2 * k + 1] = flat[2 * k + 1] * zi2 % p * zinv % p
        zinv = zinv * lam[k] % p
        k -= 1
    # multiple 0 (P itself) is already affine


def _wnaf(k, w, size):
    """Width-w NAF digits of 0 <= k < 2^(8*size), least significant first, in a bytearray
    (digit d stored as d & 0xff; nonzero digits are odd with |d| < 2^(w-1)). Returns
    (digits, index of the top nonzero digit or -1). Small-int work only: k is read as bytes."""
    kb = k.to_bytes(size + 2, "little")
    out = bytearray(8 * size + 1)
    full = 1 << w
    half = full >> 1
    mask = full - 1
    end = 8 * size
    i = 0
    carry = 0
    top = -1
    while i <= end:
        j = i >> 3
        sh = i & 7
        s = ((kb[j] >> sh) & 1) + carry
        if not s & 1:
            carry = s >> 1
            i += 1
            continue
        u = (((kb[j] | (kb[j + 1] << 8)) >> sh) & mask) + carry
        if u >= half:
            out[i] = (u - full) & 0xff
            carry = 1
        else:
            out[i] = u
            carry = 0
        top = i
        i += w
    return out, top


def _batch_inv(zs):
    """Inverses mod p of the nonzero values zs (Montgomery's trick: one inversion)."""
    p = P
    n = len(zs)
    pre = [0] * n
    acc = 1
    for i in range(n):
        acc = acc * zs[i] % p
        pre[i] = acc
    inv = _inv(acc, p)
    out = [0] * n
    for i in range(n - 1, 0, -1):
        out[i] = inv * pre[i - 1] % p
        inv = inv * zs[i] % p
    out[0] = inv
    return out


def _var_tables(points, w):
    """Affine odd multiples (1, 3, ..., 2^(w-1)-1) of each affine point, as flat lists
    [x1, y1, x3, y3, ...]; one inversion for all."""
    count = 1 << (w - 2)
    res = []
    zs = []
    for x, y in points:
        flat, lam, zlast = _odd_multiples(x, y, count)
        res.append((flat, lam))
        zs.append(zlast)
    invs = _batch_inv(zs)
    for i in range(len(res)):
        _to_affine_multiples(res[i][0], res[i][1], invs[i])
    return [r[0] for r in res]


# ---------------------------------------------------------------- fixed bases (comb tables)

def _comb_digits(k, w, L):
    """Signed window digits of 0 <= k < 2^255 for a comb with pieces of L bits: digit
    [q * nw + i] belongs to piece q (bits q*L ...), window i (bits i*w ... within the piece).
    Digits are in [-(2^(w-1)-1), 2^(w-1)]; the top window of a piece may be narrower."""
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


class FixedBase:
    """A fixed base point with its comb table (see the module docstring)."""

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
            self._f = f
            try:
                self._check(f.read(HEADER_SIZE), f, None)
            except Exception:
                f.close()
                raise
            self._buf = bytearray(64)
            self._mv = memoryview(self._buf)
        else:
            data = memoryview(table)
            self._check(data[:HEADER_SIZE], None, data)
            self._data = data

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
            buf = bytearray(1024)
            mv = memoryview(buf)
            left = size
            while left:
                n = f.readinto(mv[:min(1024, left)])
                if not n:
                    raise ValueError("bad table size")
                h.update(mv[:n])
                left -= n
            if f.read(1):
                raise ValueError("bad table size")
        if h.digest() != bytes(head[72:104]):
            raise ValueError("table checksum")
        self.teeth = teeth
        self.width = width
        self.spacing = 256 // teeth
        self._data = data
        if f is not None:
            self._f = f
            self._buf = bytearray(64)
            self._mv = memoryview(self._buf)
        if self.entry(0, 1) != (self.x, self.y):
            raise ValueError("table of another key")

    def entry(self, t, m):
        """Affine m * 2^(t * spacing) * B for 1 <= m <= 2^(width-1)."""
        o = HEADER_SIZE + (((t << (self.width - 1)) + m - 1) << 6)
        d = self._data
        if d is None:
            f = self._f
            f.seek(o)
            f.readinto(self._buf)
            d = self._mv
            o = 0
        return int.from_bytes(d[o:o + 32], "big"), int.from_bytes(d[o + 32:o + 64], "big")

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None


def build_table(public_key, path=None, teeth=4, width=8):
    """Table blob for `public_key` (format above): written to the file `path` (returns None)
    or returned as a bytearray. Cost on the unix port: about 25 ms for teeth=4, width=8."""
    pt = decode_point(public_key)
    if pt is None:
        raise ValueError("bad public key")
    if teeth not in TEETH_CHOICES or not 2 <= width <= MAX_WIDTH:
        raise ValueError("bad table parameters")
    bx, by = pt
    cnt = 1 << (width - 1)
    spacing = 256 // teeth
    head = bytearray(TABLE_MAGIC + bytes((teeth, width, 0, 0)) + bx.to_bytes(32, "big")
                     + by.to_bytes(32, "big") + bytes(32))
    size = (teeth * cnt) * 64
    h = hashlib.sha256()
    f = None
    blob = None
    if path is None:
        blob = bytearray(HEADER_SIZE + size)
        o = HEADER_SIZE
    else:
        f = open(path, "wb")
        f.write(head)
    try:
        batch = 16
        for t in range(teeth):
            X, Y, Z = 0, 1, 0
            m = 0
            while m < cnt:
                pts = []
                for _ in range(min(batch, cnt - m)):
                    X, Y, Z = _madd(X, Y, Z, bx, by)
                    pts.append((X, Y, Z))
                m += len(pts)
                invs = _batch_inv([q[2] for q in pts])
                chunk = bytearray(64 * len(pts))
                for i in range(len(pts)):
                    zi = invs[i]
                    zi2 = zi * zi % P
                    q = pts[i]
                    chunk[64 * i:64 * i + 32] = (q[0] * zi2 % P).to_bytes(32, "big")
                    chunk[64 * i + 32:64 * i + 64] = (q[1] * zi2 % P * zi % P).to_bytes(32, "big")
                h.update(chunk)
                if f is None:
                    blob[o:o + len(chunk)] = chunk
                    o += len(chunk)
                else:
                    f.write(chunk)
            if t + 1 < teeth:
                X, Y, Z = bx, by, 1
                for _ in range(spacing):
                    X, Y, Z = _dbl(X, Y, Z)
                zi = _inv(Z, P)
                zi2 = zi * zi % P
                bx, by = X * zi2 % P, Y * zi2 % P * zi % P
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


_gbase = None


def _generator():
    """The generator's FixedBase, from the first that exists of: the table file p256_gtable.bin
    next to this module (a file system install: read by offset, no RAM), the module
    p256_gtable (a frozen build: the constant stays in flash), a small table computed in RAM."""
    global _gbase
    if _gbase is None:
        g = _encode_uncompressed(GX, GY)
        path = __file__.rsplit("/", 1)[0] + "/p256_gtable.bin" if "/" in __file__ else None
        if path is not None:
            try:
                _gbase = FixedBase(g, path)
            except OSError:
                pass
        if _gbase is None:
            try:
                from validator import p256_gtable
                _gbase = FixedBase(g, p256_gtable.DATA)
            except ImportError:
                _gbase = FixedBase(g, None)
    return _gbase


# ---------------------------------------------------------------- multi-scalar multiplication

def _msm(L, fixed, var):
    """Jacobian sum of k_i * B_i over fixed bases [(FixedBase, k)] (0 <= k < n), using comb
    pieces of L bits (L a multiple of each base's tooth spacing, 256 a multiple of L), and
    variable bases [(flat odd multiples, naf digits, top)] sharing one doubling chain."""
    p = P
    events = {}
    top = -1
    for fb, k in fixed:
        neg = 0
        if k >= _HALF_N:  # keep the top window's digit within the table: k*B = -((n-k)*B)
            k = N - k
            neg = 1
        w = fb.width
        digs = _comb_digits(k, w, L)
        nw = (L + w - 1) // w
        step = L // fb.spacing
        for q in range(256 // L):
            t = q * step
            for i in range(nw):
                d = digs[q * nw + i]
                if d:
                    j = i * w
                    ev = events.get(j)
                    if ev is None:
                        ev = events[j] = []
                    ev.append((fb, t, d, neg))
                    if j > top:
                        top = j
    for flat, naf, ntop in var:
        if ntop > top:
            top = ntop
    X, Y, Z = 0, 1, 0
    for j in range(top, -1, -1):
        if Z:
            X, Y, Z = _dbl(X, Y, Z)
        for flat, naf, ntop in var:
            if j <= ntop:
                d = naf[j]
                if d:
                    if d < 128:
                        X, Y, Z = _madd(X, Y, Z, flat[d - 1], flat[d])
                    else:
                        d = 256 - d
                        X, Y, Z = _madd(X, Y, Z, flat[d - 1], p - flat[d])
        ev = events.get(j)
        if ev is not None:
            for fb, t, d, neg in ev:
                if d < 0:
                    x, y = fb.entry(t, -d)
                    neg ^= 1
                else:
                    x, y = fb.entry(t, d)
                if neg:
                    y = p - y
                X, Y, Z = _madd(X, Y, Z, x, y)
    return X, Y, Z


# ---------------------------------------------------------------- verification

def _parse_sig(digest, signature):
    """(e, r, s) or None."""
    if not (_is_bytes(digest) and _is_bytes(signature)):
        return None
    if len(digest) != 32 or len(signature) != 64:
        return None
    r = int.from_bytes(signature[0:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if not (0 < r < N and 0 < s < N):
        return None
    return int.from_bytes(digest, "big"), r, s


def _x_matches(X, Z, r):
    """x(X : - : Z) mod n == r, without an inversion."""
    if not Z:
        return False
    p = P
    zz = Z * Z % p
    if (r * zz - X) % p == 0:
        return True
    r += N
    return r < p and (r * zz - X) % p == 0


def verify(public_key, digest, signature):
    """Standard ECDSA verification; see the module docstring."""
    try:
        q = decode_point(public_key)
        sig = _parse_sig(digest, signature)
        if q is None or sig is None:
            return False
        e, r, s = sig
        si = _inv(s, N)
        u1 = e * si % N
        u2 = r * si % N
        flat = _var_tables([q], NAF_WIDTH)[0]
        naf, top = _wnaf(u2, NAF_WIDTH, 32)
        X, Y, Z = _msm(256, [(_generator(), u1)], [(flat, naf, top)])
        return _x_matches(X, Z, r)
    except Exception:
        return False


def _half_gcd(u, n):
    """(v, w) with w = v * u mod n and |v|, |w| < 2^128, v != 0 (extended Euclid on n, u,
    stopped at the first remainder below 2^128)."""
    r0, r1 = n, u
    t0, t1 = 0, 1
    lim = 1 << 128
    while r1 >= lim:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        t0, t1 = t1, t0 - q * t1
    return t1, r1


def verify_recoverable(public_key, digest, signature, recid):
    """ECDSA verification that uses the recovery id (Antipa, Brown, Gallant, Lambert, Struik,
    Vanstone, "Accelerated verification of ECDSA signatures", SAC 2005).

    Standard verification accepts iff x(u1*G + u2*Q) = r (mod n), u1 = e/s, u2 = r/s. Here R is
    rebuilt from r and recid (x = r or r + n, y of the given parity, on the curve), and the
    check is  a*G + w*Q - v*R = O  with  w = v*u2 (mod n), a = v*u1 (mod n), where v, w are
    about 128 bits (half extended Euclid on u2 and n), so the variable bases Q and R need only a
    128-step doubling chain.
    Soundness: the sum equals v*(u1*G + u2*Q - R); n is prime and 0 < |v| < n, so it is O iff
    u1*G + u2*Q = R, whose x is r or r + n, i.e. iff the standard check passes and R is the
    point that recid names. So this accepts exactly the signatures that verify() accepts whose
    recid is right; a wrong recid gives a different R and False."""
    try:
        if type(recid) is not int or not 0 <= recid <= 3:
            return False
        q = decode_point(public_key)
        sig = _parse_sig(digest, signature)
        if q is None or sig is None:
            return False
        e, r, s = sig
        rx = r + N if recid & 2 else r
        ry = _lift_x(rx, recid & 1)
        if ry is None:
            return False
        si = _inv(s, N)
        u1 = e * si % N
        u2 = r * si % N
        v, w = _half_gcd(u2, N)
        a = v * u1 % N
        # a*G + w*Q + (-v)*R: fold the signs into the points, keep the scalars positive
        qx, qy = q
        if w < 0:
            w = -w
            qy = P - qy
        if v < 0:
            v = -v
        else:
            ry = P - ry
        tq, tr = _var_tables([(qx, qy), (rx, ry)], NAF_WIDTH)
        nq, topq = _wnaf(w, NAF_WIDTH, 16)
        nr, topr = _wnaf(v, NAF_WIDTH, 16)
        X, Y, Z = _msm(128, [(_generator(), a)], [(tq, nq, topq), (tr, nr, topr)])
        return Z == 0
    except Exception:
        return False


def verify_fixed(fixed_base, digest, signature):
    """verify() for fixed_base.public_key with the comb tables of G and of the key."""
    try:
        if not isinstance(fixed_base, FixedBase):
            return False
        sig = _parse_sig(digest, signature)
        if sig is None:
            return False
        e, r, s = sig
        si = _inv(s, N)
        g = _generator()
        L = max(g.spacing, fixed_base.spacing)
        X, Y, Z = _msm(L, [(g, e * si % N), (fixed_base, r * si % N)], [])
        return _x_matches(X, Z, r)
    except Exception:
        return False
