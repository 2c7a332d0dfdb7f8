"""Signature verification: validator.p256 (field arithmetic in native code) against the textbook
verifier and the big-integer verifier it replaced (tests/p256_bigint, the baseline), side by side
on the MicroPython unix port in one run; and the ESP32 estimate of each kind of verify.

    .venv/bin/python bench/bench_p256.py [--cases N] [--rounds R]      (or: make bench)

Unix port: all kinds interleaved, R rounds over N inputs, mean CPU time of the MicroPython process
per verify (/proc/self/schedstat: the machine is shared); every signature is under a key the
verifier has never seen, except the cached-key kind (the (x, y) a credential cache keeps). The
firmware is precompiled (.mpy, as a reader runs it), the baseline and the textbook verifier are
compiled from source. ESP32 estimate: bench/esp32_estimate.py (native instructions counted under
qemu-xtensa, the rest timed on the unix port and scaled). Benchmarks report numbers; they never
fail on absolute times."""
import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench"), str(ROOT / "firmware")]

from ecdsa import NIST256p, SigningKey  # noqa: E402

import esp32_estimate as E  # noqa: E402
from host_tools.common import ecsign  # noqa: E402
from host_tools.issuing import p256tables  # noqa: E402
from minheap import smallest_heap  # noqa: E402
from mpharness import run_mp  # noqa: E402

# Runs on MicroPython. argv: data.json, issuer table file, rounds, bench dir, tests dir, work dir
MP_BENCH = r"""
import sys, json, gc
sys.path.append(sys.argv[4])
sys.path.append(sys.argv[5])
from validator import p256
import textbook_p256
from p256_bigint import p256 as old
import engine_tap
from cpuclock import clock, per_call, CLOCK
d = json.loads(open(sys.argv[1]).read())
R = [(bytes.fromhex(a), bytes.fromhex(b), bytes.fromhex(c), bytes.fromhex(e), r) for a, b, c, e, r in d["rider"]]
I = [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in d["issuer"]]
ipub = bytes.fromhex(d["issuer_pub"])
del d
p256._generator()
old._generator()
# the generator's table as a frozen build has it (tests/mp/frozen_gtable.py); the issuer's a
# table file (a key that came by sync), or in memory (frozen with the firmware)
import frozen_gtable
frozen_gtable.use()
ftab = p256.FixedBase(ipub, sys.argv[2])
mtab = p256.FixedBase(ipub, open(sys.argv[2], "rb").read())
otab = old.FixedBase(ipub, sys.argv[2])
XY = [p256.decode_key(r[0]) for r in R]
kinds = [
    ("textbook", lambda i: textbook_p256.verify(R[i][0], R[i][2], R[i][3])),
    ("old_verify", lambda i: old.verify(R[i][0], R[i][2], R[i][3])),
    ("old_rider", lambda i: old.verify_recoverable(R[i][0], R[i][2], R[i][3], R[i][4])),
    ("old_issuer", lambda i: old.verify_fixed(otab, I[i][0], I[i][1])),
    ("verify", lambda i: p256.verify(R[i][0], R[i][2], R[i][3])),
    ("rider", lambda i: p256.verify_recoverable(R[i][0], R[i][2], R[i][3], R[i][4])),
    ("rider_u", lambda i: p256.verify_recoverable(R[i][1], R[i][2], R[i][3], R[i][4])),
    ("rider_cached", lambda i: p256.verify_recoverable(XY[i], R[i][2], R[i][3], R[i][4])),
    ("issuer", lambda i: p256.verify_fixed(ftab, I[i][0], I[i][1])),
    ("issuer_mem", lambda i: p256.verify_fixed(mtab, I[i][0], I[i][1])),
]
total = {}
for rnd in range(int(sys.argv[3])):
    for name, f in kinds:
        gc.collect()
        t0 = clock()
        for i in range(len(R)):
            if f(i) is not True:
                raise SystemExit("verification failed: " + name)
        total[name] = total.get(name, 0) + clock() - t0
out = {"clock": CLOCK}
n = int(sys.argv[3]) * len(R)
for name, f in kinds:
    out[name] = total[name] / n / 1e6
# The ESP32 estimate's parts, on input 0 of each native kind: the engine calls recorded, then the
# Python side timed with the engine stubbed (the stub's own cost measured and taken off), and
# the half gcd of the recoverable kinds (native code, counted on the Xtensa) timed alone and
# taken off too.
def stub_cost(calls):
    engine_tap.stub(([0] * calls, {}))
    f = engine_tap._stub

    def calls_only():
        engine_tap.rewind()
        for _ in range(calls):
            f(0, 0, 0, 0)
    t = per_call(calls_only)
    engine_tap.stop()
    return t / 1000
est = {}
for name, f in kinds:
    if name.startswith("old") or name == "textbook":
        continue
    path = sys.argv[6] + "/" + name + ".rec"
    engine_tap.record(path)
    assert f(0) is True
    engine_tap.stop()
    flags = engine_tap.load_flags(path)
    engine_tap.stub(flags)
    gc.collect()

    def stubbed():
        engine_tap.rewind()
        f(0)
    py = per_call(stubbed) / 1000
    engine_tap.stop()
    hg = 0
    if name.startswith("rider"):
        u1, u2 = p256.F.scalars(R[0][2], R[0][3])
        hg = per_call(lambda: p256._half_gcd(u2, p256.N)) / 1000
    py -= stub_cost(len(flags[0])) + hg
    est[name] = {"record": path, "python_us": py, "half_gcds": 1 if hg else 0,
                 "calls": len(flags[0])}
out["est"] = est
print(json.dumps(out))
"""

