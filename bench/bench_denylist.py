"""Deny list: a 1,000,000-entry list built on the host, looked up on the MicroPython binary (hits
and misses, accounts and credentials), RAM of the loaded structure, a 10,000-entry delta merged,
both from a plain file and through littlefs on the simulated flash (flash reads per lookup,
erases and bytes programmed per delta), with an ESP32 estimate.

    .venv/bin/python bench/run.py denylist        (or: make bench)

Times on MicroPython are CPU time of its process (/proc/self/schedstat; the machine is shared).
Figures go to docs/performance.md, section "Deny list". Benchmarks never fail on absolute times."""
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from host_tools.issuing import denylist_build as db  # noqa: E402
from host_tools.common import ecsign  # noqa: E402
from mpharness import compiled_tree, run_mp  # noqa: E402
from validator import denylist as dl  # noqa: E402

N_ACCOUNTS = 700_000
N_CREDS = 300_000
DELTA_HALF = 5_000          # 5,000 removed + 5,000 added = a 10,000-entry delta
NOW = 1_750_000_000
DAY = 86400
ROUNDS = 5                  # lookups: best of 5 rounds ...
SAMPLES = 3000              # ... of 3,000 ids per kind (hits: listed; misses: not listed)

# ESP32 estimate. Interpreter-bound code runs 175-260x slower than this unix port (MISSION.md);
# SHA-256 is in hardware there, so the factor is an upper bound for the hashing share.
CPU_FACTOR = (175, 260)
# Typical SPI NOR flash on ESP32 modules (W25Q32JV datasheet): 4 KiB erase 45 ms typ, 256-byte
# page program 0.4 ms typ. A littlefs block read on the ESP32 (esp_partition_read of up to 4 KiB
# over 40 MHz QIO SPI, plus the call) is taken as 30-150 us.
T_ERASE_MS, T_PAGE_MS = 45.0, 0.4
T_READ_US = (30, 150)


def account_id(n):
    return (n * 0x9E3779B97F4A7C15 + 12345) % (1 << 64)


def credential(i):
    return hashlib.sha256(b"cred %d" % i).digest()[:16]


MP_COMMON = r"""
import sys, json, time, gc, os
from cpuclock import clock as clock_ns  # CPU time of this process (tests/mp/cpuclock.py)
def clock():
    return clock_ns() // 1000
from validator import denylist as dl
spec = json.loads(open(sys.argv[1]).read())
keys = {int(k): (bytes.fromhex(v[0]), v[1]) for k, v in spec["keys"].items()}
NOW = spec["now"]

K = 0x9E3779B97F4A7C15
M = (1 << 64) - 1
import hashlib

# The ids are made inside the timed loop (a list of 300 64-bit ints fragments a 110 KB heap);
# the same loop with a no-op in place of the lookup is timed too and subtracted.
GEN = {
    "acct_hit": lambda i: ((i * spec["step"] + 1) * K + 12345) & M,
    "acct_miss": lambda i: ((20000000 + i) * K + 12345) & M,
    "cred_hit": lambda i: hashlib.sha256(b"cred %d" % (i * spec["cstep"] + 1)).digest()[:16],
    "cred_miss": lambda i: hashlib.sha256(b"cred %d" % (9000000 + i)).digest()[:16],
}

def noop(x, now):
    return False

def time_lookups(f, gen, n, rounds):
    best = [None, None]
    hits = 0
    for r in range(rounds):
        for k, fn in ((0, f), (1, noop)):
            gc.collect()
            t = clock()
            c = 0
            for i in range(n):
                if fn(gen(i), NOW):
                    c += 1
            dt = clock() - t
            if best[k] is None or dt < best[k]:
                best[k] = dt
            if k == 0:
                hits = c
    return (best[0] - best[1]) / n, hits
"""

