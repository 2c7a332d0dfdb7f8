# THE TEST ORACLE AND BENCH BASELINE, not firmware: the reader's P-256 verifier as it was in
# pure big-integer MicroPython, before the field arithmetic moved to native code
# (firmware/validator/p256.py). Tests compare the native engine with it; bench/bench_p256.py
# times it side by side with the native verifier. It reads the firmware's generator table.
#
# ECDSA P-256 / SHA-256 signature verification in pure MicroPython (big-int arithmetic).
#
# API (tokens.py, keyring.py, signedfile.py call these; docs/design.md "p256" says the same):
#
#   verify(public_key, digest, signature) -> bool
#       Standard ECDSA. public_key: SEC1 bytes, 33 (compressed) or 65 (uncompressed), or the
#       (x, y) pair that decode_point returned (a cache of decoded keys saves the square root of
#       a compressed key; the pair is still checked to be on the curve); digest: 32 bytes;
#       signature: 64 bytes r||s. Both s and n-s verify (no low-S rule).
#   verify_recoverable(public_key, digest, signature, recid) -> bool
#       The same check, faster (Antipa et al.), for signatures that carry the recovery id of their
#       R point (recid 0..3, bit 0: R.y odd, bit 1: R.x = r + n; host_tools.common.ecsign.sign_digest).
#       A valid signature with a wrong recid gives False.
#   FixedBase(public_key, table=None)
#       A key used as a fixed base (an issuer key) with its precomputed table:
#         table=None   a small table computed now and kept in RAM (4 KB, ~5 ms on the unix port);
#         bytes-like   a table blob (build_table / host_tools.issuing.p256tables), e.g. a constant of a
#                      frozen module, which then stays in flash;
#         str          path of a table file on flash, read by offset on each verify (no RAM).
#       The table is checked against the key (header, size, SHA-256 of the entries, first entry ==
#       the key point); ValueError if the key or the table is bad. close() closes a table file.
#   verify_fixed(fixed_base, digest, signature) -> bool
#       verify() for fixed_base.public_key, with the tables of the generator and of the key.
#   build_table(public_key, path=None, teeth=4, width=8) -> bytearray or None
#       The reader computes a table for a key that arrives by sync: written to `path`
#       (streaming, small RAM) or returned.
#   decode_point(public_key) -> (x, y) or None
#
# Every verify function returns False, never raises, for malformed or hostile input of any type:
# wrong lengths or types, r or s outside [1, n-1], coordinates >= p, points off the curve or at
# infinity.
#
# How it is fast (docs/performance.md has the figures):
# - Jacobian coordinates, a = -3 doubling, mixed additions with affine table points; all scalar
#   multiplications of a verify share one doubling chain (interleaved multi-scalar method).
# - Variable bases (the rider key, the R point) use width-5 NAF digits; their odd multiples are
#   computed with co-Z additions and made affine with one shared inversion.
# - Fixed bases (the generator, issuer keys) use comb tables (p256_fixed.py): the chain is 256,
#   128 or 64 steps long and each table lookup covers 8 bits of a scalar.
# - Inverses by the extended Euclidean algorithm (7x fewer instructions than Fermat's pow); the final
#   x-coordinate check needs no inversion (X == r * Z^2).
# The code is split in three modules (p256_arith, p256_fixed, this one) and keeps its comments
# out of docstrings because MicroPython needs RAM to compile a module from source.
from p256_bigint.arith import (B, GX, GY, N, P, batch_inv, decode_point, dbl,
                                  encode_uncompressed, inv, is_bytes, lift_x)
from p256_bigint.fixed import (HEADER_SIZE, MAX_WIDTH, RAM_TABLE_TEETH, RAM_TABLE_WIDTH,
                                  TABLE_MAGIC, TEETH_CHOICES, FixedBase, build_table, comb_digits)

NAF_WIDTH = 5  # variable bases: odd multiples 1, 3, ..., 15
_HALF_N = 1 << 255
_gbase = None


# The generator's FixedBase, from the first that works of: the table file p256_gtable.bin next
# to this module (a file-system install: read by offset, no RAM), the module p256_gtable (a
# frozen build: the constant stays in flash), a small table computed in RAM (4.6 KB). A damaged
# or missing table only costs speed.
def _generator():
    global _gbase
    if _gbase is None:
        g = encode_uncompressed(GX, GY)
        if "/" in __file__:
            try:
                _gbase = FixedBase(g, __file__.rsplit("/", 3)[0] + "/firmware/validator/p256_gtable.bin")
            except (OSError, ValueError):
                pass
        if _gbase is None:
            try:
                from validator import p256_gtable
                _gbase = FixedBase(g, p256_gtable.DATA)
            except (ImportError, ValueError, MemoryError):
                _gbase = FixedBase(g, None)
        if 128 % _gbase.spacing:  # the 128-step chain of verify_recoverable needs >= 2 teeth
            _gbase = FixedBase(g, None)
    return _gbase


