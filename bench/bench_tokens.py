"""Ride code verification on the MicroPython binary (110 KB heap): ms per full ride-code verify at
first sighting (both signatures) for each source of the issuer key's table, with the credential
cached (rider signature only), an NFC exchange (scripted answers, no radio), the format's own
overhead (prefix, base45, CBOR, SHA-256, checks; no signatures); and the heap: the smallest heap
that imports the token modules and verifies (modules compiled from source, and from .mpy), the
free heap one more verify needs.

    .venv/bin/python bench/bench_tokens.py [--rounds R]     (or: make bench)

The timed run imports the firmware as .mpy files (as `make deploy` installs it). Every time is
the best of R rounds, each at least 0.3 s of CPU time of the MicroPython process
(/proc/self/schedstat; the machine is shared, so wall time is not ours alone), in ms per verify.
A first sighting is forced by clearing the cache before each verify; the issuer key's table is
prepared when the key ring is loaded (as after a key ring install). Benchmarks report numbers;
they never fail on absolute times."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "firmware")]

from host_tools.common import ecsign  # noqa: E402
from host_tools.issuing.issuer import Issuer, export_keyring  # noqa: E402
from host_tools.sim.wallet import Wallet, qr_symbol  # noqa: E402
from mpharness import MICROPYTHON, compiled_tree, mp_env, run_mp  # noqa: E402
from minheap import smallest_heap  # noqa: E402
from validator import keyring as fw_keyring, tokens  # noqa: E402

NOW = 1_780_000_000
CODES = 6

MP_BENCH = r"""
import sys, json, time, gc
from cpuclock import clock, CLOCK  # CPU time of this process (tests/mp/cpuclock.py)
gc.collect()
free0 = gc.mem_free()
from validator import p256
from validator import keyring, tokens, cbor, credential
import hashlib
gc.collect()
code_bytes = free0 - gc.mem_free()
def data(key):
    # one small file per input: no large JSON text in a 110 KB heap
    with open(sys.argv[1] + "." + key) as f:
        return json.loads(f.read())

ops = {data("op_kid"): (bytes.fromhex(data("op_pub")), 0)}
ring_path, table_dir, now = data("ring"), data("tables"), data("now")
def ring_for(name):
    # one key ring at a time, as on the reader; "none": the issuer key has no table file
    return keyring.KeyRing.load(ring_path, ops, now, table_dir if name == "file" else None)

cache = tokens.CredCache(8)  # the few credentials this bench uses (the reader keeps 64)

def first(ring, codes):
    out = []
    for t in codes:
        cache.clear()
        out.append(tokens.verify_qr(t, ring, now, cache)[0])
    return out

def cached(ring, codes):
    return [tokens.verify_qr(t, ring, now, cache)[0] for t in codes]

def nfc(ring, exchanges):
    out = []
    for resp, rand in exchanges:
        cache.clear()
        it = iter(resp)
        out.append(tokens.read_nfc(lambda apdu: next(it), ring, 77, now, rand, cache)[0])
    return out

def fmt(ring, codes):
    out = []
    for t in codes:
        raw = tokens._decode_qr(t)
        a = cbor.decode(raw, 1, 6, tokens.MAX_CODE)
        h = hashlib.sha256(a[0]).digest()
        credential.parse_credential(a[0])
        credential.parse_dynamic(a[2])
        credential.rider_digest(tokens.TAG_QR, h, a[1], None, a[2])
        out.append(0)
    return out

def nfc_data():
    return [([bytes.fromhex(r) for r in x["responses"]], bytes.fromhex(x["rand"]))
            for x in data("nfc")]

tests = [("first_file", "file", first, "first"),
         ("first_none", "none", first, "first"), ("cached", "file", cached, "same"),
         ("nfc", "file", nfc, "nfc"), ("format", "file", fmt, "first")]
MIN_NS = 300000000
best = {}
working = 0
for rnd in range(int(sys.argv[2])):
    for name, ringname, f, inputs in tests:
        ring = ring_for(ringname)
        args = nfc_data() if inputs == "nfc" else data(inputs)
        gc.collect()
        if f is cached:
            f(ring, args[:1])      # the credential goes into the cache
            gc.collect()
            working = max(working, free0 - gc.mem_free() - code_bytes)
        n = 0
        t0 = clock()
        while True:
            res = f(ring, args)
            n += len(res)
            if any(res):
                raise SystemExit("verification failed: %s %r" % (name, res))
            dt = clock() - t0
            if dt >= MIN_NS:
                break
        best[name] = min(best.get(name, 1e9), dt / 1e6 / n)
        ring.close()
        ring = args = None
# the free heap one more first-sighting verify needs: fill the heap, then give memory back
# 480 bytes at a time until the verify passes
ring = ring_for("file")
text = data("first")[0]
gc.collect()
pad = []
try:
    while True:
        pad.append(bytearray(480))
except MemoryError:
    pass
need = None
while pad:
    pad.pop()
    gc.collect()
    try:
        cache.clear()
        free = gc.mem_free()
        if tokens.verify_qr(text, ring, now, cache)[0] == 0:
            need = free
            break
    except MemoryError:   # not even room to call it
        pass
