"""The field programs of the reader's P-256 verifier, and the module that carries them to the
firmware: firmware/validator/p256_progs.py (generated; `python -m host_tools.fleet.p256gen`
writes it with p256_native.py).

A program is bytes, 4 per operation (opcode, d, a, b), run by p256_native.run (the viper engine)
or p256_host.run (its CPython twin) over a workspace of numbered field elements ("slots"), all
in Montgomery form (x*R mod p, R = 2^260) except the constants ZERO, SP and ONE_RAW. Written
here on the host, they are constants of a module there: frozen into the firmware they stay in
flash and cost no RAM. A whole point operation is one program, so one engine call.

OPS is the instruction set, which host_tools.fleet.p256codegen implements in the engine (and
validator/p256_host.py on CPython); the slot map below is what validator/p256_field.py,
p256_fixed.py and p256.py patch programs and read results by.
"""
OPS = dict(END=0, MUL=1, SQR=2, ADD=3, SUB=4, MOV=5, SQRN=6, ISZ=7, LOAD=8, STORE=9, CANON=10,
           BIT0=11, RPT=12, NEXT=13, MULS=14, MULN=15, VRUN=16, RET=17, PTR=18)
MULS_MAX = 8        # MULS multiplies by a small constant 1..8

P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
END, MUL, SQR, ADD, SUB, MOV, SQRN, ISZ, LOAD, STORE, CANON, BIT0, RPT, NEXT, MULS, MULN, VRUN, RET, PTR = (
    OPS[k] for k in ("END", "MUL", "SQR", "ADD", "SUB", "MOV", "SQRN", "ISZ", "LOAD", "STORE",
                     "CANON", "BIT0", "RPT", "NEXT", "MULS", "MULN", "VRUN", "RET", "PTR"))
N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551

# slots
SLOT_BYTES = 40  # 20 limbs of 13 bits in 16-bit words (host_tools.fleet.p256codegen)
SCR = 0         # the engines' own scratch (the Xtensa engine keeps a product's m_k there)
ZERO = 1
SP = 2          # p itself, in limbs (CANON reads it)
ONE_RAW = 3     # plain 1: a product with it leaves Montgomery form
ONE = 4         # R mod p: 1 in Montgomery form
R2 = 5          # R^2 mod p: a product with it enters Montgomery form
BM = 6          # the curve's b in Montgomery form
SN = 7          # the group order n, in limbs (CANON ... SN; MULN's modulus)
RRN = 8         # R^2 mod n: a MULN with it enters n's Montgomery form
X, Y, Z = 9, 10, 11         # the accumulator (Jacobian)
X2, Y2 = 12, 13             # the affine point added to it
T = 14                      # temporaries T+0 .. T+11
AREA = 26                   # two areas of AREA_SLOTS for variable bases (or a table batch)
AREA_SLOTS = 25             # 16: odd multiples x, y of 1P .. 15P; 8: their Z ratios; 1: last Z
SLOTS = AREA + 2 * AREA_SLOTS
BATCH = 8                   # table points made affine per inversion (8 x 64 bytes of output)

def prog(*ops):
    """Program bytes of operations (opcode, d, a, b), unused fields 0; it ends with END."""
    b = bytearray(4 * len(ops) + 4)
    for i in range(len(ops)):
        o = ops[i]
        b[4 * i] = o[0]
        b[4 * i + 1] = o[1] if len(o) > 1 else 0
        b[4 * i + 2] = o[2] if len(o) > 2 else 0
        b[4 * i + 3] = o[3] if len(o) > 3 else 0
    return bytes(b)


def _t(i):
    return T + i


def _body(*parts):
    out = []
    for p in parts:
        out.extend(p)
    return out


# x^3 - 3x + b of slot x into slot d (uses d and u)
def _rhs(d, x, u):
    return [(SQR, d, x), (MUL, d, d, x), (MULS, u, x, 3), (SUB, d, d, u), (ADD, d, d, BM)]


# flag bit `bit` if (x, y) lies on the curve
def _on_curve(x, y, bit):
    return _rhs(_t(0), x, _t(1)) + [(SQR, _t(1), y), (SUB, _t(1), _t(1), _t(0)), (ISZ, bit, _t(1))]


