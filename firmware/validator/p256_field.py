# The field arithmetic under validator.p256: the workspace of field elements, the engine that runs
# programs over it (p256_xtensa: Xtensa assembly on the reader; p256_native: viper on the unix
# port; p256_host: their CPython twin on the host tools), the programs (p256_progs, generated:
# constants that stay in flash in a frozen build) and the few steps that move keys and points in
# and out of the workspace.
#
# Slots are numbered field elements of the workspace, in Montgomery form (x*R mod p, R = 2^260)
# but for the constants ZERO, SP and ONE_RAW. One engine call runs a whole point operation; the
# Python above it (p256.py) only decides which operation comes next. The workspace, the io buffer
# and the programs that are patched per call are allocated here, once, at import.
# Comments, not docstrings: MicroPython parses docstrings.
from validator import p256_progs as G
from validator.p256_progs import (AREA, AREA_SLOTS, FIX_DIGITS, FIX_GATHERED, FIX_I, FIX_NEG,
                                  FIX_NW, FIX_PIECES,
                                  FIX_POS, FIX_STEP, FIX_W, MOV, PROGS, RPT, SLOTS, SUB,
                                  VAR_ADD_AT, VRUN_FIX0, VRUN_FIX_SIZE, VRUN_NAF0, WS_BYTES, ZERO)

# The engine: Xtensa assembly on the ESP32 (a frozen or xtensawin build has p256_xtensa), viper
# machine code elsewhere (the unix port), the CPython twin on the host.
try:
    from validator import p256_xtensa as _engine
    NATIVE = True
except (ImportError, SyntaxError):
    try:
        from validator import p256_native as _engine
        NATIVE = True
    except (ImportError, SyntaxError):  # CPython: no viper
        from validator import p256_host as _engine
        NATIVE = False

P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b
GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296
GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5
P_BYTES = P.to_bytes(32, "big")
R_BITS = 260

ws = bytearray(WS_BYTES) if NATIVE else _engine.workspace(SLOTS)
io = bytearray(64)          # bytes in and out of the workspace (keys, coordinates)
run = _engine.run


# Does the engine run VRUN itself (the Xtensa engine), or does vrun() below step through it?
VRUN = getattr(_engine, "VRUN", False)


# Runs the program at offset `prog` of PROGS, with io at buf[iooff:] (buf: the workspace when the
# program reads no bytes). Returns its flags.
def call(prog, buf=None, iooff=0):
    return run(ws, ws if buf is None else buf, PROGS, (prog << 16) | iooff)


# A program of PROGS copied into RAM, to be patched per call.
def copy(prog):
    end = prog
    while PROGS[end]:
        end += 4
    return bytearray(PROGS[prog:end + 4])


# the chain steps, patched per call (chain_step, var_entry)
TAB_ADD = copy(G.TAB_ADD)
TAB_ADD_NEG = copy(G.TAB_ADD_NEG)
VAR_ADD = copy(G.VAR_ADD)
VAR_SET = copy(G.VAR_SET)
DBLS = copy(G.DBLS)


def area(i):
    return AREA + i * AREA_SLOTS


# The doubling count (0..255) of a chain step that opens with RPT.
def chain_step(pr, doublings):
    if pr[0] == RPT:
        pr[1] = doublings
    return pr


# VAR_ADD or VAR_SET for the multiple whose x is in slot x_slot (y in the next), negated or not.
def var_entry(pr, x_slot, negate):
    o = VAR_ADD_AT if pr is VAR_ADD else 0
    pr[o + 2] = x_slot
    if negate:
        pr[o + 4], pr[o + 6], pr[o + 7] = SUB, ZERO, x_slot + 1
    else:
        pr[o + 4], pr[o + 6], pr[o + 7] = MOV, x_slot + 1, 0
    return pr


# The fixed bases of the next VRUN, for the steps below: objects with entry_at(tooth, multiple)
# -> (buffer, offset of the 64-byte affine entry), or the buffer of a base's gathered entries;
# the Xtensa engine reads the entries itself from the addresses set_table() gave it.
tables = [None, None]


# Fixed base k of the next VRUN is `fb` (a p256_fixed.FixedBase; or, gathered=True, a buffer of
# the entries its digits need, at (q * nw + i) * 64). Returns whether the engine can run it
# natively: always when vrun() steps in Python; on the Xtensa engine, if the entries are in
# memory (a frozen constant, a RAM table, a gather buffer; not a table file, read by offset).
def set_table(k, fb, gathered=False):
    tables[k] = fb
    if not VRUN:
        return True
    if gathered:
        data, first = fb, 0
    elif fb._data is None:
        return False
    else:
        data, first = fb.entry_at(0, 1)     # the entries start with (0, 1)
    run(ws, data, PROGS, ((G.PTR_1 if k else G.PTR_0) << 16) | first)
    return True


# After an addition (its flags f) that met the same x: the same point is doubled instead (the
# entry is still in X2, Y2), the opposite one leaves O. Returns whether the accumulator is O.
def _same_x(f):
    if not f & 1:
        return 0
    if f & 2:
        call(G.SET_DBL)
        return 0
    return 1


