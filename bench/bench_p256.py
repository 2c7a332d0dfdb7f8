"""Signature verification speed: validator.p256 on the MicroPython binary (110 KB heap) against the
textbook verifier (bench/textbook_p256.py), and on CPython against python-ecdsa, side by side.

    .venv/bin/python bench/bench_p256.py [--cases N] [--rounds R] [--instructions]
    (or: make bench)

On MicroPython all kinds run interleaved, R rounds of a batch of the N inputs each; each figure
is the mean CPU time of the MicroPython process per verify (/proc/self/schedstat: the machine is
shared, so wall time is not ours alone). --instructions adds instruction counts under valgrind, which the load
of the machine does not move. Inputs are made here with python-ecdsa: N rider keys
(each signature under a key the verifier has never seen), one issuer key with its table file.
Benchmarks report numbers; they never fail on absolute times."""
import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from ecdsa import NIST256p, SigningKey, VerifyingKey  # noqa: E402
from ecdsa.util import sigdecode_string  # noqa: E402

from host_tools.common import ecsign  # noqa: E402
from host_tools.issuing import p256tables
from host_tools.common.fw import validator  # noqa: E402,F401
from mpharness import MICROPYTHON, mp_env, run_mp  # noqa: E402
from minheap import smallest_heap  # noqa: E402
from validator import p256  # noqa: E402
import textbook_p256  # noqa: E402

MPY_CROSS = Path(MICROPYTHON).with_name("mpy-cross")

# Runs on MicroPython. argv: data.json, issuer table file, rounds
MP_BENCH = r"""
import sys, json, time, gc, micropython
sys.path.append(sys.argv[4])
gc.collect()
free0 = gc.mem_free()
from validator import p256
import textbook_p256
gc.collect()
code_bytes = free0 - gc.mem_free()
d = json.loads(open(sys.argv[1]).read())
R = [(bytes.fromhex(a), bytes.fromhex(b), bytes.fromhex(c), bytes.fromhex(e), r) for a, b, c, e, r in d["rider"]]
I = [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in d["issuer"]]
ipub = bytes.fromhex(d["issuer_pub"])
del d
p256._generator()
t0 = time.ticks_us()
ftab = p256.FixedBase(ipub, sys.argv[2])
t_open = time.ticks_diff(time.ticks_us(), t0) / 1000
gc.collect()
f0 = gc.mem_free()
t0 = time.ticks_us()
fram = p256.FixedBase(ipub)
t_ram = time.ticks_diff(time.ticks_us(), t0) / 1000
gc.collect()
ram_bytes = f0 - gc.mem_free()
V = p256.verify
VR = p256.verify_recoverable
VF = p256.verify_fixed
TB = textbook_p256.verify
from cpuclock import clock, CLOCK  # CPU time of this process (tests/mp/cpuclock.py)
# all kinds interleaved, a batch of every input per kind and round; the figure is the total CPU
# time over the total count (the CPU clock ticks in 4 ms steps: over many batches the
# quantisation averages out, and load changes hit every kind alike)
tests = [
    ("textbook", lambda i: TB(R[i][0], R[i][2], R[i][3])),
    ("textbook_u", lambda i: TB(R[i][1], R[i][2], R[i][3])),
    ("verify", lambda i: V(R[i][0], R[i][2], R[i][3])),
    ("verify_u", lambda i: V(R[i][1], R[i][2], R[i][3])),
    ("rider", lambda i: VR(R[i][0], R[i][2], R[i][3], R[i][4])),
    ("rider_u", lambda i: VR(R[i][1], R[i][2], R[i][3], R[i][4])),
    ("issuer", lambda i: VF(ftab, I[i][0], I[i][1])),
    ("issuer_ram", lambda i: VF(fram, I[i][0], I[i][1])),
]
total = {}
count = {}
for rnd in range(int(sys.argv[3])):
    for name, f in tests:
        gc.collect()
        t0 = clock()
        for i in range(len(R)):
            if f(i) is not True:
                raise SystemExit("verification failed: " + name)
        total[name] = total.get(name, 0) + clock() - t0
        count[name] = count.get(name, 0) + len(R)
best = {}
for name, f in tests:
    best[name] = total[name] / count[name] / 1e6
best["clock"] = CLOCK
best["table_open"] = t_open
best["ram_table_build"] = t_ram
best["ram_table_bytes"] = ram_bytes
best["code_bytes"] = code_bytes
best["mem_peak"] = micropython.mem_peak()
print(json.dumps(best))
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


def min_heap(data, table, env=None):
    def runs_in(kb):
        proc = run_mp(MP_MINHEAP, heap="%dk" % kb, args=[data, table], check=False, env=env)
        return proc.returncode == 0 and "ok" in proc.stdout
    return smallest_heap(runs_in, 8, 200)


# Instruction counts (valgrind/callgrind, deterministic: the machine's load does not move them):
# argv: data.json, table, bench dir, kind, repeats
MP_COUNT = r"""
import sys, json
sys.path.append(sys.argv[3])
from validator import p256
import textbook_p256
d = json.loads(open(sys.argv[1]).read())
R = [(bytes.fromhex(a), bytes.fromhex(b), bytes.fromhex(c), bytes.fromhex(e), r) for a, b, c, e, r in d["rider"]][:4]
I = [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in d["issuer"]][:4]
fb = p256.FixedBase(bytes.fromhex(d["issuer_pub"]), sys.argv[2])
p256._generator()
kind = sys.argv[4]
for _ in range(int(sys.argv[5])):
    if kind == "textbook":
        r = [textbook_p256.verify(c, dg, s) for c, u, dg, s, rid in R]
    elif kind == "verify":
        r = [p256.verify(c, dg, s) for c, u, dg, s, rid in R]
    elif kind == "rider":
        r = [p256.verify_recoverable(c, dg, s, rid) for c, u, dg, s, rid in R]
    elif kind == "rider_u":
        r = [p256.verify_recoverable(u, dg, s, rid) for c, u, dg, s, rid in R]
    else:
        r = [p256.verify_fixed(fb, dg, s) for dg, s in I]
    assert all(r)