# x^(2^32 - 1) into T+6, with x^3 in T+1, x^(2^30 - 1) in T+5 (input in T+0, kept)
def _x32():
    a, x2, x3, x6, x12, x30, x32 = _t(0), _t(1), _t(2), _t(3), _t(4), _t(5), _t(6)
    return [(SQR, x2, a), (MUL, x2, x2, a), (SQR, x3, x2), (MUL, x3, x3, a),
            (SQRN, x6, x3, 3), (MUL, x6, x6, x3), (SQRN, x12, x6, 6), (MUL, x12, x12, x6),
            (SQRN, x12, x12, 3), (MUL, x12, x12, x3), (SQRN, x30, x12, 15), (MUL, x30, x30, x12),
            (SQRN, x32, x30, 2), (MUL, x32, x32, x2)]


# T+7 = T+0^(p-2) = 1/T+0 (255 squarings, 12 products)
def _inv():
    a, r = _t(0), _t(7)
    return _x32() + [(SQRN, r, _t(6), 32), (MUL, r, r, a), (SQRN, r, r, 128), (MUL, r, r, _t(6)),
                     (SQRN, r, r, 32), (MUL, r, r, _t(6)), (SQRN, r, r, 30), (MUL, r, r, _t(5)),
                     (SQRN, r, r, 2), (MUL, r, r, a)]


# T+7 = T+0^((p+1)/4), a square root of T+0 if it has one (253 squarings, 9 products)
def _sqrt():
    a, r = _t(0), _t(7)
    return _x32() + [(SQRN, r, _t(6), 32), (MUL, r, r, a), (SQRN, r, r, 96), (MUL, r, r, a),
                     (SQRN, r, r, 94)]


# Jacobian doubling in place, a = -3: 4 products, 4 squares
_DBL = [(SQR, _t(0), Z), (SQR, _t(1), Y), (SUB, _t(2), X, _t(0)), (ADD, _t(3), X, _t(0)),
        (MUL, _t(2), _t(2), _t(3)), (MULS, _t(2), _t(2), 3),           # a = 3(X - Z^2)(X + Z^2)
        (MUL, _t(4), X, _t(1)), (MULS, _t(4), _t(4), 4),               # b = 4 X Y^2
        (MUL, Z, Y, Z), (ADD, Z, Z, Z),                                 # Z' = 2 Y Z
        (SQR, _t(5), _t(2)), (SUB, _t(5), _t(5), _t(4)), (SUB, X, _t(5), _t(4)),  # X' = a^2 - 2b
        (SUB, _t(6), _t(4), X), (MUL, _t(6), _t(2), _t(6)),
        (SQR, _t(7), _t(1)), (MULS, _t(7), _t(7), 8), (SUB, Y, _t(6), _t(7))]   # Y' = a(b - X') - 8Y^4
# (X, Y, Z) += affine (X2, Y2): 8 products, 3 squares. Flag bit 0: h = 0 (the same x), bit 1:
# r = 0 (then the same point: double it; else the opposite: infinity); the result is then void.
_MADD = [(SQR, _t(0), Z), (MUL, _t(1), X2, _t(0)), (SUB, _t(1), _t(1), X),
         (MUL, _t(2), Y2, _t(0)), (MUL, _t(2), _t(2), Z), (SUB, _t(2), _t(2), Y),
         (ISZ, 0, _t(1)), (ISZ, 1, _t(2)),
         (SQR, _t(3), _t(1)), (MUL, _t(4), _t(1), _t(3)), (MUL, _t(5), X, _t(3)),
         (SQR, _t(6), _t(2)), (SUB, _t(6), _t(6), _t(4)), (SUB, _t(6), _t(6), _t(5)),
         (SUB, X, _t(6), _t(5)), (SUB, _t(5), _t(5), X), (MUL, _t(5), _t(2), _t(5)),
         (MUL, _t(7), Y, _t(4)), (SUB, Y, _t(5), _t(7)), (MUL, Z, Z, _t(1))]
