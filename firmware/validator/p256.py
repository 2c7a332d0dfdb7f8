# ECDSA P-256 / SHA-256 signature verification for the reader, its field arithmetic in native code.
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
#         table=None   a small table computed now and kept in RAM (4 KB);
#         bytes-like   a table blob (build_table / host_tools.issuing.p256tables), e.g. a constant
#                      of a frozen module, which then stays in flash;
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
# infinity. MemoryError and OSError (the reader's own trouble) are raised.
#
# How (docs/performance.md, "Signature verification"): the field arithmetic is native code
# (p256_native, generated: 13-bit limbs, Montgomery products) driven by programs of p256_field,
# one engine call per point operation; this module keeps the scalar side (mod n: the inverse of
# s, the half gcd, NAF and comb digits) and the order of the additions. All scalar
# multiplications of a verify share one doubling chain (interleaved). Variable bases (the rider
# key, the R point) use width-5 NAF digits over their odd multiples (co-Z additions, one shared
# inversion); fixed bases (the generator, issuer keys) use comb tables (p256_fixed.py). The rider
# signature uses Antipa et al. (verify_recoverable): a 128-step chain. Comments, not docstrings,
# except verify_recoverable's soundness argument: MicroPython needs RAM to compile docstrings.
from array import array

from validator import p256_field as F
from validator import p256_progs as G
from validator.p256_fixed import (HEADER_SIZE, MAX_WIDTH, RAM_TABLE_TEETH, RAM_TABLE_WIDTH,  # noqa: F401
                                  TABLE_MAGIC, TEETH_CHOICES, FixedBase, build_table, comb_digits)

P = F.P
N = F.N
B = F.B
GX = F.GX
GY = F.GY
NAF_WIDTH = 5  # variable bases: odd multiples 1, 3, ..., 15
_HALF_N = 1 << 255
_gbase = None
# digit buffers, allocated once: NAF digits of two variable bases (d & 0xff), comb digits of two
# fixed bases, r and r + n for the final check
_naf = (bytearray(257), bytearray(257))
_NAF0 = bytes(257)
_pos = (array("H", bytes(2 * 130)), array("H", bytes(2 * 130)))   # their nonzero positions
_digs = (array("h", bytes(288)), array("h", bytes(288)))   # up to (256/L) * ceil(L/w) <= 144
_rr = bytearray(64)


def is_bytes(b):
    return isinstance(b, (bytes, bytearray))


def encode_uncompressed(x, y):
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


# x^-1 mod m (m prime, x not 0 mod m) by the extended Euclidean algorithm (MicroPython's
# pow(x, -1, m) is 0; Fermat's pow is 7x slower here).
def inv(x, m):
    a, b = m, x % m
    ta, tb = 0, 1  # a = ta * x, b = tb * x (mod m)
    while b > 1:
        q, a = divmod(a, b)
        ta -= q * tb
        if a <= 1:
            if a:
                return ta % m
            break
        q, b = divmod(b, a)
        tb -= q * ta
    if b == 1:
        return tb % m
    raise ValueError("not invertible")


# The generator's FixedBase, from the first that works of: the table file p256_gtable.bin next
# to this module (a file-system install: read by offset, no RAM), the module p256_gtable (a
# frozen build: the constant stays in flash), a small table computed in RAM (4.6 KB). A damaged
# or missing table only costs speed. Made before any key is loaded into the workspace.
def _generator():
    global _gbase
    if _gbase is None:
        g = encode_uncompressed(GX, GY)
        if "/" in __file__:
            try:
                _gbase = FixedBase(g, __file__.rsplit("/", 1)[0] + "/p256_gtable.bin")
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


# Width-w NAF digits of 0 <= k < 2^(8*size), least significant first, into `out` (digit d
# stored as d & 0xff; nonzero digits are odd with |d| < 2^(w-1)), and the positions of the
# nonzero digits, ascending, into `pos`. Returns their number. Small-int work only: k is read
# as bytes.
def _wnaf(k, w, size, out, pos):
    kb = k.to_bytes(size + 2, "little")
    out[:] = _NAF0
    full = 1 << w
    half = full >> 1
    mask = full - 1
    end = 8 * size
    i = 0
    carry = 0
    n = 0
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
        pos[n] = i
        n += 1
        i += w
    return n


# One step of the chain: the doublings since the last addition, then an addition, in one engine
# call (program `pr`, the entry at buf[off:off+64] for table programs). Returns whether the
# accumulator is now the point at infinity.
def _add(pr, buf, off, inf, doublings):
    while doublings > 255 and not inf:   # a gap in a 256-step chain
        F.run(F.ws, F.ws, F.chain_step(F.DBLS, 255), 0)
        doublings -= 255
    if type(pr) is int:     # a constant program (the _SET forms)
        f = F.call(pr, buf, off)
    else:
        f = F.run(F.ws, buf, F.chain_step(pr, doublings), off)
    if inf or not f & 1:
        return False
    if f & 2:   # the same point: double it
        F.call(G.SET_DBL)
        return False
    return True  # the opposite point


