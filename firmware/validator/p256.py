# ECDSA P-256 / SHA-256 signature verification for the reader, its field arithmetic in native code.
#
# API (tokens.py, keyring.py, signedfile.py call these; docs/design.md "p256" says the same):
#
#   verify(public_key, digest, signature) -> bool
#       Standard ECDSA. public_key: SEC1 bytes, 33 (compressed) or 65 (uncompressed; decode_key
#       makes these from a compressed key once, for a cache of decoded keys), or the (x, y) pair
#       of decode_point (still checked to be on the curve); digest: 32 bytes; signature: 64
#       bytes r||s. Both s and n-s verify (no low-S rule).
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
#   decode_key(public_key) -> the same point as 65 bytes (SEC1 uncompressed) or None
#
# Every verify function returns False, never raises, for malformed or hostile input of any type:
# wrong lengths or types, r or s outside [1, n-1], coordinates >= p, points off the curve or at
# infinity. MemoryError and OSError (the reader's own trouble) are raised.
#
# How (docs/performance.md, "Signature verification"): the field arithmetic is native code (an
# engine of field programs, p256_field: Xtensa assembly on an ESP32, viper on the unix port),
# one engine call per point operation, the whole doubling chain in one (VRUN); this module keeps
# the schedule: the scalars' digits (NAF, comb; native helpers in p256_digits, as the half gcd)
# and which additions the chain makes. All scalar multiplications of a verify share one doubling
# chain. Variable bases (the rider key, the R point) use width-5 NAF digits over their odd
# multiples (co-Z additions, one shared inversion); fixed bases (the generator, issuer keys) use
# comb tables (p256_fixed.py). The rider signature uses Antipa et al. (verify_recoverable): a
# 128-step chain. Comments, not docstrings, except verify_recoverable's soundness argument:
# MicroPython needs RAM to compile docstrings.
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
# Buffers allocated once. The block of a VRUN (p256_progs VRUN_*) holds the digits: the NAF
# digits of two variable bases (d & 0xff, written by _wnaf) and the comb digits of two fixed bases
# (i16, written by comb_digits); the positions of the NAF digits that are not 0; r and r + n for
# the final check.
_vb = bytearray(G.VRUN_SIZE)
_naf = (memoryview(_vb)[G.VRUN_NAF0:G.VRUN_NAF0 + 257],
        memoryview(_vb)[G.VRUN_NAF0 + 257:G.VRUN_NAF0 + 514])
_FIX = (G.VRUN_FIX0, G.VRUN_FIX0 + G.VRUN_FIX_SIZE)
_digs = tuple(memoryview(_vb)[f + G.FIX_DIGITS:f + G.VRUN_FIX_SIZE] for f in _FIX)
_NAF0 = bytes(257)
_pos = (array("H", bytes(2 * 130)), array("H", bytes(2 * 130)))
_rr = bytearray(64)
_GATHER = 32                  # entries: a table file's for one verify (_gather_entries)
_gather = bytearray(64 * _GATHER)
_gv = memoryview(_gather)
_hg = bytearray(4 * 34)      # the half gcd's four 17-limb numbers (p256_digits.half_gcd)
try:  # MicroPython: the digit loops and the half gcd as native code
    from validator.p256_digits import half_gcd as _hg_native
    from validator.p256_digits import naf_into as _naf_native
except (ImportError, SyntaxError):
    _hg_native = _naf_native = None


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
    if _naf_native is not None:
        return _naf_native(kb, 8 * size, w, out, pos)
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