_SET = [(MOV, X, X2), (MOV, Y, Y2), (MOV, Z, ONE)]
_LOAD_XY = [(LOAD, X2, 0, 0), (LOAD, Y2, 0, 1), (MUL, X2, X2, R2), (MUL, Y2, Y2, R2)]
_NEG_Y2 = [(SUB, Y2, ZERO, Y2)]

DBL = prog(*_DBL)
SET_DBL = prog(*(_SET + _DBL))                     # the exceptional case of MADD: 2 * (X2, Y2)
# The steps of a doubling chain, one engine call each: RPT_DBL doublings (their count patched by
# chain_step), then an addition. A table entry (64 bytes x || y at io + iooff), optionally
# negated; a variable base's multiple (its slots patched by var_entry). The _SET forms start the
# chain (or restart it after the accumulator became the point at infinity): no doublings.
_RPT_DBL = [(RPT, 0, len(_DBL))] + _DBL + [(NEXT,)]
TAB_ADD = prog(*(_RPT_DBL + _LOAD_XY + _MADD))
TAB_ADD_NEG = prog(*(_RPT_DBL + _LOAD_XY + _NEG_Y2 + _MADD))
TAB_SET = prog(*(_LOAD_XY + _SET))
TAB_SET_NEG = prog(*(_LOAD_XY + _NEG_Y2 + _SET))
VAR_ADD = prog(*(_RPT_DBL + [(MOV, X2, 0), (MOV, Y2, 0)] + _MADD))
VAR_SET = prog(*([(MOV, X2, 0), (MOV, Y2, 0)] + _SET))
DBLS = prog(*_RPT_DBL)                             # the doublings after the last addition
VAR_ADD_AT = 4 * len(_RPT_DBL)                     # where VAR_ADD's two patched MOVs are


def area(i):
    return AREA + i * AREA_SLOTS


# The odd multiples P, 3P, ..., 15P of the affine point in slots (area, area + 1), by co-Z
# additions (Meloni), as Jacobian points sharing scale factors: multiple k has Z = z0 * lam1 *
# ... * lamk with z0 = lam0 = 2y. Leaves x, y at area + 2k, area + 2k + 1, lam_k at area + 16 + k
# and the last Z at area + 24. Flag bit 0: a degenerate step (not a point of large order).
def _odd_multiples(a):
    lam = a + 16
    zl = a + 24
    tx, ty, ax, ay = _t(3), _t(4), _t(1), _t(5)
    out = [(SQR, _t(0), a + 1),                                       # e = y^2
           (MUL, ax, a, _t(0)), (MULS, ax, ax, 4),                   # s = 4xe (= 2P's rescaled x)
           (SQR, _t(2), a), (SUB, _t(2), _t(2), ONE), (MULS, _t(2), _t(2), 3),  # m = 3(x^2 - 1)
           (SQR, tx, _t(2)), (SUB, tx, tx, ax), (SUB, tx, tx, ax),   # 2P.x = m^2 - 2s
           (SUB, ty, ax, tx), (MUL, ty, _t(2), ty),
           (SQR, ay, _t(0)), (MULS, ay, ay, 8), (SUB, ty, ty, ay),   # 2P.y = m(s - x) - 8e^2
           (ADD, lam, a + 1, a + 1)]                                 # z0 = 2y
    for k in range(1, 8):
        out += [(SUB, lam + k, tx, ax), (ISZ, 0, lam + k),           # dx
                (SQR, _t(7), lam + k), (MUL, _t(8), tx, _t(7)), (MUL, _t(9), ax, _t(7)),
                (SUB, _t(10), ty, ay), (SUB, _t(11), _t(8), _t(9)), (MUL, _t(11), ty, _t(11)),
                (SQR, _t(2), _t(10)), (SUB, _t(2), _t(2), _t(8)), (SUB, a + 2 * k, _t(2), _t(9)),
                (SUB, _t(2), _t(8), a + 2 * k), (MUL, _t(2), _t(10), _t(2)),
                (SUB, a + 2 * k + 1, _t(2), _t(11)),
                (MOV, tx, _t(8)), (MOV, ty, _t(11)), (MOV, ax, a + 2 * k), (MOV, ay, a + 2 * k + 1)]
    out.append((MUL, zl, lam, lam + 1))
    for k in range(2, 8):
        out.append((MUL, zl, zl, lam + k))
    return out