MP_FILE = MP_COMMON + r"""
from validator import p256, denylist_update
p256._generator()
lst = dl.DenyList(spec["dir"])
assert lst.install(spec["full"], keys, NOW) == dl.OK
lst.close()
lst = None
gc.collect()
t = clock()
for i in range(20):
    lst = dl.DenyList(spec["dir"])
    lst.close()
t_load = (clock() - t) / 20
lst = None
gc.collect()
a0 = gc.mem_alloc()
lst = dl.DenyList(spec["dir"])
gc.collect()
ram = gc.mem_alloc() - a0
res = {"load_us": t_load, "ram_bytes": ram}
for name in ("acct_hit", "acct_miss", "cred_hit", "cred_miss"):
    f = lst.denied_account if name[0] == "a" else lst.denied_credential
    us, n = time_lookups(f, GEN[name], spec["n"], spec["rounds"])
    res[name] = [us, n, spec["n"]]
# hashing alone, the same calls a lookup makes
x = (12345).to_bytes(8, "big")
gc.collect()
t = clock()
for i in range(2000):
    dl.hash_id(dl.TAG_ACCOUNT, lst._salt, x)
res["hash_us"] = (clock() - t) / 2000
# the delta (signature checked inside install, as on a reader)
t = clock()
r = lst.install(spec["delta"], keys, NOW)
res["delta_ms"] = (clock() - t) / 1000
assert r == dl.OK, r
assert lst.version == 2
from validator import signedfile as sf
t = clock()
assert sf.verify_file(spec["delta"], keys, sf.DENYLIST_DELTA, NOW)[0] == sf.OK
res["delta_verify_ms"] = (clock() - t) / 1000
print(json.dumps(res))
"""

MP_FLASH = MP_COMMON + r"""
import flashdev
from validator import p256, denylist_update
p256._generator()
dev = flashdev.FlashDev(spec["blocks"], path=spec["image"])
flashdev.mount(dev, "/fl")
res = {}
import mpt_denylist_kit as kit
kit.copy_file(spec["full"], "/fl/in.fvs")   # as received by sync (not timed)
kit.copy_file(spec["delta"], "/fl/d.fvs")
lst = dl.DenyList("/fl/deny")
dev.reset_counters()
t = clock()
assert lst.install("/fl/in.fvs", keys, NOW) == dl.OK
res["install_full_ms"] = (clock() - t) / 1000
res["install_full_ops"] = [dev.erases, dev.programs, dev.bytes_programmed, dev.reads]
for name in ("acct_hit", "acct_miss"):
    dev.reset_counters()
    us, n = time_lookups(lst.denied_account, GEN[name], spec["n"], 1)
    res[name] = [us, n, spec["n"], dev.reads / spec["n"]]
dev.reset_counters()
t = clock()
r = lst.install("/fl/d.fvs", keys, NOW)
res["delta_ms"] = (clock() - t) / 1000
assert r == dl.OK, r
res["delta_ops"] = [dev.erases, dev.programs, dev.bytes_programmed, dev.reads]
st = os.statvfs("/fl")
res["fs_used_blocks"] = st[2] - st[3]
lst.close()
flashdev.umount("/fl")
dev.close()
print(json.dumps(res))
"""


