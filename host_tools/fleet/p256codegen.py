"""Generates firmware/validator/p256_native.py: the reader's P-256 field arithmetic as native code
(MicroPython's viper emitter), fully unrolled where it matters.

Why generated: the multiply is 400 limb products and a Montgomery reduction that is easy to get
right as a loop and slow as one; written out, it is straight-line code with constant offsets.
The generator also states and checks the bounds that make the code right on a 32-bit machine
(viper's `int` is 32 bits on the ESP32 and 64 bits on the unix port, where an overflow would not
show): `bounds()` computes the largest value every accumulator can take and refuses to emit code
that could overflow a signed 32-bit word, unless `check=False` (the tests make such a variant on
purpose, to show that the Xtensa run catches it).

Representation (docs/performance.md, "Native field arithmetic"):
- a field element is LIMBS limbs of BITS bits (13 x 20 = 260 bits), little-endian, each limb in
  [0, 2^13) and the value below 2^258 (not necessarily reduced mod p), stored as unsigned 16-bit
  words (40 bytes a slot); arithmetic runs on signed 32-bit words and stores only values in
  [0, 2^16), because a 16-bit load zero-extends (a negative value would come back positive);
- multiplication is Montgomery's with R = 2^260; P-256's p = 2^256 - 2^224 + 2^192 + 2^96 - 1
  is -1 mod 2^96, so each reduction step's factor is just the low limb and m*p is four shifted
  additions (no multiplications);
- a sum or difference is brought below 2^258 by subtracting q*p for q from its top limb (again
  four shifted additions) and one carry pass.

The module it writes has one function, `run(ws, io, prog, iooff)`: a tiny interpreter of field
operations over a workspace of slots, so that a whole point operation is one call from Python
(validator/p256.py builds the programs). `python -m host_tools.fleet.p256gen` rewrites the
module; tests/firmware/test_p256_native.py checks that the committed file is what this makes.
"""

P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551

from host_tools.fleet.p256programs import MULS_MAX, OPS, module_text  # noqa: E402
INT32_MAX = (1 << 31) - 1
INT32_MIN = -(1 << 31)