# Co-Z precomputation: the Jacobian odd multiples P, 3P, ..., (2*count-1)P of the affine
# P = (x, y), as a flat list [X1, Y1, X3, Y3, ...] plus the scale factors `lam`, where the
# multiple k has Z_k = z0 * lam[1] * ... * lam[k] (multiple 0 is P itself with Z = 1 after
# rescaling: its entry holds x, y). Returns (flat, lam, Z of the last multiple).
def _odd_multiples(x, y, count):
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
        dx = (tx - ax) % p
        if not dx:
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
        lam.append(dx)
    zlast = z
    for i in range(1, count):
        zlast = zlast * lam[i] % p
    return flat, lam, zlast


# Make the co-Z multiples affine in place, given the inverse of the last Z.
def _to_affine_multiples(flat, lam, zinv):
    p = P
    k = len(lam) - 1
    while k > 0:
        zi2 = zinv * zinv % p
        flat[2 * k] = flat[2 * k] * zi2 % p
        flat[2 * k + 1] = flat[2 * k + 1] * zi2 % p * zinv % p
        zinv = zinv * lam[k] % p
        k -= 1
    # multiple 0 (P itself) is already affine


# Width-w NAF digits of 0 <= k < 2^(8*size), least significant first, in a bytearray
# (digit d stored as d & 0xff; nonzero digits are odd with |d| < 2^(w-1)). Returns
# (digits, index of the top nonzero digit or -1). Small-int work only: k is read as bytes.
def _wnaf(k, w, size):
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


# Affine odd multiples (1, 3, ..., 2^(w-1)-1) of each affine point, as flat lists
# [x1, y1, x3, y3, ...]; one inversion for all.
def _var_tables(points, w):
    count = 1 << (w - 2)
    res = []
    zs = []
    for x, y in points:
        flat, lam, zlast = _odd_multiples(x, y, count)
        res.append((flat, lam))
        zs.append(zlast)
    invs = batch_inv(zs)
    for i in range(len(res)):
        _to_affine_multiples(res[i][0], res[i][1], invs[i])
    return [r[0] for r in res]