# Make an area's multiples affine, given the inverse of its last Z in area + 24.
def _to_affine_multiples(a):
    zi = a + 24
    out = []
    for k in range(7, 0, -1):
        out += [(SQR, _t(8), zi), (MUL, a + 2 * k, a + 2 * k, _t(8)), (MUL, _t(8), _t(8), zi),
                (MUL, a + 2 * k + 1, a + 2 * k + 1, _t(8)), (MUL, zi, zi, a + 16 + k)]
    return out


# the odd multiples of one (VAR1) or two (VAR2) variable bases, affine, one inversion for both
VAR1 = prog(*_body(_odd_multiples(area(0)), [(MOV, _t(0), area(0) + 24)], _inv(),
                   [(MOV, area(0) + 24, _t(7))], _to_affine_multiples(area(0))))
VAR2 = prog(*_body(_odd_multiples(area(0)), _odd_multiples(area(1)),
                   [(MUL, _t(0), area(0) + 24, area(1) + 24)], _inv(),
                   [(MUL, _t(8), _t(7), area(1) + 24), (MUL, area(1) + 24, _t(7), area(0) + 24),
                    (MOV, area(0) + 24, _t(8))],
                   _to_affine_multiples(area(0)), _to_affine_multiples(area(1))))

# the affine point of 64 bytes at io + iooff into slots (d, d+1); flag bit 0: on the curve
def _load_point(d):
    return [(LOAD, d, 0, 0), (LOAD, d + 1, 0, 1), (MUL, d, d, R2), (MUL, d + 1, d + 1, R2)] + \
        _on_curve(d, d + 1, 0)


# the point with the x of 32 bytes at io + iooff into slots (d, d+1); flag bit 0: x is on the
# curve, bit 1: the y found is odd (then negate it for an even y: NEG_Y)
def _lift_x(d):
    return [(LOAD, d, 0, 0), (MUL, d, d, R2)] + _rhs(_t(0), d, _t(1)) + _sqrt() + \
        [(MOV, d + 1, _t(7)), (SQR, _t(1), d + 1), (SUB, _t(1), _t(1), _t(0)), (ISZ, 0, _t(1)),
         (MUL, _t(1), d + 1, ONE_RAW), (CANON, _t(1), _t(1), SP), (BIT0, 1, _t(1))]


LOAD_POINT = [prog(*_load_point(area(i))) for i in (0, 1)]
LIFT_X = [prog(*_lift_x(area(i))) for i in (0, 1)]
NEG_Y = [prog((SUB, area(i) + 1, ZERO, area(i) + 1)) for i in (0, 1)]
# the coordinates of area i's point as 64 bytes x || y into io + iooff
STORE_POINT = [prog((MUL, _t(0), area(i), ONE_RAW), (CANON, _t(0), _t(0), SP), (STORE, 0, _t(0), 0),
                    (MUL, _t(0), area(i) + 1, ONE_RAW), (CANON, _t(0), _t(0), SP),
                    (STORE, 0, _t(0), 1)) for i in (0, 1)]
# the accumulator is O (Z = 0): flag bit 0
IS_INF = prog((ISZ, 0, Z))
# x(X : - : Z) = r (bit 0) or r + n (bit 1), with r and r + n as 64 bytes at io: X == r * Z^2
X_IS = prog((SQR, _t(0), Z), (LOAD, _t(1), 0, 0), (MUL, _t(1), _t(1), R2), (MUL, _t(1), _t(1), _t(0)),
            (SUB, _t(1), _t(1), X), (ISZ, 0, _t(1)), (LOAD, _t(1), 0, 1), (MUL, _t(1), _t(1), R2),
            (MUL, _t(1), _t(1), _t(0)), (SUB, _t(1), _t(1), X), (ISZ, 1, _t(1)))
# the accumulator made affine into (X2, Y2) (Z != 0)
TO_AFFINE = prog(*_body([(MOV, _t(0), Z)], _inv(), [(SQR, _t(8), _t(7)), (MUL, X2, X, _t(8)),
                        (MUL, _t(8), _t(8), _t(7)), (MUL, Y2, Y, _t(8))]))