pad = None
best["free_needed"] = need
best["code_bytes"] = code_bytes
best["working_bytes"] = working
best["clock"] = CLOCK
print(json.dumps(best))
"""

# Smallest heap that imports the token modules, loads the key ring (table file) and verifies a
# ride code twice (first sighting, then cached) and an NFC exchange.
MP_MINHEAP = r"""
import sys, json
from validator import p256
from validator import keyring, tokens
d = json.loads(open(sys.argv[1]).read())
ops = {d["op_kid"]: (bytes.fromhex(d["op_pub"]), 0)}
ring = keyring.KeyRing.load(d["ring"], ops, d["now"], d["tables"])
cache = tokens.CredCache(8)  # the few credentials this bench uses (the reader keeps 64)
t = d["first"][0]
resp = [bytes.fromhex(r) for r in d["nfc"][0]["responses"]]
rand = bytes.fromhex(d["nfc"][0]["rand"])
now = d["now"]
d = None
assert tokens.verify_qr(t, ring, now, cache)[0] == 0
assert tokens.verify_qr(t, ring, now, cache)[0] == 0
it = iter(resp)
assert tokens.read_nfc(lambda apdu: next(it), ring, 77, now, rand, cache)[0] == 0
print("ok")
"""


# Bytes of heap the modules take once imported (bytecode: in flash on a frozen build).
MP_CODE = r"""
import gc
gc.collect()
a = gc.mem_alloc()
from validator import tokens, keyring, p256
p256._generator()
gc.collect()
print(gc.mem_alloc() - a)
"""


def min_heap(data, env=None):
    def runs_in(kb):
        proc = run_mp(MP_MINHEAP, heap="%dk" % kb, args=[data], check=False, env=env)
        return proc.returncode == 0 and "ok" in proc.stdout
    return smallest_heap(runs_in, 16, 200, tries=2)  # key-dependent allocation sizes


def mpy_tree(tmp):
    """The firmware compiled with mpy-cross as `make deploy` installs it on the unix port
    (host_tools.fleet.mpybuild: native code for this machine's arch), for a .mpy heap figure:
    no compiler peak at import, bytecode still in RAM (a frozen build keeps it in flash)."""
    return {"MICROPYPATH": ":".join(str(p) for p in compiled_tree()) + ":"
            + mp_env()["MICROPYPATH"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_tokens_"))
    op = ecsign.new_key()
    iss = Issuer.new(7)
    tables = tmp / "tables"
    ring = tmp / "keyring.fvs"
    ring.write_bytes(export_keyring([iss.entry(NOW - 86400, NOW + 86400)], op, 1, 1,
                                    tables_dir=tables))
    host_ring = fw_keyring.KeyRing.load(str(ring), {1: (ecsign.public_bytes(op), 0)}, NOW)

    def wallet():
        w = Wallet()
        w.credential = iss.issue(123456789, w.public_key, NOW - 3600, NOW + 86400, 10, 5000, 2)
        return w

    first = [wallet().ride_code(NOW) for _ in range(CODES)]
    w = wallet()
    same = [w.ride_code(NOW + k) for k in range(CODES)]
    nfc = []
    for _ in range(CODES):
        rand = os.urandom(16)
        card = wallet().card(clock=lambda: NOW)
        assert tokens.read_nfc(card.apdu, host_ring, 77, NOW, rand)[0] == 0
        nfc.append({"rand": rand.hex(), "responses": [r.hex() for _, r in card.log]})
    data = tmp / "data.json"
    inputs = {"ring": str(ring), "tables": str(tables), "now": NOW, "op_kid": 1,
              "op_pub": ecsign.public_bytes(op).hex(), "first": first, "same": same, "nfc": nfc}
    data.write_text(json.dumps(inputs))
    for key, value in inputs.items():
        Path("%s.%s" % (data, key)).write_text(json.dumps(value))
    mpy_env = mpy_tree(tmp)
    # the timed run imports .mpy files, as a deployed reader does (make deploy compiles with
    # mpy-cross); their bytecode is in the heap here and in flash on a frozen build, so the heap
    # is the ESP32's 110 KB plus the bytecode
    code = int(run_mp(MP_CODE, heap="4m", env=mpy_env).split()[-1])
    heap = os.environ.get("BENCH_HEAP", "%dk" % ((code + 110 * 1024 + 1023) // 1024))
    proc = subprocess.run([MICROPYTHON, "-X", "heapsize=" + heap,
                           "-c", MP_BENCH, str(data), str(a.rounds)], capture_output=True,
                          text=True, env=mp_env(mpy_env), timeout=1200)
    if proc.returncode:
        print(proc.stdout, proc.stderr)
        return 1
    r = json.loads(proc.stdout)
    heap_mpy = min_heap(data, mpy_env)
    text = first[0]
    print("MicroPython unix port, modules from .mpy, heap %s (%d bytes of bytecode + 110 KB), "
          "best of %d rounds, %s time, ms per verify" % (heap, code, a.rounds, r["clock"]))
    print("ride code: %d bytes, %d QR characters, QR version %s"
          % (len(tokens.base45.decode(text[4:])), len(text), qr_symbol(text).designator))
    print("full ride-code verify, first sighting (issuer + rider signature):")
    print("  issuer key table from a table file   %7.2f" % r["first_file"])
    print("  issuer key without a table           %7.2f" % r["first_none"])
    print("full ride-code verify, credential cached (rider signature only)  %7.2f" % r["cached"])
    print("NFC exchange verify, first sighting (scripted answers, table file)  %7.2f" % r["nfc"])
    print("format overhead (prefix, base45, CBOR, SHA-256, checks; no signatures)  %7.2f"
          % r["format"])
    print("heap: token modules with p256 %d bytes of bytecode (.mpy; in flash when frozen); key "
          "ring, cache and inputs %d bytes; one more verify needs %s bytes free" % (r["code_bytes"], r["working_bytes"], r["free_needed"]))
    print("smallest heap for import + ring + QR (first, cached) + NFC: %d KB from .mpy (the "
          "engine is native code: it is always precompiled)" % heap_mpy)
    print("ESP32 estimate: bench_decision's \"ride code verified\" lines (native instructions "
          "counted on the Xtensa, the rest scaled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
