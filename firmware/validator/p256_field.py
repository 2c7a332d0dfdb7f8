# The field arithmetic under validator.p256: the workspace of field elements, the engine that runs
# programs over it (p256_native: viper machine code on the reader; p256_host: its CPython twin on
# the host tools), the programs (p256_progs, generated: constants that stay in flash in a frozen
# build) and the few steps that move keys and points in and out of the workspace.
#
# Slots are numbered field elements of the workspace, in Montgomery form (x*R mod p, R = 2^260)
# but for the constants ZERO, SP and ONE_RAW. One engine call runs a whole point operation; the
# Python above it (p256.py) only decides which operation comes next. The workspace, the io buffer
# and the programs that are patched per call are allocated here, once, at import.
# Comments, not docstrings: MicroPython parses docstrings.
from validator import p256_progs as G
from validator.p256_progs import (AREA, AREA_SLOTS, MOV, PROGS, RPT, SLOT_BYTES, SLOTS, SUB,
                                  VAR_ADD_AT, ZERO)

try:
    from validator import p256_native as _engine
    NATIVE = True
except ImportError:  # CPython: no viper
    from validator import p256_host as _engine
    NATIVE = False

P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b
GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296
GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5
P_BYTES = P.to_bytes(32, "big")
R_BITS = 260

ws = bytearray(SLOTS * SLOT_BYTES) if NATIVE else _engine.workspace(SLOTS)
io = bytearray(64)          # bytes in and out of the workspace (keys, coordinates)
run = _engine.run


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


def _set_constants():
    c = bytearray(32 * 6)
    R = 1 << R_BITS
    for i, v in enumerate((0, P, 1, R % P, R * R % P, B * R % P)):
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


# Area i's point as (x, y) ints.
def point_of(i):
    call(G.STORE_POINT_1 if i else G.STORE_POINT_0, io)
    return int.from_bytes(io[0:32], "big"), int.from_bytes(io[32:64], "big")