# VRUN: the doubling chain of a sum of multiples in one call (the Xtensa engine runs it natively;
# p256_field.vrun runs the same steps on the other engines). Its block at io:
#   u16 position to start at (VRUN_J, written back), u16 position to end at (VRUN_END), u8 the
#   accumulator is O (VRUN_INF, written back), u8 number of variable bases (VRUN_NVAR), u8
#   number of fixed bases (VRUN_NFIX), then the engine's own state up to VRUN_NAF0;
#   the variable bases' NAF digits (d & 0xff, 257 each) at VRUN_NAF0 (base 0, then base 1);
#   for each fixed base k at VRUN_FIX0 + k * VRUN_FIX_SIZE: u16 position of its next window
#   (FIX_POS, 0xffff: none left), u8 window width (FIX_W), u8 windows per piece (FIX_NW), u8
#   tooth step per piece (FIX_STEP), u8 the digits' sign is flipped (FIX_NEG), u8 the next
#   window's index (FIX_I), u8 pieces (FIX_PIECES), u8 the entries are gathered (FIX_GATHERED),
#   then its comb digits as i16 (FIX_DIGITS: piece q, window i at q * nw + i).
# At each position from VRUN_J down to VRUN_END: a doubling (unless O), then base 0's and base
# 1's additions (DBL; VAR_SET / VAR_ADD), then, if this is a fixed base's window position, its
# table entries (one per piece with a nonzero digit d: entry (q * step, |d|) of the table whose
# address PTR put into the workspace, negated if d < 0 xor FIX_NEG; or, gathered, the 64 bytes at
# (q * nw + i) * 64 of a buffer the entries a table file holds were read into). An addition that meets the
# same x is settled in place: the same point is doubled instead (SET_DBL), the opposite one
# leaves O (a recoverable verify's sum ends there).
VRUN_J = 0
VRUN_END = 2
VRUN_INF = 4
VRUN_NVAR = 5
VRUN_NFIX = 6
VRUN_NEG = 7       # (the Xtensa engine's own state from here)
VRUN_PHASE = 8
VRUN_BASE = 9
VRUN_FBASE = 10
VRUN_FPIECE = 11
VRUN_NAF0 = 16
VRUN_FIX0 = VRUN_NAF0 + 2 * 257 + 2
FIX_POS, FIX_W, FIX_NW, FIX_STEP, FIX_NEG, FIX_I, FIX_PIECES, FIX_GATHERED, FIX_DIGITS = (
    0, 2, 3, 4, 5, 6, 7, 8, 10)
FIX_MAX_DIGITS = 144    # (256 / L) * ceil(L / w) for the smallest width and pieces allowed
VRUN_FIX_SIZE = FIX_DIGITS + 2 * FIX_MAX_DIGITS
VRUN_SIZE = VRUN_FIX0 + 2 * VRUN_FIX_SIZE
VRUN_PROG = prog((VRUN,))
# what the Xtensa engine's VRUN runs as sub-programs, each returning to it (RET)
SUB_DBL = prog(*(_DBL + [(RET,)]))
SUB_MADD = prog(*(_MADD + [(RET,)]))
SUB_SET = prog(*(_SET + [(RET,)]))
SUB_NEG = prog(*(_NEG_Y2 + [(RET,)]))
SUB_TAB_LOAD = prog(*(_LOAD_XY + [(RET,)]))       # (with io at the table entry)
SUB_SET_DBL = prog(*(_SET + _DBL + [(RET,)]))     # MADD met the same point: 2 * (X2, Y2)
# The workspace's tail after the slots: the tables' addresses (PTR d stores io + iooff at
# WS_PTR + 4d; VRUN reads them) and where VRUN keeps its block's address while io points at a
# table entry (WS_SAVED, 0 otherwise).
WS_PTR = SLOTS * SLOT_BYTES
WS_SAVED = WS_PTR + 8
WS_BYTES = WS_PTR + 16
PTR_0 = prog((PTR, 0))
PTR_1 = prog((PTR, 1))

# Constants into their slots ZERO .. RRN: LOAD of the 32-byte big-endian values 0, p, 1, R mod p,
# R^2 mod p, B*R mod p, n, R^2 mod n (in that order) from io.
SET_CONSTANTS = prog(*[(LOAD, ZERO + i, 0, i) for i in range(8)])