# The sum of k_i * B_i over fixed bases [(FixedBase, k)] (0 <= k < n), using comb pieces of L
# bits (L a multiple of each base's tooth spacing, 256 a multiple of L), and of the variable
# bases in the workspace areas 0 .. nvar-1 (their odd multiples made, NAF digits in _naf, `counts`
# nonzero positions in _pos), in one doubling chain, into the accumulator (X, Y, Z). The
# additions are taken in order of position, highest first, from every base; each is one engine
# call that also does the doublings since the one before. Returns whether the sum is O.
def _msm(L, fixed, nvar, counts):
    fx = []
    for i in range(len(fixed)):
        fb, k = fixed[i]
        neg = 0
        if k >= _HALF_N:  # keep the top window's digit within the table: k*B = -((n-k)*B)
            k = N - k
            neg = 1
        w = fb.width
        if L % fb.spacing or 256 % L:
            raise ValueError("chain length")
        comb_digits(k, w, L, _digs[i])
        nw = (L + w - 1) // w
        fx.append([nw - 1, fb, _digs[i], neg, w, nw, L // fb.spacing])
    nxt = [counts[i] - 1 for i in range(nvar)]   # the next nonzero digit of each variable base
    pieces = 256 // L
    inf = True
    at = 0      # the accumulator's position in the chain (while not inf)
    while True:
        j = -1
        for vi in range(nvar):
            if nxt[vi] >= 0 and _pos[vi][nxt[vi]] > j:
                j = _pos[vi][nxt[vi]]
        for s in fx:
            if s[0] >= 0 and s[0] * s[4] > j:
                j = s[0] * s[4]
        if j < 0:
            break
        for vi in range(nvar):
            if nxt[vi] >= 0 and _pos[vi][nxt[vi]] == j:
                nxt[vi] -= 1
                d = _naf[vi][j]
                neg = d >= 128
                if neg:
                    d = 256 - d
                pr = F.var_entry(F.VAR_SET if inf else F.VAR_ADD, F.area(vi) + d - 1, neg)
                inf = _add(pr, F.ws, 0, inf, at - j)
                at = j
        for s in fx:
            i, fb, digs, neg0, w, nw, step = s
            if i >= 0 and i * w == j:
                s[0] = i - 1
                for q in range(pieces):
                    d = digs[q * nw + i]
                    if d:
                        neg = neg0
                        if d < 0:
                            d = -d
                            neg ^= 1
                        buf, off = fb.entry_at(q * step, d)
                        if inf:
                            inf = _add(G.TAB_SET_NEG if neg else G.TAB_SET, buf, off, inf, 0)
                        else:
                            inf = _add(F.TAB_ADD_NEG if neg else F.TAB_ADD, buf, off, inf, at - j)
                        at = j
    if not inf:
        while at > 0:
            k = at if at < 255 else 255
            F.run(F.ws, F.ws, F.chain_step(F.DBLS, k), 0)
            at -= k
    return inf


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


# x(X : - : Z) mod n == r, without an inversion: X == r Z^2 or (r + n < p) X == (r + n) Z^2.
def _x_matches(inf, r):
    if inf:
        return False
    _rr[0:32] = r.to_bytes(32, "big")
    r2 = r + N
    big = r2 < P
    _rr[32:64] = r2.to_bytes(32, "big") if big else _rr[0:32]
    f = F.call(G.X_IS, _rr)
    return bool(f & 1) or (big and bool(f & 2))


def decode_point(public_key):
    try:
        if F.load_key(public_key, 0):
            return F.point_of(0)
    except MemoryError:
        raise
    except Exception:
        pass
    return None


# Standard ECDSA verification (see the API above).
def verify(public_key, digest, signature):
    try:
        sig = _parse_sig(digest, signature)
        if sig is None:
            return False
        g = _generator()
        if not F.load_key(public_key, 0):
            return False
        e, r, s = sig
        si = inv(s, N)
        u1 = e * si % N
        u2 = r * si % N
        if F.call(G.VAR1) & 1:
            return False
        n = _wnaf(u2, NAF_WIDTH, 32, _naf[0], _pos[0])
        return _x_matches(_msm(256, [(g, u1)], 1, (n,)), r)
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
        sig = _parse_sig(digest, signature)
        if sig is None:
            return False
        g = _generator()
        if not F.load_key(public_key, 0):
            return False
        e, r, s = sig
        rx = r + N if recid & 2 else r
        if rx >= P:
            return False
        _rr[0:32] = rx.to_bytes(32, "big")
        if not F.lift_x(_rr, 0, recid & 1, 1):
            return False
        si = inv(s, N)
        u1 = e * si % N
        u2 = r * si % N
        v, w = _half_gcd(u2, N)
        a = v * u1 % N
        # a*G + w*Q + (-v)*R: fold the signs into the points, keep the scalars positive
        if w < 0:
            w = -w
            F.call(G.NEG_Y_0)
        if v < 0:
            v = -v
        else:
            F.call(G.NEG_Y_1)
        if F.call(G.VAR2) & 1:
            return False
        nq = _wnaf(w, NAF_WIDTH, 16, _naf[0], _pos[0])
        nr = _wnaf(v, NAF_WIDTH, 16, _naf[1], _pos[1])
        return _msm(128, [(g, a)], 2, (nq, nr))
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
        return _x_matches(_msm(L, [(g, e * si % N), (fixed_base, r * si % N)], 0, ()), r)
    except (MemoryError, OSError):
        raise  # the reader's own trouble (no heap, a table file unreadable), not a bad signature
    except Exception:
        return False
