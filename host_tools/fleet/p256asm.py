"""Generates firmware/validator/p256_xtensa.py: the same field-program interpreter as the viper
engine (host_tools/fleet/p256codegen.py), written in Xtensa assembly with MicroPython's inline
assembler (`@micropython.asm_xtensa`), for the ESP32.

Why: viper keeps at most two locals in registers and spills almost every intermediate value, so a
limb product costs about 10 instructions; here it costs 4 (two 16-bit loads, `mull`, `add`), and
a whole multiplication about 2,200 instead of 5,500. The arithmetic is exactly the viper
engine's, step for step (the same limbs, the same reduction, the same carries), so both engines
leave the same bits in the workspace: tests/firmware/test_p256_xtensa.py runs both on the Xtensa
under qemu and compares them bit for bit, and with the CPython twin and the big-integer oracle.
The unix port cannot run Xtensa code: there the viper engine runs (validator/p256_field.py
picks the engine).

Registers (the windowed ABI's a2..a5 hold the arguments):
  a2 = the workspace (slot 0 is this engine's scratch: the reduction factors m_k of a product)
  a3 = io + (iooff & 0xffff)       a4 = the program counter (an address)
  a5 = the flags                   a14, a15 = RPT's count and body address
  a6..a13 = free within an operation (a6: opcode, a7: d, a8: a, a9: b while dispatching)
"""
from host_tools.fleet.p256codegen import N, P, Layout, _sub_offset
from host_tools.fleet.p256programs import OPS

SB = 40  # bytes a slot


class _Asm:
    def __init__(self):
        self.lines = []
        self.n = 0

    def __call__(self, text):
        self.lines.append("    " + text)

    def label(self, name=None):
        if name is None:
            self.n += 1
            name = "L%d" % self.n
        return name

    def put(self, name):
        self.lines.append("    label(%s)" % name)


def _slot_ptr(A, reg):
    """reg = ws + 40 * reg (reg holds a slot number)."""
    A("slli(%s, %s, 3)" % (reg, reg))
    A("addx4(%s, %s, %s)" % (reg, reg, reg))
    A("add(%s, %s, a2)" % (reg, reg))


def _mul(A, lay, square):
    """The Montgomery product of the slot at a8 (and a9) into the slot at a7; the reduction
    factors m_k go to the scratch slot (a2). a12 = mask, a11 = the column, a6/a10 products,
    a9 = the cross sum of a square."""
    L, b = lay.limbs, lay.bits
    A("movi(a12, %d)" % lay.mask)
    A("movi(a11, 0)")
    for k in range(2 * L - 1):
        if square:
            pairs = [(i, k - i) for i in range(max(0, k - L + 1), L) if i < k - i]
            if pairs:
                A("movi(a9, 0)")
                for i, j in pairs:
                    A("l16ui(a10, a8, %d)" % (2 * i))
                    A("l16ui(a6, a8, %d)" % (2 * j))
                    A("mull(a10, a10, a6)")
                    A("add(a9, a9, a10)")
                A("add(a9, a9, a9)")
                A("add(a11, a11, a9)")
            if k % 2 == 0 and k // 2 < L:
                A("l16ui(a10, a8, %d)" % k)
                A("mull(a10, a10, a10)")
                A("add(a11, a11, a10)")
        else:
            for i in range(max(0, k - L + 1), min(k, L - 1) + 1):
                A("l16ui(a10, a8, %d)" % (2 * i))
                A("l16ui(a6, a9, %d)" % (2 * (k - i)))
                A("mull(a10, a10, a6)")
                A("add(a11, a11, a10)")
        for off, sh, s in lay.pterms:
            j = k - off
            if 0 <= j < L:
                A("l16ui(a10, a2, %d)" % (2 * j))
                A("slli(a10, a10, %d)" % sh)
                A("%s(a11, a11, a10)" % ("add" if s > 0 else "sub"))
        A("and_(a10, a11, a12)")
        if k < L:
            A("s16i(a10, a2, %d)" % (2 * k))
        else:
            A("s16i(a10, a7, %d)" % (2 * (k - L)))
        A("srai(a11, a11, %d)" % b)
    A("s16i(a11, a7, %d)" % (2 * (L - 1)))