# The fixed bases' comb digits into the VRUN block (its records VRUN_FIX0 ..), and for _msm's
# windows [window, its position, base, record offset, sign, width, windows, tooth step] for
# each of `fixed` [(FixedBase, k)] (0 <= k < n), with pieces of L bits.
def _fixed_digits(L, fixed):
    fx = []
    b = _vb
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
        f = _FIX[i]
        top = (nw - 1) * w
        b[f] = top & 255
        b[f + 1] = top >> 8
        b[f + G.FIX_W] = w
        b[f + G.FIX_NW] = nw
        b[f + G.FIX_STEP] = L // fb.spacing
        b[f + G.FIX_NEG] = neg
        b[f + G.FIX_I] = nw - 1
        b[f + G.FIX_PIECES] = 256 // L
        b[f + G.FIX_GATHERED] = 0
        fx.append([nw - 1, top, fb, f, neg, w, nw, L // fb.spacing])
    b[6] = len(fixed)
    return fx


# The entries a fixed base's digits need (t of _fixed_digits), read from its table file into
# _gather at (q * nw + i) * 64, so that VRUN adds them itself (a table file is read by offset:
# its entries have no address).
def _gather_entries(t, L):
    fb, rec, nw, step = t[2], t[3], t[6], t[7]
    for q in range(256 // L):
        for i in range(nw):
            d = _digit(rec, q * nw + i)
            if d:
                o = 64 * (q * nw + i)
                fb.read_entry(q * step, d if d > 0 else -d, _gv[o:o + 64])
    _vb[rec + G.FIX_GATHERED] = 1


# Comb digit n of the fixed base whose block record is at f (signed).
def _digit(f, n):
    o = f + G.FIX_DIGITS + 2 * n
    d = _vb[o] | (_vb[o + 1] << 8)
    return d - 65536 if d >= 32768 else d


# The sum of k_i * B_i over fixed bases [(FixedBase, k)] (at most two; 0 <= k < n), using comb
# pieces of L bits (L a multiple of each base's tooth spacing, 256 a multiple of L), and of the
# variable bases in workspace areas 0 and 1 (nvar of them: their odd multiples made, NAF digits
# in _naf, `counts` nonzero positions in _pos), in one doubling chain, into the accumulator
# (X, Y, Z); returns whether the sum is O. The whole chain is one VRUN; on the Xtensa engine a
# table file's entries are first read into a buffer (_gather_entries), and if a second table
# file or one with more entries than it holds is left, one VRUN from one of its windows to the
# next, and its additions one engine call each. Additions that meet the same x (P + P, P - P) are
# settled where they happen (p256_field._same_x).
def _msm(L, fixed, nvar, counts):
    if len(fixed) == 2 and fixed[0][0]._data is None and fixed[1][0]._data is not None:
        fixed = [fixed[1], fixed[0]]    # the tables VRUN can read first
    fx = _fixed_digits(L, fixed)
    top = -1
    for v in range(nvar):
        if counts[v] and _pos[v][counts[v] - 1] > top:
            top = _pos[v][counts[v] - 1]
    nfix = 0        # the bases VRUN adds itself: the first nfix
    gathered = False
    for i in range(len(fx)):
        t = fx[i]
        if t[1] > top:
            top = t[1]
        if nfix == i:
            if F.set_table(i, t[2]):
                nfix += 1
            elif not gathered and t[6] * (256 // L) <= _GATHER:
                _gather_entries(t, L)       # a table file (on the Xtensa engine)
                F.set_table(i, _gather, True)
                gathered = True
                nfix += 1
    if top < 0:
        return True
    b = _vb
    b[5] = nvar
    b[6] = nfix
    rest = fx[nfix:]
    run = F.run
    ws = F.ws
    tpos = F.TAB_ADD
    tneg = F.TAB_ADD_NEG
    pieces = 256 // L
    inf = 1
    j = top
    while True:
        jf = -1
        for t in rest:
            if t[1] > jf:
                jf = t[1]
        end = jf if jf >= 0 else 0
        b[0] = j & 255
        b[1] = j >> 8
        b[2] = end & 255
        b[3] = end >> 8
        b[4] = inf
        F.vrun(b)
        inf = b[4]
        if jf < 0:
            break
        for t in rest:
            if t[1] != jf:
                continue
            i, _, fb, rec, neg0, w, nw, step = t
            t[0] = i - 1
            t[1] = (i - 1) * w if i else -1
            for q in range(pieces):
                d = _digit(rec, q * nw + i)
                if not d:
                    continue
                ng = neg0
                if d < 0:
                    d = -d
                    ng ^= 1
                buf, off = fb.entry_at(q * step, d)
                if inf:
                    F.call(G.TAB_SET_NEG if ng else G.TAB_SET, buf, off)
                    inf = 0
                else:
                    pr = tneg if ng else tpos
                    pr[1] = 0       # (no doublings: VRUN made them)
                    inf = F._same_x(run(ws, buf, pr, off))
        if jf == 0:
            break
        j = jf - 1
    return bool(inf)


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


# The key as 65 bytes SEC1 uncompressed, or None: a compressed key's square root taken once (a
# cache of rider keys keeps these; verify takes them at the cost of a curve check).
def decode_key(public_key):
    try:
        if F.load_key(public_key, 0):
            F.call(G.STORE_POINT_0, F.io)
            return b"\x04" + F.io
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


_N_LIMBS = N.to_bytes(34, "little")


# (v, w) with w = v * u mod n and |v|, |w| < 2^128, v != 0 (extended Euclid on n, u,
# stopped at the first remainder below 2^128). Native code on MicroPython (the same steps,
# without big integers), this loop on CPython.
def _half_gcd(u, n):
    if _hg_native is not None and n == N:
        h = _hg
        h[0:34] = _N_LIMBS
        h[34:68] = u.to_bytes(34, "little")
        x = 34 * _hg_native(h)
        t = int.from_bytes(h[68 + x:102 + x], "little")
        if t >= 1 << 271:
            t -= 1 << 272
        return t, int.from_bytes(h[x:x + 34], "little")
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