# Smallest heap (KB) in which MicroPython imports p256 and runs one verify of each kind.
MP_MINHEAP = r"""
import sys, json
from validator import p256
d = json.loads(open(sys.argv[1]).read())
c, u, dg, s, r = d["rider"][0]
c, dg, s = bytes.fromhex(c), bytes.fromhex(dg), bytes.fromhex(s)
assert p256.verify(c, dg, s) and p256.verify_recoverable(c, dg, s, r)
fb = p256.FixedBase(bytes.fromhex(d["issuer_pub"]), sys.argv[2])
dg, s = d["issuer"][0]
assert p256.verify_fixed(fb, bytes.fromhex(dg), bytes.fromhex(s))
print("ok")
"""


def make_inputs(n, seed):
    rng = random.Random(seed)
    rider = []
    for _ in range(n):
        sk = SigningKey.from_secret_exponent(rng.randrange(1, NIST256p.order), curve=NIST256p,
                                             hashfunc=hashlib.sha256)
        digest = rng.randbytes(32)
        sig, recid = ecsign.sign_digest(sk, digest)
        rider.append((ecsign.public_bytes(sk, True), ecsign.public_bytes(sk, False), digest, sig,
                      recid))
    isk = SigningKey.from_secret_exponent(rng.randrange(1, NIST256p.order), curve=NIST256p,
                                          hashfunc=hashlib.sha256)
    ipub = ecsign.public_bytes(isk)
    issuer = []
    for _ in range(n):
        digest = rng.randbytes(32)
        issuer.append((digest, ecsign.sign_digest(isk, digest)[0]))
    return rider, ipub, issuer