"""


def instruction_counts(data, table):
    """Instructions per verify on MicroPython under callgrind (None if valgrind is missing)."""
    import shutil
    if not shutil.which("valgrind"):
        return None
    out = {}
    for kind in ("textbook", "verify", "rider", "rider_u", "issuer"):
        counts = []
        for reps in (0, 1):
            proc = subprocess.run(
                ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", MICROPYTHON,
                 "-X", "heapsize=110k", "-c", MP_COUNT, data, table, str(ROOT / "bench"), kind,
                 str(reps)], capture_output=True, text=True, env=mp_env(), timeout=600)
            counts.append(int(proc.stderr.split("Collected : ")[1].split()[0]))
        out[kind] = (counts[1] - counts[0]) / 4
    return out


def cpython_figures(rider, ipub, issuer, rounds):
    def ecdsa_fresh(pub, digest, sig):
        vk = VerifyingKey.from_string(pub, curve=NIST256p, hashfunc=hashlib.sha256)
        return vk.verify_digest(sig, digest, sigdecode=sigdecode_string)

    vks = [VerifyingKey.from_string(c, curve=NIST256p, hashfunc=hashlib.sha256)
           for c, *_ in rider]
    ivk = VerifyingKey.from_string(ipub, curve=NIST256p, hashfunc=hashlib.sha256)
    fb = p256.FixedBase(ipub, p256tables.table_bytes(ipub))
    p256._generator()
    tests = [
        ("ecdsa", lambda: [ecdsa_fresh(c, d, s) for c, u, d, s, r in rider]),
        ("ecdsa_parsed", lambda: [vk.verify_digest(s, d, sigdecode=sigdecode_string)
                                  for vk, (c, u, d, s, r) in zip(vks, rider)]),
        ("verify", lambda: [p256.verify(c, d, s) for c, u, d, s, r in rider]),
        ("rider", lambda: [p256.verify_recoverable(c, d, s, r) for c, u, d, s, r in rider]),
        ("textbook", lambda: [textbook_p256.verify(c, d, s) for c, u, d, s, r in rider]),
        ("ecdsa_issuer", lambda: [ivk.verify_digest(s, d, sigdecode=sigdecode_string)
                                  for d, s in issuer]),
        ("issuer", lambda: [p256.verify_fixed(fb, d, s) for d, s in issuer]),
    ]
    best = {}
    for _ in range(rounds):
        for name, f in tests:
            n = 0
            t0 = time.process_time()
            while time.process_time() - t0 < 0.2:
                res = f()
                assert all(res), name
                n += len(res)
            best[name] = min(best.get(name, 1e9), (time.process_time() - t0) * 1000 / n)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--instructions", action="store_true",
                    help="also count instructions per verify with valgrind (slow, deterministic)")
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
        out = run_mp(MP_BENCH, heap="110k", args=[data, table, a.rounds, ROOT / "bench"],
                     timeout=1200)
        mp = json.loads(out.strip().splitlines()[-1])
        heap = min_heap(data, table)
        # the same with the modules precompiled (.mpy, as a frozen or mpy-deployed build):
        # what remains is the verifier's working memory plus its code
        pkg = Path(tmp) / "mpy" / "validator"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        fw = ROOT / "firmware" / "validator"
        for name in ("p256", "p256_arith", "p256_fixed", "watchdog"):
            subprocess.run([str(MPY_CROSS), "-o", str(pkg / (name + ".mpy")),
                            str(fw / (name + ".py"))], check=True)
        (pkg / "p256_gtable.bin").write_bytes((fw / "p256_gtable.bin").read_bytes())
        heap_mpy = min_heap(data, table, env={"MICROPYPATH": str(pkg.parent)})
        icount = instruction_counts(data, table) if a.instructions else None
    cp = cpython_figures(rider, ipub, issuer, a.rounds)

    print("MicroPython unix port, 110 KB heap, %d keys x %d interleaved rounds, mean %s time, "
          "ms per verify" % (a.cases, a.rounds, mp["clock"]))
    rows = [
        ("textbook verify (Shamir, Jacobian), compressed key", mp["textbook"]),
        ("textbook verify, uncompressed key", mp["textbook_u"]),
        ("p256.verify, compressed key", mp["verify"]),
        ("p256.verify, uncompressed key", mp["verify_u"]),
        ("rider: verify_recoverable, new compressed key", mp["rider"]),
        ("rider: verify_recoverable, new uncompressed key", mp["rider_u"]),
        ("issuer: verify_fixed, table file (4x128)", mp["issuer"]),
        ("issuer: verify_fixed, RAM table (4x16)", mp["issuer_ram"]),
        ("first sighting: issuer + rider", mp["issuer"] + mp["rider"]),
    ]
    for name, v in rows:
        print("  %-50s %7.2f ms" % (name, v))
    print("  issuer table file: checked and opened in %.1f ms; RAM table: built in %.1f ms, %d bytes"
          % (mp["table_open"], mp["ram_table_build"], mp["ram_table_bytes"]))
    print("  p256 + textbook modules compiled from source: %d bytes of heap" % mp["code_bytes"])
    print("  smallest heap for import + verify + verify_recoverable + verify_fixed: %d KB from"
          " source, %d KB from .mpy" % (heap, heap_mpy))
    print("  micropython.mem_peak() after the run: %d bytes (counts every allocation the GC"
          " later reclaimed, so it is not a live peak)" % mp["mem_peak"])
    print("Ratios (same run):")
    print("  rider verify vs textbook:                       %.2fx faster (target >= 1.6x)"
          % (mp["textbook"] / mp["rider"]))
    print("  first sighting vs two textbook verifies:       %.2fx faster (target >= 2x)"
          % (2 * mp["textbook"] / (mp["issuer"] + mp["rider"])))
    print("  p256.verify vs textbook:                        %.2fx faster"
          % (mp["textbook"] / mp["verify"]))
    print("  issuer verify vs textbook:                      %.2fx faster"
          % (mp["textbook"] / mp["issuer"]))
    if icount:
        print("Instructions per verify (valgrind, MicroPython): textbook %.1fM, verify %.1fM, "
              "rider %.1fM (uncompressed key %.1fM), issuer %.1fM"
              % tuple(icount[k] / 1e6 for k in ("textbook", "verify", "rider", "rider_u", "issuer")))
        print("  by instructions: rider %.2fx, first sighting %.2fx faster than textbook"
              % (icount["textbook"] / icount["rider"],
                 2 * icount["textbook"] / (icount["rider"] + icount["issuer"])))
    print("ESP32 estimate (x100 for big-integer code): rider %.0f ms, issuer %.0f ms, "
          "first sighting %.0f ms" % (100 * mp["rider"], 100 * mp["issuer"],
                                      100 * (mp["rider"] + mp["issuer"])))
    print("CPython %s, same inputs, best round, cpu time, ms per verify" % sys.version.split()[0])
    for name, label in (("ecdsa", "python-ecdsa verify (key parsed each time)"),
                        ("ecdsa_parsed", "python-ecdsa verify (key parsed before)"),
                        ("verify", "p256.verify"), ("rider", "p256.verify_recoverable"),
                        ("textbook", "textbook verify"),
                        ("ecdsa_issuer", "python-ecdsa verify, issuer key parsed before"),
                        ("issuer", "p256.verify_fixed (issuer table)")):
        print("  %-50s %7.3f ms" % (label, cp[name]))
    print("  p256.verify vs python-ecdsa: %.2fx faster (target > 1x); vs parsed key: %.2fx"
          % (cp["ecdsa"] / cp["verify"], cp["ecdsa_parsed"] / cp["verify"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
