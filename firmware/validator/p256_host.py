# The CPython twin of validator.p256_native (CPython has no viper emitter): the same run(ws, io,
# prog, iooff) interpreter of field programs, with the same results as the native engine where a
# program can see them (flags of ISZ and BIT0, bytes that STORE writes). Slots hold Python ints:
# as loaded (LOAD does not reduce, as in the engine), then reduced by each operation; MUL is
# Montgomery's product with the same R (MULN the same mod n), so programs that move in and out
# of Montgomery form with R2, RRN and ONE_RAW mean the same here. Used by the host tools and the CPython
# tests; the reader runs p256_native. tests/firmware/test_p256_native.py holds the two together.
#
# For speed, each distinct program is translated once into a Python function (straight-line
# statements; a RPT loop reads its count from the program at run time, so programs that differ
# only in the count of an opening RPT share a function).
P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
R_BITS = 260
_RINV = pow(1 << R_BITS, -1, P)
_RINV_N = pow(1 << R_BITS, -1, N)

END, MUL, SQR, ADD, SUB, MOV, SQRN, ISZ, LOAD, STORE, CANON, BIT0, RPT, NEXT, MULS, MULN = range(16)
_cache = {}


def workspace(slots):
    return [0] * slots


def _line(op, d, a, b):
    if op == MUL:
        return "w[%d] = w[%d] * w[%d] * RI %% P" % (d, a, b)
    if op == SQR:
        return "w[%d] = w[%d] * w[%d] * RI %% P" % (d, a, a)
    if op == SQRN:
        return "v = w[%d]\nfor _ in range(%d):\n    v = v * v * RI %% P\nw[%d] = v" % (a, b, d)
    if op == ADD:
        return "w[%d] = (w[%d] + w[%d]) %% P" % (d, a, b)
    if op == SUB:
        return "w[%d] = (w[%d] - w[%d]) %% P" % (d, a, b)
    if op == MULS:
        return "w[%d] = w[%d] * %d %% P" % (d, a, b)
    if op == MULN:
        return "w[%d] = w[%d] * w[%d] * RIN %% N" % (d, a, b)
    if op == MOV:
        return "w[%d] = w[%d]" % (d, a)
    if op == CANON:
        return "w[%d] = w[%d] %% w[%d]" % (d, a, b)
    if op == ISZ:
        return "if not w[%d] %% P:\n    flags |= %d" % (a, 1 << d)
    if op == BIT0:
        return "flags |= (w[%d] & 1) << %d" % (a, d)
    if op == LOAD:
        return "o = iooff + %d\nw[%d] = int.from_bytes(bytes(io[o:o + 32]), 'big')" % (32 * b, d)
    if op == STORE:
        return "o = iooff + %d\nio[o:o + 32] = w[%d].to_bytes(32, 'big')" % (32 * b, a)
    raise ValueError("opcode %d" % op)


def _compile(prog, pc):
    src = ["def f(w, io, iooff, prog):", "    flags = 0"]
    indent = "    "
    while True:
        op, d, a, b = prog[pc], prog[pc + 1], prog[pc + 2], prog[pc + 3]
        if op == END or op > MULN:
            break
        if op == RPT:
            src.append(indent + "for _ in range(prog[%d]):" % (pc + 1))
            indent = "        "
            src.append(indent + "pass")
        elif op == NEXT:
            indent = "    "
        else:
            for ln in _line(op, d, a, b).split("\n"):
                src.append(indent + ln)
        pc += 4
    src.append("    return flags")
    env = {"RI": _RINV, "RIN": _RINV_N, "P": P, "N": N}
    exec("\n".join(src), env)
    return env["f"]


def run(ws, io, prog, iooff):
    pc = iooff >> 16
    iooff &= 0xffff
    if type(prog) is bytes:   # a constant: its programs are known by their offset
        key = (id(prog), pc)
    else:                     # patched per call: by content, but for an opening RPT's count
        key = bytes(prog[pc:])
        if key[0] == RPT:
            key = key[:1] + b"\x00" + key[2:]
    f = _cache.get(key)
    if f is None:
        f = _cache[key] = _compile(prog, pc)
    return f(ws, io, iooff, prog)
