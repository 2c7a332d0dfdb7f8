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
# the block of a VRUN (p256_progs VRUN_*), whose NAF digits _wnaf writes in place
_vb = bytearray(G.VRUN_SIZE)
_naf = (memoryview(_vb)[G.VRUN_NAF0:G.VRUN_NAF0 + 257],
        memoryview(_vb)[G.VRUN_NAF0 + 257:G.VRUN_NAF0 + 514])
_NAF0 = bytes(257)
_pos = (array("H", bytes(2 * 130)), array("H", bytes(2 * 130)))   # their nonzero positions
_digs = (array("h", bytes(288)), array("h", bytes(288)))   # up to (256/L) * ceil(L/w) <= 144
_rr = bytearray(64)


def is_bytes(b):
    return isinstance(b, (bytes, bytearray))


def encode_uncompressed(x, y):
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


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


# The rare step after an addition met the same x (flags of MADD): the entry was the accumulator
# (double it) or its opposite (the sum is the point at infinity). Returns whether it is O.
def _same_x(f):
    if f & 2:
        F.call(G.SET_DBL)
        return False
    return True


# The doublings of a chain step (0..255, a RPT count) into program pr; a longer gap (in a
# 256-step chain) is doubled here first.
def _gap(pr, n):
    while n > 255:
        F.run(F.ws, F.ws, F.chain_step(F.DBLS, 255), 0)
        n -= 255
    pr[1] = n


