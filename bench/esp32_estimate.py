"""How bench/ estimates an ESP32's time for work done by the reader's firmware (docs/performance.md,
"ESP32 estimate: the method"), from two measurements of the same work on the unix port:

1. Native code: the firmware records every call of the field engine (tests/mp/engine_tap.py);
   the calls are replayed on a 32-bit Xtensa under qemu-user with the ESP32's engine (the
   assembly one, validator/p256_xtensa.py, the very bytes mpy-cross -march=xtensawin makes), which
   counts the instructions exactly. Time = instructions x CPI / 240 MHz, CPI 1.2-1.6 (in-order
   LX6: load-use stalls, taken branches, instruction fetch from flash through its cache).
   The half gcd of a recoverable verify (validator/p256_digits.py, native code too) is counted
   the same way: its instructions on the Xtensa for random scalars (half_gcd_instructions).
2. Everything else: the same work again with the engine replaced by a stub that answers the
   recorded flags; its CPU time on the unix port, less the half gcd's (timed on its own), is
   interpreter-bound code, scaled by 175-260 (MicroPython benchmarks on an ESP32 at 240 MHz
   against the unix port on a current x86). The small native helpers left in it (NAF and comb
   digits, base45) are scaled the same way: an overestimate.
3. Calls from Python into the engine: their count x 10-20 us each (the call, argument
   conversion, the return).
"""
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import p256_xtensa_kit as K  # noqa: E402
from host_tools.common.esp32figures import save  # noqa: E402,F401  (for the benches)
import xtensa_harness as X  # noqa: E402

MHZ = 240
CPI = (1.2, 1.6)
INTERP = (175, 260)
CALL_US = (10, 20)
_hg = []


def read_record(path):
    """(workspace bytes, [(program, pc, io before, flags, io after)]) of an engine_tap record."""
    b = Path(path).read_bytes()
    n = struct.unpack_from("<I", b, 0)[0]
    ws = b[4:4 + n]
    i = 4 + n
    calls = []
    while i < len(b):
        ln = struct.unpack_from("<H", b, i)[0]
        prog = b[i + 2:i + 2 + ln]
        i += 2 + ln
        pc, m = struct.unpack_from("<HH", b, i)
        i += 4
        before = b[i:i + m]
        flags = struct.unpack_from("<i", b, i + m)[0]
        after = b[i + m + 4:i + 2 * m + 4]
        i += 2 * m + 4
        calls.append((prog, pc, before, flags, after))
    return ws, calls


def native_instructions(path, engine=None):
    """Instructions the ESP32's engine executes for the recorded calls (qemu), checking that every
    call gives the flags it gave on the unix port. Returns (instructions, calls)."""
    ws, calls = read_record(path)
    code = engine or K.engine_code(K.ASM_SRC)
    mem, args, _ = K.layout_calls(ws, calls)
    res = X.run(code, bytes(mem), args, count=True)
    if list(res.returns) != [c[3] for c in calls]:
        raise RuntimeError("the Xtensa engine answered other flags than the unix port's: %s"
                           % path)
    return res.instructions["run"], len(calls)


def half_gcd_instructions(samples=12):
    """Mean instructions of p256_digits.half_gcd on the Xtensa for random scalars (qemu)."""
    if not _hg:
        import random
        from validator import p256
        code = K.engine_code(K.ROOT / "firmware" / "validator" / "p256_digits.py")
        rng = random.Random(1)
        mem = bytearray()
        calls = []
        for _ in range(samples):
            calls.append(("half_gcd", [("mem", len(mem))]))
            mem += (p256.N.to_bytes(34, "little") + rng.randrange(1, p256.N).to_bytes(34, "little")
                    + bytes(68))
        _hg.append(X.run(code, bytes(mem), calls, count=True).instructions["half_gcd"] / samples)
    return _hg[0]


def estimate(instructions, interp_us, calls):
    """(lo, hi) milliseconds on an ESP32 at 240 MHz, and the parts as a dict."""
    native = [instructions * c / MHZ / 1000 for c in CPI]
    python = [interp_us * f / 1000 for f in INTERP]
    callms = [calls * c / 1000 for c in CALL_US]
    return ((native[0] + python[0] + callms[0], native[1] + python[1] + callms[1]),
            {"native": native, "python": python, "calls": callms})


def line(label, instructions, interp_us, calls):
    (lo, hi), parts = estimate(instructions, interp_us, calls)
    return ("  %-34s %5.0f-%-4.0f ms  (native %.2f M instructions: %.0f-%.0f ms; Python %.3f ms "
            "on the unix port: %.0f-%.0f ms; %d calls: %.1f-%.1f ms)"
            % (label, lo, hi, instructions / 1e6, parts["native"][0], parts["native"][1],
               interp_us / 1000, parts["python"][0], parts["python"][1], calls,
               parts["calls"][0], parts["calls"][1]))