def _muln(A, lay):
    """The Montgomery product mod n of the slots at a8, a9 into a7 (p256codegen._lines_muln):
    unsigned column sums (below 2^32), logical shifts; the factors u_k in the scratch slot (a2);
    a12 = mask, a13 = n' (-1/n mod 2^bits), a11 = the column."""
    L, b = lay.limbs, lay.bits
    nl = lay.to_limbs(N)
    nprime = (-pow(N, -1, 1 << b)) % (1 << b)
    A("movi(a12, %d)" % lay.mask)
    A("movi(a13, %d)" % nprime)
    A("movi(a11, 0)")
    for k in range(2 * L - 1):
        for i in range(max(0, k - L + 1), min(k, L - 1) + 1):
            A("l16ui(a10, a8, %d)" % (2 * i))
            A("l16ui(a6, a9, %d)" % (2 * (k - i)))
            A("mull(a10, a10, a6)")
            A("add(a11, a11, a10)")
        for j in range(max(0, k - L + 1), min(k, L)):
            if nl[k - j]:
                A("l16ui(a10, a2, %d)" % (2 * j))
                A("movi(a6, %d)" % nl[k - j])
                A("mull(a10, a10, a6)")
                A("add(a11, a11, a10)")
        if k < L:
            A("and_(a10, a11, a12)")
            A("mull(a10, a10, a13)")
            A("and_(a10, a10, a12)")
            A("s16i(a10, a2, %d)" % (2 * k))
            if nl[0]:
                A("movi(a6, %d)" % nl[0])
                A("mull(a10, a10, a6)")
                A("add(a11, a11, a10)")
        else:
            A("and_(a10, a11, a12)")
            A("s16i(a10, a7, %d)" % (2 * (k - L)))
        A("srli(a11, a11, %d)" % b)
    A("s16i(a11, a7, %d)" % (2 * (L - 1)))


def _fold_carry(A, lay):
    """The slot at a7 (limbs >= 0, value below 2^261) below 2^258 with reduced limbs: q from the
    top limb, q*p subtracted within one carry pass (viper: _lines_fold_carry)."""
    L, b = lay.limbs, lay.bits
    adj = {0: [(0, "add")]}
    for off, sh, s in lay.pterms[:3]:
        adj.setdefault(off, []).append((sh, "sub" if s > 0 else "add"))
    A("l16ui(a10, a7, %d)" % (2 * (L - 1)))
    A("srai(a10, a10, %d)" % lay.top_shift)
    A("addi(a10, a10, -1)")            # a10 = q
    A("movi(a9, %d)" % lay.mask)
    A("movi(a11, 0)")                  # carry
    for i in range(L - 1):
        A("l16ui(a6, a7, %d)" % (2 * i))
        A("add(a6, a6, a11)")
        for sh, op in adj.get(i, []):
            if sh:
                A("slli(a12, a10, %d)" % sh)
                A("%s(a6, a6, a12)" % op)
            else:
                A("%s(a6, a6, a10)" % op)
        A("and_(a12, a6, a9)")
        A("s16i(a12, a7, %d)" % (2 * i))
        A("srai(a11, a6, %d)" % b)
    A("l16ui(a6, a7, %d)" % (2 * (L - 1)))
    A("add(a6, a6, a11)")
    A("slli(a12, a10, %d)" % lay.top_shift)
    A("sub(a6, a6, a12)")
    A("s16i(a6, a7, %d)" % (2 * (L - 1)))


def _addsub_body(A, lay, name):
    """ADD, SUB or MULS of the slots at a8 (and a9; MULS: a9 holds the small factor) into a7,
    limb by limb, then the fold and carry pass."""
    L = lay.limbs
    k = _sub_offset(lay)
    for i in range(L):
        A("l16ui(a10, a8, %d)" % (2 * i))
        if name == "MULS":
            A("mull(a10, a10, a9)")
        else:
            A("l16ui(a11, a9, %d)" % (2 * i))
            if name == "ADD":
                A("add(a10, a10, a11)")
            else:
                A("sub(a10, a10, a11)")
                A("movi(a11, %d)" % k[i])
                A("add(a10, a10, a11)")
        A("s16i(a10, a7, %d)" % (2 * i))
    _fold_carry(A, lay)