# The fixed bases' comb digits: [window, its position, base, digits, sign, width, windows,
# tooth step] for each of `fixed` [(FixedBase, k)] (0 <= k < n), with pieces of L bits.
def _fixed_digits(L, fixed):
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
        fx.append([nw - 1, (nw - 1) * w, fb, _digs[i], neg, w, nw, L // fb.spacing])
    return fx


# The sum of k_i * B_i over fixed bases [(FixedBase, k)] (at most two; 0 <= k < n), using comb
# pieces of L bits (L a multiple of each base's tooth spacing, 256 a multiple of L), and of the
# variable bases in workspace areas 0 and 1 (nvar of them: their odd multiples made, NAF digits
# in _naf, `counts` nonzero positions in _pos), in one doubling chain, into the accumulator
# (X, Y, Z); returns whether the sum is O. The chain between two windows of the fixed bases is
# one VRUN (the doublings and the variable bases' additions); the fixed bases' additions at a
# window are one engine call each. An addition that meets the same x (P + P, P - P: rare, and
# only for special scalars) makes the chain start again step by step (_msm_steps).
def _msm(L, fixed, nvar, counts):
    fx = _fixed_digits(L, fixed)
    top = -1
    for v in range(nvar):
        if counts[v] and _pos[v][counts[v] - 1] > top:
            top = _pos[v][counts[v] - 1]
    for t in fx:
        if t[1] > top:
            top = t[1]
    if top < 0:
        return True
    b = _vb
    b[5] = nvar
    run = F.run
    ws = F.ws
    tpos = F.TAB_ADD
    tneg = F.TAB_ADD_NEG
    tpos[1] = tneg[1] = 0
    pieces = 256 // L
    inf = 1
    j = top
    while True:
        jf = -1
        for t in fx:
            if t[1] > jf:
                jf = t[1]
        end = jf if jf >= 0 else 0
        b[0] = j & 255
        b[1] = j >> 8
        b[2] = end & 255
        b[3] = end >> 8
        b[4] = inf
        if F.vrun(b) & 128:
            return _msm_steps(L, fixed, nvar, counts)
        inf = b[4]
        if jf < 0:
            break
        for t in fx:
            if t[1] != jf:
                continue
            i, _, fb, digs, neg0, w, nw, step = t
            t[0] = i - 1
            t[1] = (i - 1) * w if i else -1
            data = fb._data
            width = w - 1
            for q in range(pieces):
                d = digs[q * nw + i]
                if not d:
                    continue
                ng = neg0
                if d < 0:
                    d = -d
                    ng ^= 1
                if data is None:
                    buf, off = fb.entry_at(q * step, d)
                else:
                    buf = data
                    off = HEADER_SIZE + ((((q * step) << width) + d - 1) << 6)
                if inf:
                    F.call(G.TAB_SET_NEG if ng else G.TAB_SET, buf, off)
                    inf = 0
                else:
                    f = run(ws, buf, tneg if ng else tpos, off)
                    if f & 1:
                        inf = 1 if _same_x(f) else 0
        if jf == 0:
            break
        j = jf - 1
    return bool(inf)


# The same sum, one engine call per addition (the chain's doublings in the same call): the
# path for the rare chains that meet the same x. Everything is a local.
def _msm_steps(L, fixed, nvar, counts):
    run = F.run
    ws = F.ws
    vadd = F.VAR_ADD
    vset = F.VAR_SET
    vat = G.VAR_ADD_AT
    tpos = F.TAB_ADD
    tneg = F.TAB_ADD_NEG
    MOV = G.MOV
    SUB = G.SUB
    ZERO = G.ZERO
    # variable bases: the position of their next nonzero digit (-1: none left)
    c0 = c1 = -1
    j0 = j1 = -1
    pos0 = _pos[0]
    pos1 = _pos[1]
    naf0 = _naf[0]
    naf1 = _naf[1]
    if nvar > 0 and counts[0]:
        c0 = counts[0] - 1
        j0 = pos0[c0]
    if nvar > 1 and counts[1]:
        c1 = counts[1] - 1
        j1 = pos1[c1]
    a0 = F.area(0) - 1
    a1 = F.area(1) - 1
    fx = _fixed_digits(L, fixed)
    jf0 = jf1 = -1
    if fx:
        jf0 = fx[0][1]
        if len(fx) > 1:
            jf1 = fx[1][1]
    pieces = 256 // L
    inf = True
    at = 0      # the accumulator's position in the chain (while not inf)
    while True:
        j = j0
        if j1 > j:
            j = j1
        if jf0 > j:
            j = jf0
        if jf1 > j:
            j = jf1
        if j < 0:
            break
        for v in (0, 1):
            if v:
                if j1 != j:
                    continue
                d = naf1[j]
                s = a1
                c1 -= 1
                j1 = pos1[c1] if c1 >= 0 else -1
            else:
                if j0 != j:
                    continue
                d = naf0[j]
                s = a0
                c0 -= 1
                j0 = pos0[c0] if c0 >= 0 else -1
            if d >= 128:
                s += 256 - d
                ng = True
            else:
                s += d
                ng = False
            if inf:
                pr = vset
                o = 0
            else:
                pr = vadd
                o = vat
                _gap(pr, at - j)
            pr[o + 2] = s
            if ng:
                pr[o + 4] = SUB
                pr[o + 6] = ZERO
                pr[o + 7] = s + 1
            else:
                pr[o + 4] = MOV
                pr[o + 6] = s + 1
            f = run(ws, ws, pr, 0)
            at = j
            if f & 1 and not inf:
                inf = _same_x(f)
            else:
                inf = False
        for t in fx:
            if t[1] != j:
                continue
            i, _, fb, digs, neg0, w, nw, step = t
            t[0] = i - 1
            t[1] = (i - 1) * w if i else -1
            if t is fx[0]:
                jf0 = t[1]
            else:
                jf1 = t[1]
            data = fb._data
            width = w - 1
            for q in range(pieces):
                d = digs[q * nw + i]
                if not d:
                    continue
                ng = neg0
                if d < 0:
                    d = -d
                    ng ^= 1
                if data is None:
                    buf, off = fb.entry_at(q * step, d)
                else:
                    buf = data
                    off = HEADER_SIZE + ((((q * step) << width) + d - 1) << 6)
                if inf:
                    f = F.call(G.TAB_SET_NEG if ng else G.TAB_SET, buf, off)
                    inf = False
                else:
                    pr = tneg if ng else tpos
                    _gap(pr, at - j)
                    f = run(ws, buf, pr, off)
                    if f & 1:
                        inf = _same_x(f)
                at = j
    if not inf:
        while at > 0:
            k = at if at < 255 else 255
            F.run(F.ws, F.ws, F.chain_step(F.DBLS, k), 0)
            at -= k
    return inf


_N_BYTES = N.to_bytes(32, "big")
_ZERO32 = bytes(32)


# Whether digest and signature are well formed: 32 bytes, and r||s of 64 with 0 < r, s < n
# (compared as big-endian bytes: no big integers).
def _well_formed(digest, signature):
    if not (is_bytes(digest) and is_bytes(signature)):
        return False
    if len(digest) != 32 or len(signature) != 64:
        return False
    r = bytes(signature[0:32])
    s = bytes(signature[32:64])
    return _ZERO32 < r < _N_BYTES and _ZERO32 < s < _N_BYTES


# x(X : - : Z) mod n == r (the signature's first half), without an inversion: X == r Z^2, or
# (r + n < p) X == (r + n) Z^2.
def _x_matches(inf, signature):
    if inf:
        return False
    _rr[0:32] = signature[0:32]
    r2 = int.from_bytes(signature[0:32], "big") + N
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
        if not _well_formed(digest, signature):
            return False
        g = _generator()
        u1, u2 = F.scalars(digest, signature)    # before the key: it works in the areas too
        if not F.load_key(public_key, 0):
            return False
        if F.call(G.VAR1) & 1:
            return False
        n = _wnaf(u2, NAF_WIDTH, 32, _naf[0], _pos[0])
        return _x_matches(_msm(256, [(g, u1)], 1, (n,)), signature)
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
        if not _well_formed(digest, signature):
            return False
        g = _generator()
        u1, u2 = F.scalars(digest, signature)    # before the keys: it works in the areas too
        if not F.load_key(public_key, 0):
            return False
        if recid & 2:
            rx = int.from_bytes(signature[0:32], "big") + N
            if rx >= P:
                return False
            _rr[0:32] = rx.to_bytes(32, "big")
        else:
            _rr[0:32] = signature[0:32]
        if not F.lift_x(_rr, 0, recid & 1, 1):
            return False
        v, w = _half_gcd(u2, N)
        a = F.scalar_mul(v if v > 0 else -v, u1)
        if v < 0 and a:
            a = N - a
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
        if not _well_formed(digest, signature):
            return False
        u1, u2 = F.scalars(digest, signature)
        g = _generator()
        L = max(g.spacing, fixed_base.spacing)
        return _x_matches(_msm(L, [(g, u1), (fixed_base, u2)], 0, ()), signature)
    except (MemoryError, OSError):
        raise  # the reader's own trouble (no heap, a table file unreadable), not a bad signature
    except Exception:
        return False