# The doubling chain of a sum of multiples (p256_progs VRUN_*: the block b says where it starts
# and ends, whether the accumulator is O, the variable bases' NAF digits, the fixed bases' comb
# digits), into the accumulator. One engine call on the Xtensa; elsewhere the same steps, one
# call each. Updates the block (the position, whether O); returns the flags (nothing to read).
def vrun(b):
    if VRUN:
        return run(ws, b, PROGS, G.VRUN_PROG << 16)
    j = b[0] | (b[1] << 8)
    end = b[2] | (b[3] << 8)
    inf = b[4]
    nvar = b[5]
    nfix = b[6]
    pend = 0    # doublings not made yet: the next addition makes them first (its RPT)
    while True:
        if not inf:
            pend += 1
        for v in range(nvar):
            d = b[VRUN_NAF0 + 257 * v + j]
            if d:
                neg = d >= 128
                if neg:
                    d = 256 - d
                x = AREA + v * AREA_SLOTS + d - 1
                if inf:
                    run(ws, ws, var_entry(VAR_SET, x, neg), 0)
                    inf = 0
                else:
                    VAR_ADD[1] = _pending(pend)
                    pend = 0
                    inf = _same_x(run(ws, ws, var_entry(VAR_ADD, x, neg), 0))
        for k in range(nfix):
            f = VRUN_FIX0 + k * VRUN_FIX_SIZE
            if b[f + FIX_POS] | (b[f + FIX_POS + 1] << 8) != j:
                continue
            i = b[f + FIX_I]
            nw = b[f + FIX_NW]
            fb = tables[k]
            for q in range(b[f + FIX_PIECES]):
                o = f + FIX_DIGITS + 2 * (q * nw + i)
                d = b[o] | (b[o + 1] << 8)
                if not d:
                    continue
                neg = b[f + FIX_NEG]
                if d >= 32768:
                    d = 65536 - d
                    neg ^= 1
                if b[f + FIX_GATHERED]:
                    buf, off = fb, 64 * (q * nw + i)
                else:
                    buf, off = fb.entry_at(q * b[f + FIX_STEP], d)
                if inf:
                    call(G.TAB_SET_NEG if neg else G.TAB_SET, buf, off)
                    inf = 0
                else:
                    pr = TAB_ADD_NEG if neg else TAB_ADD
                    pr[1] = _pending(pend)
                    pend = 0
                    inf = _same_x(run(ws, buf, pr, off))
            p = (i - 1) * b[f + FIX_W] if i else 0xffff
            b[f + FIX_I] = i - 1 if i else 0
            b[f + FIX_POS] = p & 255
            b[f + FIX_POS + 1] = p >> 8
        if j == end:
            break
        j -= 1
    if pend:
        run(ws, ws, chain_step(DBLS, _pending(pend)), 0)
    b[0] = j & 255
    b[1] = j >> 8
    b[4] = inf
    return 0


# n pending doublings as a RPT count (at most 255): any beyond it are made now.
def _pending(n):
    while n > 255:
        run(ws, ws, chain_step(DBLS, 255), 0)
        n -= 255
    return n


def _set_constants():
    c = bytearray(32 * 8)
    R = 1 << R_BITS
    for i, v in enumerate((0, P, 1, R % P, R * R % P, B * R % P, N, R * R % N)):
        c[32 * i:32 * i + 32] = v.to_bytes(32, "big")
    call(G.SET_CONSTANTS, c)


_set_constants()


def put_int(v, o):
    io[o:o + 32] = v.to_bytes(32, "big")


# The affine point (x, y) of a SEC1 key (33 or 65 bytes), or ints (x, y), into area i; False if
# it is not a point of the curve (coordinates >= p included).
def load_key(public_key, i):
    if type(public_key) is tuple:
        if len(public_key) != 2:
            return False
        x, y = public_key
        if not (type(x) is int and type(y) is int and 0 <= x < P and 0 <= y < P):
            return False
        put_int(x, 0)
        put_int(y, 32)
        return bool(call(G.LOAD_POINT_1 if i else G.LOAD_POINT_0, io) & 1)
    if not isinstance(public_key, (bytes, bytearray)):
        return False
    n = len(public_key)
    if n == 65 and public_key[0] == 4:
        if bytes(public_key[1:33]) >= P_BYTES or bytes(public_key[33:65]) >= P_BYTES:
            return False
        return bool(call(G.LOAD_POINT_1 if i else G.LOAD_POINT_0, public_key, 1) & 1)
    if n == 33 and public_key[0] in (2, 3):
        return lift_x(public_key, 1, public_key[0] & 1, i)
    return False


# The point with x = buf[o:o+32] (big-endian) and the given y parity into area i; False if none.
def lift_x(buf, o, odd, i):
    if bytes(buf[o:o + 32]) >= P_BYTES:
        return False
    f = call(G.LIFT_X_1 if i else G.LIFT_X_0, buf, o)
    if not f & 1:
        return False
    if (f >> 1) & 1 != odd:
        call(G.NEG_Y_1 if i else G.NEG_Y_0)
    return True


# The scalars of a signature: u1 = e/s, u2 = r/s (mod n) as ints, from e (digest) and r||s. The
# inverse and the products are native (Montgomery mod n), not big-integer Python.
_sc = bytearray(96)


def scalars(digest, signature):
    _sc[0:32] = digest
    _sc[32:96] = signature
    call(G.SCALARS, _sc)
    return int.from_bytes(_sc[0:32], "big"), int.from_bytes(_sc[32:64], "big")


# k * v mod n for 0 <= k, v < 2^256 (native).
def scalar_mul(k, v):
    _sc[0:32] = k.to_bytes(32, "big")
    _sc[32:64] = v.to_bytes(32, "big")
    call(G.SCALAR_MUL, _sc)
    return int.from_bytes(_sc[0:32], "big")


# Area i's point as (x, y) ints.
def point_of(i):
    call(G.STORE_POINT_1 if i else G.STORE_POINT_0, io)
    return int.from_bytes(io[0:32], "big"), int.from_bytes(io[32:64], "big")