class Layout:
    """The limb layout and what follows from it for P-256."""

    def __init__(self, bits=13):
        self.bits = bits
        self.mask = (1 << bits) - 1
        self.limbs = -(-258 // bits)            # enough for values below 2^258
        self.rbits = self.limbs * bits          # R = 2^rbits
        if (P + 1) % (1 << bits):
            raise ValueError("p is not -1 mod 2^bits: the reduction factor would not be 1")
        # m*p = m*2^256 - m*2^224 + m*2^192 + m*2^96 - m: (limb offset, shift, sign) of each term
        # after the -m that the reduction cancels.
        self.pterms = [(e // bits, e % bits, s) for e, s in ((96, 1), (192, 1), (224, -1), (256, 1))]
        self.top_shift = 256 - (self.limbs - 1) * bits   # bits of 2^256 inside the top limb
        self.slot_bytes = 2 * self.limbs      # limbs stored as unsigned 16-bit words

    def to_limbs(self, v):
        out = []
        for _ in range(self.limbs):
            out.append(v & self.mask)
            v >>= self.bits
        if v:
            raise ValueError("value too large for the limbs")
        return out

    def bounds(self):
        """The extreme value of every variable and limb that the generated arithmetic (MUL, SQR,
        ADD, SUB with their reduction and carry passes) can produce, found by running the very
        lines the generator emits on intervals: inputs with limbs in [0, 2^bits) and the top limb
        below 2^(258 - bits*(limbs-1)) (values below 2^258). Returns {name: (lo, hi)}."""
        top = (1 << (258 - self.bits * (self.limbs - 1))) - 1
        inp = [Interval(0, self.mask)] * (self.limbs - 1) + [Interval(0, top)]
        out = {}
        for name, lines, two in (("MUL", _lines_mul(self, False), True),
                                 ("SQR", _lines_mul(self, True), False),
                                 ("ADD", _lines_addsub(self, False) + _lines_fold_carry(self), True),
                                 ("SUB", _lines_addsub(self, True) + _lines_fold_carry(self), True),
                                 ("MULS", _lines_muls(self) + _lines_fold_carry(self), False),
                                 ("MULN unsigned", _lines_muln(self), True)):
            env = {"pa": _Limbs(inp), "pb": _Limbs(inp), "pd": _Limbs([Interval(0, 0)] * self.limbs),
                   "b": Interval(1, MULS_MAX), "uint": lambda v: Interval.of(v)}
            seen = Interval.seen = _Seen()
            try:
                for ln in lines:
                    target, expr = ln.split(" = ", 1)
                    v = Interval.of(eval(expr, {}, _Env(env)))
                    seen.add(v)
                    if "[" in target:
                        limb = int(target[3:-1])
                        if limb == self.limbs - 1 and ln is lines[-1]:
                            # the top limb, stored last after a full carry pass: the limbs below
                            # it are in [0, 2^bits), so it is non-negative because the value is
                            # (a Montgomery product; a sum minus q*p with q at most the quotient)
                            # and below 2^(258 - bits*(limbs-1)) because the value is below 2^258
                            v = Interval(0, top)
                        elif v.lo < 0 or v.hi > 0xffff:
                            out[name + " stores a limb outside [0, 2^16): negative"] = (v.lo, v.hi)
                        env["pd"][limb] = v
                    else:
                        env[target] = v
            finally:
                Interval.seen = None
            out[name] = (seen.lo, seen.hi)
        return out

    def check(self):
        def wrong(k, v):
            if "negative" in k:
                return True
            if "unsigned" in k:        # uint arithmetic: [0, 2^32)
                return v[0] < 0 or v[1] > 2 * INT32_MAX + 1
            return v[0] < INT32_MIN or v[1] > INT32_MAX
        bad = {k: v for k, v in self.bounds().items() if wrong(k, v)}
        if bad:
            raise OverflowError("a signed 32-bit word overflows: %r" % bad)


class Interval:
    """A closed integer interval with the operations the generated code uses (sound bounds).
    Every interval made is reported to `Interval.seen`, so that the intermediate values of an
    expression count too, not only what is assigned."""
    seen = None

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi
        if Interval.seen is not None:
            Interval.seen.add(self)

    @staticmethod
    def of(v):
        return v if isinstance(v, Interval) else Interval(v, v)

    def __add__(self, o):
        o = Interval.of(o)
        return Interval(self.lo + o.lo, self.hi + o.hi)

    __radd__ = __add__

    def __sub__(self, o):
        o = Interval.of(o)
        return Interval(self.lo - o.hi, self.hi - o.lo)

    def __rsub__(self, o):
        return Interval.of(o) - self

    def __mul__(self, o):
        o = Interval.of(o)
        c = (self.lo * o.lo, self.lo * o.hi, self.hi * o.lo, self.hi * o.hi)
        return Interval(min(c), max(c))

    def __lshift__(self, n):
        return Interval(self.lo << n, self.hi << n)

    def __rshift__(self, n):
        return Interval(self.lo >> n, self.hi >> n)   # arithmetic shift: monotonic

    def __and__(self, m):
        assert m >= 0 and not m & (m + 1), "only low masks"
        if self.lo >= 0 and self.hi <= m:
            return self
        return Interval(0, m)


class _Limbs(list):
    pass


class _Env(dict):
    def __init__(self, env):
        super().__init__(env)

    def __missing__(self, k):
        raise NameError(k)


class _Seen:
    def __init__(self):
        self.lo = self.hi = 0

    def add(self, v):
        self.lo, self.hi = min(self.lo, v.lo), max(self.hi, v.hi)


def _sub_offset(lay):
    """8p in limbs that each cover a limb of the subtrahend (limb i >= 2^bits - 1, the top limb
    above the largest top limb of a value below 2^258), so that a - b + 8p is non-negative limb by
    limb: nothing negative is ever stored (a 32-bit load reads it back as a large positive number
    on the 64-bit unix port, as a negative one on the ESP32)."""
    k = lay.to_limbs(8 * P)
    top = (1 << (258 - lay.bits * (lay.limbs - 1))) - 1
    out = [k[0] + (1 << lay.bits)] + [v + (1 << lay.bits) - 1 for v in k[1:-1]] + [k[-1] - 1]
    assert sum(v << (lay.bits * i) for i, v in enumerate(out)) == 8 * P
    assert min(out[:-1]) >= lay.mask and out[-1] >= top
    return out


def _lines_muls(lay):
    return ["pd[%d] = pa[%d] * b" % (i, i) for i in range(lay.limbs)]


def _lines_addsub(lay, sub):
    if not sub:
        return ["pd[%d] = pa[%d] + pb[%d]" % (i, i, i) for i in range(lay.limbs)]
    k = _sub_offset(lay)
    return ["pd[%d] = pa[%d] - pb[%d] + %d" % (i, i, i, k[i]) for i in range(lay.limbs)]


def _lines_mul(lay, square):
    L, M, b = lay.limbs, lay.mask, lay.bits
    out = []
    for k in range(2 * L - 1):
        terms = []
        if square:
            cross = ["pa[%d] * pa[%d]" % (i, k - i) for i in range(max(0, k - L + 1), L)
                     if i < k - i]
            if cross:
                terms.append("((%s) << 1)" % " + ".join(cross))
            if k % 2 == 0 and k // 2 < L:
                terms.append("pa[%d] * pa[%d]" % (k // 2, k // 2))
        else:
            terms += ["pa[%d] * pb[%d]" % (i, k - i) for i in range(max(0, k - L + 1), min(k, L - 1) + 1)]
        pend = []
        for off, sh, s in lay.pterms:
            j = k - off
            if 0 <= j < L:
                pend.append(("+ (m%d << %d)" if s > 0 else "- (m%d << %d)") % (j, sh))
        expr = " + ".join(terms)
        if k:
            expr = "c + " + expr
        if pend:
            expr += " " + " ".join(pend)
        out.append("t = " + expr)
        if k < L:
            out.append("m%d = t & %d" % (k, M))
        else:
            out.append("pd[%d] = t & %d" % (k - L, M))
        out.append("c = t >> %d" % b)
    out.append("pd[%d] = c" % (L - 1))
    return out


def _lines_muln(lay):
    """The Montgomery product mod n (dense: n has no special form), unsigned: a column holds up to
    2L products (the operands' and the reduction's), whose sum passes 2^31 but not 2^32; every
    term is non-negative, so the accumulator is a uint and the carry a logical shift (tn, cn: a
    viper local keeps one type, and t, c are ints elsewhere)."""
    L, M, b = lay.limbs, lay.mask, lay.bits
    nl = lay.to_limbs(N)
    nprime = (-pow(N, -1, 1 << b)) % (1 << b)
    out = []
    for k in range(2 * L - 1):
        terms = ["pa[%d] * pb[%d]" % (i, k - i) for i in range(max(0, k - L + 1), min(k, L - 1) + 1)]
        terms += ["u%d * %d" % (j, nl[k - j]) for j in range(max(0, k - L + 1), min(k, L)) if nl[k - j]]
        expr = ("cn + " if k else "uint(0) + ") + " + ".join(terms)
        out.append("tn = " + expr)
        if k < L:
            out.append("u%d = ((tn & %d) * %d) & %d" % (k, M, nprime, M))
            if nl[0]:
                out.append("tn = tn + u%d * %d" % (k, nl[0]))
        else:
            out.append("pd[%d] = tn & %d" % (k - L, M))
        out.append("cn = tn >> %d" % b)
    out.append("pd[%d] = cn" % (L - 1))
    return out


def _lines_fold_carry(lay):
    """Bring pd (limbs >= 0, value below 2^261) below 2^258 with limbs in [0, 2^bits): subtract
    q*p, q from the top limb (minus one, so that the result stays positive whatever the lower
    limbs carry), folded into one carry pass so that only reduced limbs are stored."""
    L, M, b = lay.limbs, lay.mask, lay.bits
    adj = {0: " + q"}
    for off, sh, s in lay.pterms[:3]:
        # subtracting q*p: -q*2^96, -q*2^192, +q*2^224 (and +q for the -1, above)
        adj[off] = adj.get(off, "") + (" - (q << %d)" if s > 0 else " + (q << %d)") % sh
    out = ["q = (pd[%d] >> %d) - 1" % (L - 1, lay.top_shift), "c = 0"]
    for i in range(L - 1):
        out.append("t = pd[%d] + c%s" % (i, adj.get(i, "")))
        out.append("pd[%d] = t & %d" % (i, M))
        out.append("c = t >> %d" % b)
    out.append("pd[%d] = pd[%d] + c - (q << %d)" % (L - 1, L - 1, lay.top_shift))
    return out


def _kp_checks(lay, k):
    limbs = lay.to_limbs(k * P)
    return " and ".join("pa[%d] == %d" % (i, v) for i, v in enumerate(limbs))


def generate(bits=13, check=True):
    lay = Layout(bits)
    if check:
        lay.check()
    L, M, SB = lay.limbs, lay.mask, lay.slot_bytes
    nzero = (1 << 258) // P + 1   # multiples of p below 2^258: 0, p, ..., (nzero - 1) p
    ind = " " * 12

    def block(lines, extra=0):
        return "\n".join(" " * (12 + extra) + ln for ln in lines)

    src = []
    w = src.append
    w("# GENERATED by host_tools/fleet/p256codegen.py (limbs of %d bits) -- do not edit: change the" % bits)
    w("# generator and run `python -m host_tools.fleet.p256gen`.")
    w("#")
    w("# P-256 field arithmetic as native code (viper) for validator.p256: a field element is %d" % L)
    w("# limbs of %d bits in 16-bit words (each limb in [0, 2^%d), the value below 2^258); products are" % (bits, bits))
    w("# Montgomery products with R = 2^%d. run(ws, io, prog, iooff) executes the program `prog` (4" % lay.rbits)
    w("# bytes per operation: opcode, d, a, b) over the slots of the workspace `ws` (slot k at byte")
    w("# %d*k) and returns the flags that ISZ and BIT0 set. `io` is a byte buffer for LOAD and STORE" % SB)
    w("# (32 bytes big-endian at (iooff & 0xffff) + 32*b); the program starts at prog[iooff >> 16], as")
    w("# many programs share one constant. Every accumulator's bounds are checked by the generator")
    w("# for a signed 32-bit word (the ESP32's viper int); docs/performance.md has the design.")
    w("import micropython")
    w("")
    w("")
    w("@micropython.viper")
    w("def run(pa: ptr16, pb: ptr16, prog: ptr8, iooff: int) -> int:")
    w("    wsa = uint(pa)")
    w("    io = uint(pb)")
    w("    flags = 0")
    w("    pc = iooff >> 16  # the program starts at prog[iooff >> 16]; io at io[iooff & 0xffff]")
    w("    iooff = iooff & 65535")
    w("    rpt = 0")
    w("    body = 0")
    w("    while True:")
    w("        op = prog[pc]")
    w("        d = prog[pc + 1]")
    w("        a = prog[pc + 2]")
    w("        b = prog[pc + 3]")
    w("        pc += 4")
    # MUL
    w("        if op == %d:  # MUL d = a * b / R" % OPS["MUL"])
    w(ind + "pa = ptr16(wsa + a * %d)" % SB)
    w(ind + "pb = ptr16(wsa + b * %d)" % SB)
    w(ind + "pd = ptr16(wsa + d * %d)" % SB)
    w(block(_lines_mul(lay, square=False)))
    # SQR / SQRN
    w("        elif op == %d or op == %d:  # SQR d = a^2 / R; SQRN: b squarings" % (OPS["SQR"], OPS["SQRN"]))
    w(ind + "n = 1")
    w(ind + "if op == %d:" % OPS["SQRN"])
    w(ind + "    n = b")
    w(ind + "pd = ptr16(wsa + d * %d)" % SB)
    w(ind + "while n > 0:")
    w(ind + "    pa = ptr16(wsa + a * %d)" % SB)
    w(block(_lines_mul(lay, square=True), 4))
    w(ind + "    a = d")
    w(ind + "    n -= 1")
    # ADD / SUB
    w("        elif op == %d or op == %d:  # ADD d = a + b; SUB d = a - b + 8p; then fold" % (OPS["ADD"], OPS["SUB"]))
    w(ind + "pa = ptr16(wsa + a * %d)" % SB)
    w(ind + "pb = ptr16(wsa + b * %d)" % SB)
    w(ind + "pd = ptr16(wsa + d * %d)" % SB)
    w(ind + "if op == %d:" % OPS["ADD"])
    w(block(_lines_addsub(lay, False), 4))
    w(ind + "else:")
    w(block(_lines_addsub(lay, True), 4))
    w(block(_lines_fold_carry(lay)))
    # MULN
    w("        elif op == %d:  # MULN d = a * b / R mod n (below 2n), unsigned sums" % OPS["MULN"])
    w(ind + "pa = ptr16(wsa + a * %d)" % SB)
    w(ind + "pb = ptr16(wsa + b * %d)" % SB)
    w(ind + "pd = ptr16(wsa + d * %d)" % SB)
    w(block(_lines_muln(lay)))
    # MULS
    w("        elif op == %d:  # MULS d = a * b for a small b (1..%d); then fold" % (OPS["MULS"], MULS_MAX))
    w(ind + "pa = ptr16(wsa + a * %d)" % SB)
    w(ind + "pd = ptr16(wsa + d * %d)" % SB)
    w(block(_lines_muls(lay)))
    w(block(_lines_fold_carry(lay)))
    # RPT / NEXT
    w("        elif op == %d:  # RPT: run the next a operations d times (none for d = 0)" % OPS["RPT"])
    w(ind + "if d == 0:")
    w(ind + "    pc += (a + 1) * 4")
    w(ind + "else:")
    w(ind + "    rpt = d")
    w(ind + "    body = pc")
    w("        elif op == %d:  # NEXT: the end of a RPT body" % OPS["NEXT"])
    w(ind + "rpt -= 1")
    w(ind + "if rpt > 0:")
    w(ind + "    pc = body")
    # MOV
    w("        elif op == %d:  # MOV d = a" % OPS["MOV"])
    w(ind + "pa = ptr16(wsa + a * %d)" % SB)
    w(ind + "pd = ptr16(wsa + d * %d)" % SB)
    w(block(["pd[%d] = pa[%d]" % (i, i) for i in range(L)]))
    # ISZ
    w("        elif op == %d:  # ISZ: flag bit d if a is 0 mod p (a multiple of p below 2^258)" % OPS["ISZ"])
    w(ind + "pa = ptr16(wsa + a * %d)" % SB)
    for k in range(nzero):
        w(ind + ("if " if k == 0 else "elif ") + _kp_checks(lay, k) + ":")
        w(ind + "    flags = flags | (1 << d)")
    # LOAD
    w("        elif op == %d:  # LOAD d = 32 bytes big-endian at io + iooff + 32*b (no conversion)" % OPS["LOAD"])
    w(ind + "src = ptr8(io + iooff + b * 32)")
    w(ind + "pd = ptr16(wsa + d * %d)" % SB)
    w(ind + "acc = 0")
    w(ind + "nb = 0")
    w(ind + "j = 0")
    w(ind + "i = 31")
    w(ind + "while i >= 0:")
    w(ind + "    acc = acc | (src[i] << nb)")
    w(ind + "    nb += 8")
    w(ind + "    if nb >= %d:" % bits)
    w(ind + "        pd[j] = acc & %d" % M)
    w(ind + "        acc = acc >> %d" % bits)
    w(ind + "        nb -= %d" % bits)
    w(ind + "        j += 1")
    w(ind + "    i -= 1")
    w(ind + "while j < %d:" % L)
    w(ind + "    pd[j] = acc")
    w(ind + "    acc = 0")
    w(ind + "    j += 1")
    # STORE
    w("        elif op == %d:  # STORE a (reduced, out of Montgomery form) as 32 bytes at io + iooff + 32*b" % OPS["STORE"])
    w(ind + "dst = ptr8(io + iooff + b * 32)")
    w(ind + "pa = ptr16(wsa + a * %d)" % SB)
    w(ind + "acc = 0")
    w(ind + "nb = 0")
    w(ind + "j = 0")
    w(ind + "i = 31")
    w(ind + "while i >= 0:")
    w(ind + "    if nb < 8:")
    w(ind + "        acc = acc | (pa[j] << nb)")
    w(ind + "        nb += %d" % bits)
    w(ind + "        j += 1")
    w(ind + "    dst[i] = acc & 255")
    w(ind + "    acc = acc >> 8")
    w(ind + "    nb -= 8")
    w(ind + "    i -= 1")
    # CANON
    w("        elif op == %d:  # CANON d = a reduced mod the modulus in slot b (p or n): subtract it while that does not borrow" % OPS["CANON"])
    w(ind + "pa = ptr16(wsa + a * %d)" % SB)
    w(ind + "pd = ptr16(wsa + d * %d)" % SB)
    w(ind + "pb = ptr16(wsa + b * %d)" % SB)
    w(ind + "i = 0")
    w(ind + "while i < %d:" % L)
    w(ind + "    pd[i] = pa[i]")
    w(ind + "    i += 1")
    w(ind + "n = 0")
    w(ind + "while n < %d:" % nzero)
    w(ind + "    c = 0")
    w(ind + "    i = 0")
    w(ind + "    while i < %d:" % L)
    w(ind + "        t = pd[i] - pb[i] + c")
    w(ind + "        c = t >> %d" % bits)
    w(ind + "        i += 1")
    w(ind + "    if c < 0:")
    w(ind + "        break")
    w(ind + "    c = 0")
    w(ind + "    i = 0")
    w(ind + "    while i < %d:" % L)
    w(ind + "        t = pd[i] - pb[i] + c")
    w(ind + "        c = t >> %d" % bits)
    w(ind + "        pd[i] = t & %d" % M)
    w(ind + "        i += 1")
    w(ind + "    n += 1")
    # BIT0
    w("        elif op == %d:  # BIT0: flag bit d = lowest bit of a (a reduced, out of Montgomery form)" % OPS["BIT0"])
    w(ind + "pa = ptr16(wsa + a * %d)" % SB)
    w(ind + "flags = flags | ((pa[0] & 1) << d)")
    w("        else:  # END (or an unknown opcode)")
    w("            break")
    w("    return flags")
    return "\n".join(src) + "\n"