# The additions of a multi-scalar multiplication, as a list of small ints sorted from the top
# of the doubling chain down: (position << 20) | code, where code is
#   var base i, NAF digit d:              (i << 8) | (d & 0xff)
#   fixed base f, tooth t, multiple m:    1024 + (f << 16) + (t << 12) + (m << 1) + negate
# Points are looked up only when added, which keeps the live heap small.
def _schedule(L, fixed, var):
    ev = []
    for fi in range(len(fixed)):
        fb, k = fixed[fi]
        neg = 0
        if k >= _HALF_N:  # keep the top window's digit within the table: k*B = -((n-k)*B)
            k = N - k
            neg = 1
        w = fb.width
        if L % fb.spacing or 256 % L:
            raise ValueError("chain length")
        digs = comb_digits(k, w, L)
        nw = (L + w - 1) // w
        step = L // fb.spacing
        for q in range(256 // L):
            base = 1024 + (fi << 16) + ((q * step) << 12)
            for i in range(nw):
                d = digs[q * nw + i]
                if d:
                    c = base + (d << 1) + neg if d > 0 else base + (-d << 1) + (neg ^ 1)
                    ev.append(((i * w) << 20) | c)
    for vi in range(len(var)):
        naf, ntop = var[vi][1], var[vi][2]
        for j in range(ntop + 1):
            d = naf[j]
            if d:
                ev.append((j << 20) | (vi << 8) | d)
    ev.sort(reverse=True)
    return ev


# Jacobian sum of k_i * B_i over fixed bases [(FixedBase, k)] (0 <= k < n), using comb
# pieces of L bits (L a multiple of each base's tooth spacing, 256 a multiple of L), and
# variable bases [(flat odd multiples, naf digits, top)], in one doubling chain.
# The doubling (a = -3) and the mixed addition are written out here: this loop is the
# verifier's hot path.
def _msm(L, fixed, var):
    p = P
    ev = _schedule(L, fixed, var)
    ne = len(ev)
    if not ne:
        return 0, 1, 0
    flats = [v[0] for v in var]
    X, Y, Z = 0, 1, 0
    k = 0
    nxt = ev[0] >> 20
    for j in range(nxt, -1, -1):
        if Z:
            zz = Z * Z % p
            yy = Y * Y % p
            a = 3 * (X - zz) * (X + zz) % p
            b = (X * yy << 2) % p
            X = (a * a - (b << 1)) % p
            Z = (Y * Z << 1) % p
            Y = (a * (b - X) - (yy * yy << 3)) % p
        while nxt == j:
            c = ev[k] & 0xfffff
            k += 1
            nxt = ev[k] >> 20 if k < ne else -1
            if c < 1024:
                flat = flats[c >> 8]
                d = c & 0xff
                if d < 128:
                    x2 = flat[d - 1]
                    y2 = flat[d]
                else:
                    d = 256 - d
                    x2 = flat[d - 1]
                    y2 = p - flat[d]
            else:
                c -= 1024
                x2, y2 = fixed[c >> 16][0].entry((c >> 12) & 15, (c >> 1) & 2047)
                if c & 1:
                    y2 = p - y2
            if not Z:
                X, Y, Z = x2, y2, 1
                continue
            zz = Z * Z % p
            h = x2 * zz % p - X
            r = y2 * zz % p * Z % p - Y
            if not h:
                if r:
                    X, Y, Z = 0, 1, 0
                else:
                    X, Y, Z = dbl(x2, y2, 1)
                continue
            hh = h * h % p
            hhh = h * hh % p
            v = X * hh % p
            X = (r * r - hhh - (v << 1)) % p
            Y = (r * (v - X) - Y * hhh) % p
            Z = Z * h % p
    return X, Y, Z


# A public key: SEC1 bytes, or an (x, y) pair from decode_point (a cache of decoded keys saves
# the square root of a compressed key), checked to be on the curve. (x, y) or None.
def _point(public_key):
    if type(public_key) is not tuple:
        return decode_point(public_key)
    if len(public_key) == 2:
        x, y = public_key
        if (type(x) is int and type(y) is int and 0 <= x < P and 0 <= y < P
                and not (y * y - x * x * x + 3 * x - B) % P):
            return public_key
    return None


# (e, r, s) or None.
def _parse_sig(digest, signature):
    if not (is_bytes(digest) and is_bytes(signature)):
        return None
    if len(digest) != 32 or len(signature) != 64:
        return None
    r = int.from_bytes(signature[0:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if not (0 < r < N and 0 < s < N):
        return None
    return int.from_bytes(digest, "big"), r, s


# x(X : - : Z) mod n == r, without an inversion.
def _x_matches(X, Z, r):
    if not Z:
        return False
    p = P
    zz = Z * Z % p
    if (r * zz - X) % p == 0:
        return True
    r += N
    return r < p and (r * zz - X) % p == 0


# Standard ECDSA verification (see the API above).
def verify(public_key, digest, signature):
    try:
        q = _point(public_key)
        sig = _parse_sig(digest, signature)
        if q is None or sig is None:
            return False
        e, r, s = sig
        si = inv(s, N)
        u1 = e * si % N
        u2 = r * si % N
        flat = _var_tables([q], NAF_WIDTH)[0]
        naf, top = _wnaf(u2, NAF_WIDTH, 32)
        X, Y, Z = _msm(256, [(_generator(), u1)], [(flat, naf, top)])
        return _x_matches(X, Z, r)
    except (MemoryError, OSError):
        raise  # the reader's own trouble (no heap, a table file unreadable), not a bad signature
    except Exception:
        return False


# (v, w) with w = v * u mod n and |v|, |w| < 2^128, v != 0 (extended Euclid on n, u,
# stopped at the first remainder below 2^128).
def _half_gcd(u, n):
    lim = 1 << 128
    if u < lim:
        return 1, u
    a, b = n, u
    ta, tb = 0, 1  # a = ta * u, b = tb * u (mod n)
    while True:
        q, a = divmod(a, b)
        ta -= q * tb
        if a < lim:
            return ta, a
        q, b = divmod(b, a)
        tb -= q * ta
        if b < lim:
            return tb, b


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
        q = _point(public_key)
        sig = _parse_sig(digest, signature)
        if q is None or sig is None:
            return False
        e, r, s = sig
        rx = r + N if recid & 2 else r
        ry = lift_x(rx, recid & 1)
        if ry is None:
            return False
        si = inv(s, N)
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
    except (MemoryError, OSError):
        raise  # the reader's own trouble (no heap, a table file unreadable), not a bad signature
    except Exception:
        return False


# verify() for fixed_base.public_key with the comb tables of G and of the key.
def verify_fixed(fixed_base, digest, signature):
    try:
        if not isinstance(fixed_base, FixedBase):
            return False
        sig = _parse_sig(digest, signature)
        if sig is None:
            return False
        e, r, s = sig
        si = inv(s, N)
        g = _generator()
        L = max(g.spacing, fixed_base.spacing)
        X, Y, Z = _msm(L, [(g, e * si % N), (fixed_base, r * si % N)], [])
        return _x_matches(X, Z, r)
    except (MemoryError, OSError):
        raise  # the reader's own trouble (no heap, a table file unreadable), not a bad signature
    except Exception:
        return False