def code_size():
    """Bytes of native code of each engine, compiled for the ESP32 (xtensawin)."""
    import p256_xtensa_kit as K
    return {name: sum(len(c) for c in K.engine_code(src).values())
            for name, src in (("asm", K.ASM_SRC), ("viper", K.NATIVE_SRC))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rider, ipub, issuer = make_inputs(a.cases, a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.json")
        table = os.path.join(tmp, "issuer.p2t")
        with open(data, "w") as f:
            json.dump({"rider": [(c.hex(), u.hex(), d.hex(), s.hex(), r) for c, u, d, s, r in rider],
                       "issuer": [(d.hex(), s.hex()) for d, s in issuer],
                       "issuer_pub": ipub.hex()}, f)
        with open(table, "wb") as f:
            f.write(p256tables.table_bytes(ipub))
        out = run_mp(MP_BENCH, heap="1m", args=[data, table, a.rounds, ROOT / "bench",
                                                 ROOT / "tests", tmp], timeout=1800)
        mp = json.loads(out.strip().splitlines()[-1])

        def runs_in(kb):
            proc = run_mp(MP_MINHEAP, heap="%dk" % kb, args=[data, table], check=False)
            return proc.returncode == 0 and "ok" in proc.stdout
        heap = smallest_heap(runs_in, 8, 200)
        # engine calls replayed on the Xtensa, plus the half gcd's instructions
        native = {k: E.native_instructions(v["record"])[0]
                  + v["half_gcds"] * E.half_gcd_instructions() for k, v in mp["est"].items()}
    sizes = code_size()

    print("MicroPython unix port, %d keys x %d interleaved rounds, mean %s time, ms per verify"
          % (a.cases, a.rounds, mp["clock"]))
    rows = [
        ("textbook verify (Shamir, Jacobian, Fermat inverses)", mp["textbook"]),
        ("baseline (big integers): verify", mp["old_verify"]),
        ("baseline: rider, verify_recoverable", mp["old_rider"]),
        ("baseline: issuer, verify_fixed (table file)", mp["old_issuer"]),
        ("native: verify, compressed key", mp["verify"]),
        ("native: rider, verify_recoverable, new key", mp["rider"]),
        ("native: rider, new uncompressed key", mp["rider_u"]),
        ("native: rider, cached (decoded) key", mp["rider_cached"]),
        ("native: issuer, verify_fixed (table file)", mp["issuer"]),
        ("native: issuer, verify_fixed (table in memory)", mp["issuer_mem"]),
        ("native: first sighting, issuer + rider", mp["issuer"] + mp["rider"]),
    ]
    for name, v in rows:
        print("  %-52s %7.3f ms" % (name, v))
    print("Ratios (same run):")
    print("  p256.verify vs the textbook verify:           %5.2fx faster (target >= 3.5x)"
          % (mp["textbook"] / mp["verify"]))
    print("  verify_recoverable vs the baseline's:         %5.2fx faster (target >= 2x)"
          % (mp["old_rider"] / mp["rider"]))
    print("  verify_fixed vs the baseline's:               %5.2fx faster"
          % (mp["old_issuer"] / mp["issuer"]))
    print("  first sighting vs the baseline's:             %5.2fx faster"
          % ((mp["old_rider"] + mp["old_issuer"]) / (mp["rider"] + mp["issuer"])))
    print("  smallest heap for import + verify + verify_recoverable + verify_fixed (.mpy): "
          "%d KB" % heap)
    print("ESP32 estimate (bench/esp32_estimate.py: native code x CPI %.1f-%.1f at %d MHz; "
          "Python x%d-%d; %d-%d us a call):"
          % (E.CPI[0], E.CPI[1], E.MHZ, E.INTERP[0], E.INTERP[1], E.CALL_US[0], E.CALL_US[1]))
    labels = {"rider": "rider verify, new key", "rider_u": "rider verify, new uncompressed key",
              "rider_cached": "rider verify, cached key", "issuer": "issuer verify (table file)",
              "issuer_mem": "issuer verify (table in memory)",
              "verify": "verify (an operator-signed file)"}
    for k in ("rider", "rider_u", "rider_cached", "issuer", "issuer_mem", "verify"):
        e = mp["est"][k]
        print(E.line(labels[k], native[k], e["python_us"], e["calls"]))
    fs = [E.estimate(native[k], mp["est"][k]["python_us"], mp["est"][k]["calls"])[0]
          for k in ("rider", "issuer")]
    print("  %-34s %5.0f-%-4.0f ms  (targets: rider <= 120 ms; the taps: bench_decision)"
          % ("first sighting, both signatures", fs[0][0] + fs[1][0], fs[0][1] + fs[1][1]))
    E.save(**{k: E.estimate(native[k], mp["est"][k]["python_us"], mp["est"][k]["calls"])[0]
              for k in ("rider", "rider_cached", "issuer")})
    print("Native code for the ESP32 (mpy-cross -march=xtensawin): assembly engine %d bytes "
          "(the reader's), viper engine %d bytes (the unix port's)" % (sizes["asm"], sizes["viper"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