# The scalars of a signature, mod n (MULN: Montgomery products mod n): from e, r, s (32 bytes
# each at io, io+32, io+64), u1 = e/s and u2 = r/s (mod n, reduced) back into io and io+32.
# 1/s = s^(n-2): fixed 4-bit windows over the precomputed s^1..s^15 (AREA .. AREA+14, Montgomery
# form): 252 squarings and at most 63 products.
def _scalars():
    a = AREA
    out = [(LOAD, a, 0, 2), (MULN, a, a, RRN)]              # s~ = s*R mod n
    for k in range(1, 15):
        out.append((MULN, a + k, a + k - 1, a))               # s~^(k+1)
    e = N - 2
    top = (e.bit_length() + 3) // 4
    acc = _t(0)
    first = True
    for i in range(top - 1, -1, -1):
        w = (e >> (4 * i)) & 15
        if first:
            out.append((MOV, acc, a + w - 1))
            first = False
            continue
        out += [(RPT, 4, 1), (MULN, acc, acc, acc), (NEXT,)]
        if w:
            out.append((MULN, acc, acc, a + w - 1))
    # acc = s~^(n-2) = (1/s)*R; a plain value times it is that value over s (Montgomery)
    out += [(LOAD, _t(1), 0, 0), (MULN, _t(1), _t(1), acc), (CANON, _t(1), _t(1), SN),
            (STORE, 0, _t(1), 0),
            (LOAD, _t(1), 0, 1), (MULN, _t(1), _t(1), acc), (CANON, _t(1), _t(1), SN),
            (STORE, 0, _t(1), 1)]
    return out


SCALARS = prog(*_scalars())
# k*v mod n of two values below 2^256 at io (k) and io+32 (v), back into io: k~ = k R, then v k~
SCALAR_MUL = prog((LOAD, _t(0), 0, 0), (MULN, _t(0), _t(0), RRN), (LOAD, _t(1), 0, 1),
                  (MULN, _t(1), _t(1), _t(0)), (CANON, _t(1), _t(1), SN), (STORE, 0, _t(1), 0))

# Table building (p256_fixed.build_table): each new point (the accumulator plus B in (X2, Y2)) is
# copied into the batch area (X, Y, Z at AREA + 3i), the running products of the Z's after them
# (at BATCH_C + i), one inversion serves the batch, and the affine points go out as 64-byte
# entries. Small programs, patched per point at the byte offsets named below.
BATCH_C = AREA + 3 * BATCH
_KEEP = [(MOV, 0, X), (MOV, 0, Y), (MOV, 0, Z)]
TB_STEP = prog(*(_MADD + _KEEP))                    # (m-1)B + B, kept
TB_FIRST = prog(*(_SET + _KEEP))                    # 1B
TB_SECOND = prog(*(_SET + _DBL + _KEEP))            # 2B: the one step that is a doubling
TB_PROD = prog((MUL, 0, 0, 0))                      # c_i = c_(i-1) * Z_i (MOV for i = 0)
TB_INV = prog(*([(MOV, T, 0)] + _inv()))            # T+7 = 1 / c_(n-1)
_zi, _zz, _z, _x, _y = T + 7, T + 8, T + 9, T + 10, T + 11
_OUT_TAIL = [(SQR, _zz, _z), (MUL, _x, 0, _zz), (MUL, _zz, _zz, _z), (MUL, _y, 0, _zz),
             (MUL, _x, _x, ONE_RAW), (CANON, _x, _x, SP), (STORE, 0, _x, 0),
             (MUL, _y, _y, ONE_RAW), (CANON, _y, _y, SP), (STORE, 0, _y, 1)]