def _isz_body(A, lay):
    """a10 = 1 if the slot at a8 is a multiple of p below 2^258 (its limbs equal k*p's), else 0."""
    found = A.label()
    done = A.label()
    for kk in range(((1 << 258) // P) + 1):
        other = A.label()
        for i, v in enumerate(lay.to_limbs(kk * P)):
            A("l16ui(a10, a8, %d)" % (2 * i))
            A("movi(a11, %d)" % v)
            A("bne(a10, a11, %s)" % other)
        A("j(%s)" % found)
        A.put(other)
    A("movi(a10, 0)")
    A("j(%s)" % done)
    A.put(found)
    A("movi(a10, 1)")
    A.put(done)


def _vrun(A, PP):
    """VRUN (p256programs VRUN_*), a state machine over the block at a3 that runs DBL, MADD, SET,
    a negation and a table entry's load as sub-programs of PROGS: it points a4 at one, keeps its
    own address in a15, and the sub-program's RET brings it back here; VRUN_PHASE says where it
    was. While a table entry is loaded, io (a3) points at the entry and the block's address waits
    in the workspace (WS_SAVED): coming back, VRUN takes it from there first."""
    blob, where = PP.layout()
    here = where["VRUN_PROG"] + 4           # a4 (the next operation) is here, in PROGS

    def call(sub, phase):
        A("movi(a10, %d)" % phase)
        A("s8i(a10, a3, %d)" % PP.VRUN_PHASE)
        A("addi(a15, a4, -4)")              # back to this VRUN afterwards
        A("movi(a10, %d)" % (where[sub] - here))
        A("add(a4, a4, a10)")
        A("j(top)")

    def fixed_base(reg):
        """reg = the block's record of fixed base VRUN_FBASE (a6 = its number)."""
        A("l8ui(a6, a3, %d)" % PP.VRUN_FBASE)
        A("movi(%s, %d)" % (reg, PP.VRUN_FIX_SIZE))
        A("mull(%s, %s, a6)" % (reg, reg))
        A("movi(a10, %d)" % PP.VRUN_FIX0)
        A("add(%s, %s, a10)" % (reg, reg))
        A("add(%s, %s, a3)" % (reg, reg))

    V = ["V%d" % k for k in range(13)]
    # the block's address back in a3 if a table entry's load just returned
    A("movi(a10, %d)" % PP.WS_SAVED)
    A("add(a10, a10, a2)")
    A("l32i(a11, a10, 0)")
    A("movi(a12, 0)")
    restored = A.label()
    A("beq(a11, a12, %s)" % restored)
    A("mov(a3, a11)")
    A("s32i(a12, a10, 0)")
    A.put(restored)
    A("l8ui(a10, a3, %d)" % PP.VRUN_PHASE)
    for k in range(1, 13):
        if k in (7, 8):
            continue
        A("movi(a11, %d)" % k)
        A("beq(a10, a11, %s)" % V[k])
    # 0: a new position: a doubling unless the accumulator is O
    A.put(V[0])
    A("movi(a10, 0)")
    A("s8i(a10, a3, %d)" % PP.VRUN_BASE)
    A("l8ui(a10, a3, %d)" % PP.VRUN_INF)
    A("movi(a11, 0)")
    A("bne(a10, a11, %s)" % V[1])
    call("SUB_DBL", 1)
    # 1: the next variable base's digit at this position
    A.put(V[1])
    A("l8ui(a6, a3, %d)" % PP.VRUN_BASE)
    A("l8ui(a10, a3, %d)" % PP.VRUN_NVAR)
    A("bge(a6, a10, %s)" % V[6])
    A("movi(a10, 257)")
    A("mull(a10, a10, a6)")
    A("l16ui(a11, a3, %d)" % PP.VRUN_J)
    A("add(a10, a10, a11)")
    A("add(a10, a10, a3)")
    A("l8ui(a10, a10, %d)" % PP.VRUN_NAF0)    # d & 0xff
    nonzero, pos = A.label(), A.label()
    A("movi(a11, 0)")
    A("bne(a10, a11, %s)" % nonzero)
    A("addi(a6, a6, 1)")
    A("s8i(a6, a3, %d)" % PP.VRUN_BASE)
    A("j(%s)" % V[1])
    A.put(nonzero)
    A("movi(a12, 0)")
    A("movi(a11, 128)")
    A("bltu(a10, a11, %s)" % pos)
    A("movi(a11, 256)")
    A("sub(a10, a11, a10)")                # |d|
    A("movi(a12, 1)")
    A.put(pos)
    A("s8i(a12, a3, %d)" % PP.VRUN_NEG)
    # the multiple's slot: area(base) + |d| - 1, its x and y copied to X2, Y2
    A("movi(a11, %d)" % PP.AREA_SLOTS)
    A("mull(a11, a11, a6)")
    A("add(a10, a10, a11)")
    A("addi(a10, a10, %d)" % (PP.AREA - 1))
    _slot_ptr(A, "a10")
    A("movi(a7, %d)" % (SB * PP.X2))
    A("add(a7, a7, a2)")
    for i in range(2 * SB // 2):           # x then y: X2 and Y2 are adjacent, as are x and y
        A("l16ui(a11, a10, %d)" % (2 * i))
        A("s16i(a11, a7, %d)" % (2 * i))
    A("movi(a11, 0)")
    A("beq(a12, a11, %s)" % V[2])
    call("SUB_NEG", 2)
    # 2: the point in (X2, Y2): set the accumulator to it (O + P) or add it
    A.put(V[2])
    A("l8ui(a10, a3, %d)" % PP.VRUN_INF)
    A("movi(a11, 0)")
    add = A.label()
    A("beq(a10, a11, %s)" % add)
    call("SUB_SET", 4)
    A.put(add)
    A("movi(a10, -4)")
    A("and_(a5, a5, a10)")                 # MADD's flag bits afresh
    call("SUB_MADD", 3)
    def same_x(cont, after_set):
        """After MADD: the same x? The same point: 2 * (X2, Y2) instead (phase after_set, which
        marks the accumulator a point); the opposite: O. Else on to cont."""
        same, opposite = A.label(), A.label()
        A("movi(a10, 1)")
        A("and_(a10, a5, a10)")
        A("movi(a11, 0)")
        A("bne(a10, a11, %s)" % same)
        A("j(%s)" % cont)
        A.put(same)
        A("movi(a10, 2)")
        A("and_(a10, a5, a10)")
        A("beq(a10, a11, %s)" % opposite)
        call("SUB_SET_DBL", after_set)
        A.put(opposite)
        A("movi(a10, 1)")
        A("s8i(a10, a3, %d)" % PP.VRUN_INF)
        A("j(%s)" % cont)

    # 3: after MADD
    A.put(V[3])
    same_x(V[5], 4)
    # 4: after SET (or SET_DBL): the accumulator is a point now
    A.put(V[4])
    A("movi(a10, 0)")
    A("s8i(a10, a3, %d)" % PP.VRUN_INF)
    # 5: the next variable base
    A.put(V[5])
    A("l8ui(a6, a3, %d)" % PP.VRUN_BASE)
    A("addi(a6, a6, 1)")
    A("s8i(a6, a3, %d)" % PP.VRUN_BASE)
    A("j(%s)" % V[1])
    # 6: the variable bases are done at this position: now the fixed bases whose window is here
    A.put(V[6])
    A("movi(a10, 0)")
    A("s8i(a10, a3, %d)" % PP.VRUN_FBASE)
    fbase, fpiece, window_done, next_base, end_pos = (A.label() for _ in range(5))
    A.put(fbase)
    A("l8ui(a6, a3, %d)" % PP.VRUN_FBASE)
    A("l8ui(a10, a3, %d)" % PP.VRUN_NFIX)
    A("bge(a6, a10, %s)" % end_pos)
    fixed_base("a7")
    A("l16ui(a10, a7, %d)" % PP.FIX_POS)
    A("l16ui(a11, a3, %d)" % PP.VRUN_J)
    here_label = A.label()
    A("beq(a10, a11, %s)" % here_label)
    A("j(%s)" % next_base)
    A.put(here_label)
    A("movi(a10, 0)")
    A("s8i(a10, a3, %d)" % PP.VRUN_FPIECE)
    # the next piece of this window: its digit d (i16) at q * nw + i
    A.put(fpiece)
    fixed_base("a7")
    A("l8ui(a8, a3, %d)" % PP.VRUN_FPIECE)
    A("l8ui(a10, a7, %d)" % PP.FIX_PIECES)
    A("bge(a8, a10, %s)" % window_done)
    A("l8ui(a9, a7, %d)" % PP.FIX_NW)
    A("mull(a9, a9, a8)")
    A("l8ui(a10, a7, %d)" % PP.FIX_I)
    A("add(a9, a9, a10)")
    A("addx2(a9, a9, a7)")
    A("l16ui(a10, a9, %d)" % PP.FIX_DIGITS)
    nz, positive = A.label(), A.label()
    A("movi(a11, 0)")
    A("bne(a10, a11, %s)" % nz)
    A("j(%s)" % (V[11] + "_next"))
    A.put(nz)
    A("l8ui(a12, a7, %d)" % PP.FIX_NEG)
    A("movi(a11, 32768)")
    A("bltu(a10, a11, %s)" % positive)
    A("movi(a11, 65536)")
    A("sub(a10, a11, a10)")                # |d|
    A("movi(a11, 1)")
    A("xor(a12, a12, a11)")
    A.put(positive)
    A("s8i(a12, a3, %d)" % PP.VRUN_NEG)
    # the entry: table + (((q * step) << (w - 1)) + |d| - 1) * 64, or gathered: + (q * nw + i) * 64
    tabled, entry = A.label(), A.label()
    A("l8ui(a11, a7, %d)" % PP.FIX_GATHERED)
    A("movi(a13, 0)")
    A("beq(a11, a13, %s)" % tabled)
    A("sub(a11, a9, a7)")                  # 2 * (q * nw + i)
    A("slli(a11, a11, 5)")
    A("j(%s)" % entry)
    A.put(tabled)
    A("l8ui(a11, a7, %d)" % PP.FIX_STEP)
    A("mull(a11, a11, a8)")
    A("l8ui(a13, a7, %d)" % PP.FIX_W)
    A("addi(a13, a13, -1)")
    A("ssl(a13)")
    A("sll(a11, a11)")
    A("add(a11, a11, a10)")
    A("addi(a11, a11, -1)")
    A("slli(a11, a11, 6)")
    A.put(entry)
    A("movi(a13, %d)" % PP.WS_PTR)
    A("add(a13, a13, a2)")
    A("addx4(a13, a6, a13)")
    A("l32i(a13, a13, 0)")
    A("add(a11, a11, a13)")
    # load it into (X2, Y2) with io at the entry, the block's address kept (phase 9 after)
    A("movi(a10, 9)")
    A("s8i(a10, a3, %d)" % PP.VRUN_PHASE)
    A("movi(a10, %d)" % PP.WS_SAVED)
    A("add(a10, a10, a2)")
    A("s32i(a3, a10, 0)")
    A("mov(a3, a11)")
    A("addi(a15, a4, -4)")
    A("movi(a10, %d)" % (where["SUB_TAB_LOAD"] - here))
    A("add(a4, a4, a10)")
    A("j(top)")
    # 9: the entry is in (X2, Y2): negated if need be
    A.put(V[9])
    A("l8ui(a10, a3, %d)" % PP.VRUN_NEG)
    A("movi(a11, 0)")
    A("beq(a10, a11, %s)" % V[10])
    call("SUB_NEG", 10)
    # 10: set the accumulator to it or add it
    A.put(V[10])
    A("l8ui(a10, a3, %d)" % PP.VRUN_INF)
    A("movi(a11, 0)")
    fadd = A.label()
    A("beq(a10, a11, %s)" % fadd)
    call("SUB_SET", 11)
    A.put(fadd)
    A("movi(a10, -4)")
    A("and_(a5, a5, a10)")
    call("SUB_MADD", 12)
    # 12: after MADD
    A.put(V[12])
    same_x(V[11] + "_next", 11)
    # 11: after SET (or SET_DBL): the accumulator is a point now; then the next piece
    A.put(V[11])
    A("movi(a10, 0)")
    A("s8i(a10, a3, %d)" % PP.VRUN_INF)
    A.put(V[11] + "_next")
    A("l8ui(a8, a3, %d)" % PP.VRUN_FPIECE)
    A("addi(a8, a8, 1)")
    A("s8i(a8, a3, %d)" % PP.VRUN_FPIECE)
    A("j(%s)" % fpiece)
    # the window is done (a7: its base): the next window's position, or none left
    A.put(window_done)
    A("l8ui(a10, a7, %d)" % PP.FIX_I)
    A("movi(a11, 0)")
    more = A.label()
    A("bne(a10, a11, %s)" % more)
    A("movi(a10, 65535)")
    A("s16i(a10, a7, %d)" % PP.FIX_POS)
    A("j(%s)" % next_base)
    A.put(more)
    A("addi(a10, a10, -1)")
    A("s8i(a10, a7, %d)" % PP.FIX_I)
    A("l8ui(a11, a7, %d)" % PP.FIX_W)
    A("mull(a10, a10, a11)")
    A("s16i(a10, a7, %d)" % PP.FIX_POS)
    A.put(next_base)
    A("l8ui(a6, a3, %d)" % PP.VRUN_FBASE)
    A("addi(a6, a6, 1)")
    A("s8i(a6, a3, %d)" % PP.VRUN_FBASE)
    A("j(%s)" % fbase)
    # the position is done: the next one, or the end
    A.put(end_pos)
    A("l16ui(a10, a3, %d)" % PP.VRUN_J)
    A("l16ui(a11, a3, %d)" % PP.VRUN_END)
    finished = A.label()
    A("beq(a10, a11, %s)" % finished)
    A("addi(a10, a10, -1)")
    A("s16i(a10, a3, %d)" % PP.VRUN_J)
    A("j(%s)" % V[0])
    A.put(finished)
    A("movi(a10, 0)")
    A("s8i(a10, a3, %d)" % PP.VRUN_PHASE)
    A("movi(a5, 0)")                       # (vrun() answers no flags)


def generate():
    from host_tools.fleet import p256programs as PP
    lay = Layout(13)
    lay.check()
    L, M, bits = lay.limbs, lay.mask, lay.bits
    assert lay.slot_bytes == SB
    A = _Asm()
    loop, done = "top", "done"
    # MicroPython's inline assembler sizes a branch to a label it has not seen yet (a forward
    # one) as a branch to label 0 in its first pass, and to the real label in the last: a
    # forward branch near label 0 gets two sizes and the build fails (mp_asm_base_label_assign's
    # assertion). So label 0 comes first, followed by padding that is never run, and no forward
    # branch uses the 12-bit bccz forms (beqz, bnez: their range would reach back to it).
    A.put("first")
    A("j(start)")
    for _ in range(44):
        A("nop()")                     # 132 bytes: beyond an 8-bit branch's reach
    A.put("start")
    A("movi(a6, 65535)")
    A("and_(a6, a5, a6)")
    A("add(a3, a3, a6)")               # io + iooff
    A("srai(a6, a5, 16)")
    A("add(a4, a4, a6)")               # the program's first operation
    A("movi(a5, 0)")                   # flags
    A.put(loop)
    A("l8ui(a6, a4, 0)")
    A("l8ui(a7, a4, 1)")
    A("l8ui(a8, a4, 2)")
    A("l8ui(a9, a4, 3)")
    A("addi(a4, a4, 4)")

    def case(code):
        nxt = A.label()
        A("movi(a10, %d)" % code)
        A("bne(a6, a10, %s)" % nxt)
        return nxt

    # the arithmetic: slot pointers in a7 (d), a8 (a), a9 (b), then the body
    for name in ("MUL", "ADD", "SUB", "MULN", "MULS", "MOV"):
        nxt = case(OPS[name])
        _slot_ptr(A, "a7")
        _slot_ptr(A, "a8")
        if name in ("MUL", "ADD", "SUB", "MULN"):
            _slot_ptr(A, "a9")
        if name == "MUL":
            _mul(A, lay, False)
        elif name == "MULN":
            _muln(A, lay)
        elif name == "MOV":
            for i in range(L):
                A("l16ui(a10, a8, %d)" % (2 * i))
                A("s16i(a10, a7, %d)" % (2 * i))
        else:
            _addsub_body(A, lay, name)
        A("j(%s)" % loop)
        A.put(nxt)
    # SQR and SQRN: b squarings (one for SQR); a13 counts
    nxt = A.label()
    sqr = A.label()
    A("movi(a10, %d)" % OPS["SQR"])
    A("movi(a13, 1)")
    A("beq(a6, a10, %s)" % sqr)
    A("movi(a10, %d)" % OPS["SQRN"])
    A("bne(a6, a10, %s)" % nxt)
    A("mov(a13, a9)")
    A("beqz(a13, %s)" % loop)          # no squarings: nothing to do (viper: the same)
    A.put(sqr)
    _slot_ptr(A, "a7")
    _slot_ptr(A, "a8")
    again = A.label()
    A.put(again)
    _mul(A, lay, True)
    A("mov(a8, a7)")
    A("addi(a13, a13, -1)")
    A("bnez(a13, %s)" % again)
    A("j(%s)" % loop)
    A.put(nxt)
    # RPT, NEXT
    nxt = case(OPS["RPT"])
    body = A.label()
    A("movi(a10, 0)")
    A("bne(a7, a10, %s)" % body)
    A("addi(a8, a8, 1)")
    A("slli(a8, a8, 2)")
    A("add(a4, a4, a8)")               # skip the body and its NEXT
    A("j(%s)" % loop)
    A.put(body)
    A("mov(a14, a7)")
    A("mov(a15, a4)")
    A("j(%s)" % loop)
    A.put(nxt)
    nxt = case(OPS["NEXT"])
    A("addi(a14, a14, -1)")
    A("beqz(a14, %s)" % loop)
    A("mov(a4, a15)")
    A("j(%s)" % loop)
    A.put(nxt)
    # ISZ: flag bit d if the slot is a multiple of p below 2^258
    nxt = case(OPS["ISZ"])
    _slot_ptr(A, "a8")
    _isz_body(A, lay)
    A("ssl(a7)")
    A("sll(a10, a10)")
    A("or_(a5, a5, a10)")
    A("j(%s)" % loop)
    A.put(nxt)
    # LOAD d, b: 32 big-endian bytes at io + 32b into the slot's limbs (bit t of the number is
    # bit t % 8 of byte 31 - t // 8)
    nxt = case(OPS["LOAD"])
    _slot_ptr(A, "a7")
    A("slli(a9, a9, 5)")
    A("add(a9, a9, a3)")
    for k in range(L):
        lo = bits * k
        hi = min(lo + bits, 256)
        first = True
        for t in range(lo - lo % 8, hi, 8):     # the bytes that hold bits lo .. hi-1
            A("l8ui(a10, a9, %d)" % (31 - t // 8))
            sh = t - lo
            if sh > 0:
                A("slli(a10, a10, %d)" % sh)
            elif sh < 0:
                A("srai(a10, a10, %d)" % -sh)
            A(("mov(a11, a10)") if first else "or_(a11, a11, a10)")
            first = False
        if hi - lo == bits:
            A("movi(a10, %d)" % M)
            A("and_(a11, a11, a10)")
        A("s16i(a11, a7, %d)" % (2 * k))
    A("j(%s)" % loop)
    A.put(nxt)
    # STORE a, b: the (reduced) slot as 32 big-endian bytes at io + 32b
    nxt = case(OPS["STORE"])
    _slot_ptr(A, "a8")
    A("slli(a9, a9, 5)")
    A("add(a9, a9, a3)")
    A("movi(a12, 255)")
    for byte in range(32):
        lo = 8 * byte
        first = True
        for k in range(lo // bits, (lo + 7) // bits + 1):
            A("l16ui(a10, a8, %d)" % (2 * k))
            sh = bits * k - lo
            if sh > 0:
                A("slli(a10, a10, %d)" % sh)
            elif sh < 0:
                A("srai(a10, a10, %d)" % -sh)
            A(("mov(a11, a10)") if first else "or_(a11, a11, a10)")
            first = False
        A("and_(a11, a11, a12)")
        A("s8i(a11, a9, %d)" % (31 - byte))
    A("j(%s)" % loop)
    A.put(nxt)
    # CANON d, a, b: d = a, then subtract the modulus in slot b while that does not borrow (at
    # most 5 times)
    nxt = case(OPS["CANON"])
    _slot_ptr(A, "a7")
    _slot_ptr(A, "a8")
    for i in range(L):
        A("l16ui(a10, a8, %d)" % (2 * i))
        A("s16i(a10, a7, %d)" % (2 * i))
    _slot_ptr(A, "a9")                 # the modulus: p (SP) or n (SN)
    A("movi(a13, %d)" % (((1 << 258) // P) + 1))
    A("movi(a12, %d)" % M)
    again = A.label()
    A.put(again)
    A("movi(a11, 0)")
    for i in range(L):                 # trial: the borrow of d - p
        A("l16ui(a10, a7, %d)" % (2 * i))
        A("l16ui(a6, a9, %d)" % (2 * i))
        A("sub(a10, a10, a6)")
        A("add(a10, a10, a11)")
        A("srai(a11, a10, %d)" % bits)
    A("bltz(a11, %s)" % loop)
    A("movi(a11, 0)")
    for i in range(L):
        A("l16ui(a10, a7, %d)" % (2 * i))
        A("l16ui(a6, a9, %d)" % (2 * i))
        A("sub(a10, a10, a6)")
        A("add(a10, a10, a11)")
        A("srai(a11, a10, %d)" % bits)
        A("and_(a10, a10, a12)")
        A("s16i(a10, a7, %d)" % (2 * i))
    A("addi(a13, a13, -1)")
    A("bnez(a13, %s)" % again)
    A("j(%s)" % loop)
    A.put(nxt)
    # BIT0
    nxt = case(OPS["BIT0"])
    _slot_ptr(A, "a8")
    A("l16ui(a10, a8, 0)")
    A("movi(a11, 1)")
    A("and_(a10, a10, a11)")
    A("ssl(a7)")
    A("sll(a10, a10)")
    A("or_(a5, a5, a10)")
    A("j(%s)" % loop)
    A.put(nxt)
    # PTR d: io + iooff (a table's entries) into the workspace's word WS_PTR + 4d, for VRUN
    nxt = case(OPS["PTR"])
    A("movi(a10, %d)" % PP.WS_PTR)
    A("add(a10, a10, a2)")
    A("addx4(a10, a7, a10)")
    A("s32i(a3, a10, 0)")
    A("j(%s)" % loop)
    A.put(nxt)
    # VRUN: the doubling chain of a sum of multiples (p256programs VRUN_*); RET: back from one
    # of its sub-programs
    nxt = case(OPS["VRUN"])
    _vrun(A, PP)
    A("j(%s)" % loop)
    A.put(nxt)
    nxt = case(OPS["RET"])
    A("mov(a4, a15)")
    A("j(%s)" % loop)
    A.put(nxt)
    # END, or an unknown opcode
    A.put(done)
    A("mov(a2, a5)")
    head = ["# GENERATED by host_tools/fleet/p256asm.py -- do not edit: change the generator and",
            "# run `python -m host_tools.fleet.p256gen`.",
            "#",
            "# validator.p256_native's interpreter of field programs in Xtensa assembly (MicroPython's",
            "# inline assembler), for the ESP32: the same operations, the same arithmetic step for step",
            "# (tests/firmware/test_p256_xtensa.py compares the two engines bit for bit under qemu), about",
            "# 2.8 times fewer instructions; and VRUN, a doubling chain run natively (p256_field.vrun).",
            "# run(ws, io, prog, arg): see p256_native.py.",
            "import micropython", "", "VRUN = True", "", "",
            "@micropython.asm_xtensa",
            "def run(a2, a3, a4, a5):"]
    return "\n".join(head + A.lines) + "\n"