def main():
    tmp = Path(tempfile.mkdtemp(prefix="bench_denylist_"))
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp):
    key = ecsign.new_key()
    keys = {"1": [ecsign.public_bytes(key).hex(), 0]}
    t = time.perf_counter()
    ents = {(dl.TAG_ACCOUNT, dl.account_bytes(account_id(i))): 0 for i in range(N_ACCOUNTS)}
    for i in range(N_CREDS):
        ents[(dl.TAG_CREDENTIAL, credential(i))] = NOW + DAY * (1 + i % 40) if i % 3 == 0 else 0
    t_src = time.perf_counter() - t
    t = time.perf_counter()
    data, model, _ = db.build_list(ents, 1, key, 1, NOW)
    t_build = time.perf_counter() - t
    (tmp / "full.fvs").write_bytes(data)
    removed = {(dl.TAG_ACCOUNT, dl.account_bytes(account_id(i))): 0
               for i in range(0, N_ACCOUNTS, N_ACCOUNTS // DELTA_HALF)}
    added = {(dl.TAG_ACCOUNT, dl.account_bytes(account_id(i))): 0
             for i in range(10_000_000, 10_000_000 + DELTA_HALF)}
    t = time.perf_counter()
    delta, _, rep = db.build_delta(data, 2, key, 1, add=added, remove=removed, created=NOW + 60)
    t_delta = time.perf_counter() - t
    (tmp / "delta.fvs").write_bytes(delta)
    print("host: %d entries (%d accounts, %d credentials, a third of those expiring)"
          % (model.count, N_ACCOUNTS, N_CREDS))
    print("host: ids generated %.1f s, list built and signed %.1f s, delta (%d adds, %d removes) "
          "built %.1f s" % (t_src, t_build, rep["adds"], rep["removes"], t_delta))
    print("file: %d bytes = %.3f bytes/entry (entries %d bytes, count tables %d bytes, "
          "index %d bytes); delta %d bytes"
          % (len(data), len(data) / model.count, model.width,
             (1 << model.gbits) * (1 << model.sbits), 4 * ((1 << model.gbits) + 1), len(delta)))
    print("false-positive rate per lookup of an unlisted id: %.2e (group bits %d, sub-bucket "
          "bits %d, 24-bit fingerprint)" % (model.fp_rate(), model.gbits, model.sbits))

    spec = {"keys": keys, "now": NOW, "rounds": ROUNDS, "n": SAMPLES,
            "step": N_ACCOUNTS // SAMPLES, "cstep": N_CREDS // SAMPLES}
    tree = compiled_tree()

    # 1. from a plain file (the unix filesystem): the firmware's own cost
    shutil.copy(tmp / "full.fvs", tmp / "full_copy.fvs")
    s1 = dict(spec, dir=str(tmp / "deny"), full=str(tmp / "full_copy.fvs"),
              delta=str(tmp / "delta.fvs"))
    (tmp / "s1.json").write_text(json.dumps(s1))
    out = run_mp(MP_FILE, heap="110k", args=[tmp / "s1.json"], path=tree, timeout=900)
    r1 = json.loads(out.strip().splitlines()[-1])
    print("\nMicroPython unix port, 110 KB heap, list in a plain file (CPU time, best of %d):"
          % ROUNDS)
    print("  load: %.1f ms, RAM kept by the loaded list: %d bytes"
          % (r1["load_us"] / 1000, r1["ram_bytes"]))
    for name in ("acct_hit", "acct_miss", "cred_hit", "cred_miss"):
        us, n, total = r1[name]
        print("  %-9s %6.1f us per lookup (%d of %d denied)" % (name, us, n, total))
    print("  SHA-256 of tag+salt+id alone: %.1f us" % r1["hash_us"])
    print("  10,000-entry delta into 1,000,000: %.0f ms in all (signature check alone %.0f ms)"
          % (r1["delta_ms"], r1["delta_verify_ms"]))

    # 2. through littlefs on the simulated flash: flash reads and writes
    blocks = 2 * len(data) // 4096 + 64
    s2 = dict(spec, full=str(tmp / "full.fvs"), delta=str(tmp / "delta.fvs"), blocks=blocks,
              image=str(tmp / "flash.img"))
    (tmp / "s2.json").write_text(json.dumps(s2))
    out = run_mp(MP_FLASH, heap="110k", args=[tmp / "s2.json"], path=tree, timeout=1800)
    r2 = json.loads(out.strip().splitlines()[-1])
    print("\nMicroPython unix port, 110 KB heap, littlefs on FlashDev (%d blocks):" % blocks)
    print("  full list installed (rename after checks): %.0f ms, %d erases, %d programs"
          % (r2["install_full_ms"], r2["install_full_ops"][0], r2["install_full_ops"][1]))
    for name in ("acct_hit", "acct_miss"):
        us, n, total, reads = r2[name]
        print("  %-9s %6.1f us per lookup, %.1f block reads per lookup" % (name, us, reads))
    e, p, b, rd = r2["delta_ops"]
    print("  10,000-entry delta: %.0f ms, %d erases, %d programs, %d bytes programmed, "
          "%d block reads" % (r2["delta_ms"], e, p, b, rd))
    print("  filesystem blocks in use after the delta: %d (list %d KiB)"
          % (r2["fs_used_blocks"], len(data) // 1024))

    # ESP32 estimate
    lo, hi = CPU_FACTOR
    hit = r1["acct_hit"][0]
    miss = r1["acct_miss"][0]
    reads = max(r2["acct_hit"][3], r2["acct_miss"][3])
    print("\nESP32 estimate (interpreter-bound x%d-%d; SHA-256 in hardware, so this is high;"
          " plus %.1f littlefs block reads x %d-%d us):" % (lo, hi, reads, *T_READ_US))
    for name, us in (("hit", hit), ("miss", miss)):
        print("  lookup %-4s %.1f-%.1f ms" % (name, (us * lo + reads * T_READ_US[0]) / 1000,
                                              (us * hi + reads * T_READ_US[1]) / 1000))
    merge_cpu = r1["delta_ms"] - r1["delta_verify_ms"]
    flash_s = (e * T_ERASE_MS + b / 256 * T_PAGE_MS) / 1000
    print("  10,000-entry delta: merge CPU %.0f-%.0f s + flash %.0f s (%d erases x %.0f ms, "
          "%d pages x %.1f ms) + signature check (see the p256 section)"
          % (merge_cpu * lo / 1000, merge_cpu * hi / 1000, flash_s, e, T_ERASE_MS, b // 256,
             T_PAGE_MS))


if __name__ == "__main__":
    main()