# point i > 0: z_i = 1/Z_i from the inverse of c_i and c_(i-1); out as entry i
TB_OUT = prog(*([(MUL, _z, _zi, 0), (MUL, _zi, _zi, 0)] + _OUT_TAIL))
TB_OUT0 = prog(*([(MOV, _z, _zi)] + _OUT_TAIL))     # point 0: z_0 is what is left
TB_SET_BASE = prog((MOV, X2, AREA), (MOV, Y2, AREA + 1))
# the affine (X2, Y2) (after TO_AFFINE) as 64 bytes x || y at io + iooff
STORE_XY2 = prog((MUL, T, X2, ONE_RAW), (CANON, T, T, SP), (STORE, 0, T, 0),
                 (MUL, T, Y2, ONE_RAW), (CANON, T, T, SP), (STORE, 0, T, 1))
TB_FROM_BASE = prog(*_SET)

# What the generated module holds: slot numbers and sizes, then the programs.
NUMBERS = ("VRUN_J", "VRUN_END", "VRUN_INF", "VRUN_NVAR", "VRUN_NFIX", "VRUN_NAF0", "VRUN_FIX0",
           "VRUN_FIX_SIZE", "FIX_POS", "FIX_W", "FIX_NW", "FIX_STEP", "FIX_NEG", "FIX_I",
           "FIX_PIECES", "FIX_GATHERED", "FIX_DIGITS", "FIX_MAX_DIGITS", "VRUN_SIZE", "WS_BYTES",
           "SLOT_BYTES",
           "SCR", "ZERO", "SP", "ONE_RAW", "ONE", "R2", "BM", "SN", "RRN", "X", "Y",
           "Z", "X2", "Y2",
           "T", "AREA", "AREA_SLOTS", "SLOTS", "BATCH", "BATCH_C", "VAR_ADD_AT", "RPT", "SUB",
           "MOV", "MUL")
PROGRAMS = ("DBL", "SET_DBL", "TAB_ADD", "TAB_ADD_NEG", "TAB_SET", "TAB_SET_NEG", "VAR_ADD",
            "VAR_SET", "DBLS", "VAR1", "VAR2", "LOAD_POINT", "LIFT_X", "NEG_Y", "STORE_POINT",
            "IS_INF", "X_IS", "TO_AFFINE", "STORE_XY2", "SET_CONSTANTS", "SCALARS", "SCALAR_MUL",
            "VRUN_PROG", "SUB_DBL", "SUB_MADD", "SUB_SET", "SUB_NEG", "SUB_TAB_LOAD", "SUB_SET_DBL",
            "PTR_0",
            "PTR_1", "TB_STEP", "TB_FIRST", "TB_SECOND",
            "TB_PROD", "TB_INV", "TB_OUT", "TB_OUT0", "TB_SET_BASE", "TB_FROM_BASE")


def _literal(b, indent="    "):
    out = []
    for i in range(0, len(b), 24):
        out.append(indent + "b'" + "".join("\\x%02x" % c for c in b[i:i + 24]) + "'")
    return "(\n" + "\n".join(out) + ")" if len(out) > 1 else out[0].strip()


def layout():
    """(the bytes of PROGS, {program name: its offset}) in the generated module's order."""
    g = globals()
    blob = bytearray()
    where = {}
    for name in PROGRAMS:
        v = g[name]
        for i, b in enumerate(v if isinstance(v, list) else [v]):
            assert len(blob) < 1 << 14
            where[name + ("_%d" % i if isinstance(v, list) else "")] = len(blob)
            blob += b
    return bytes(blob), where


def module_text():
    """The generated module: the slot map, then every program in one constant, PROGS, with each
    program's offset in it as a small int (one object instead of dozens: less RAM when the
    module is loaded from a .mpy file rather than frozen)."""
    g = globals()
    lines = ["# GENERATED by host_tools/fleet/p256programs.py -- do not edit: change it and run",
             "# `python -m host_tools.fleet.p256gen`.",
             "#",
             "# The field programs of validator.p256 (4 bytes per operation: opcode, d, a, b; see",
             "# p256_native.py), all in PROGS, each at the offset its name holds (run() takes",
             "# (offset << 16) | iooff), and the slot map they use. Frozen, PROGS stays in flash.",
             ""]
    for name in NUMBERS:
        lines.append("%s = %d" % (name, g[name]))
    lines.append("")
    blob, where = layout()
    for name, off in where.items():
        lines.append("%s = %d" % (name, off))
    lines.append("")
    lines.append("PROGS = " + _literal(blob))
    return "\n".join(lines) + "\n"
