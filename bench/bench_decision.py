"""The whole tap decision on the MicroPython binary (110 KB heap, firmware as .mpy): QR text ->
tokens.verify_qr (decode, both or one signature) -> policy.decide (clock, replay, pass-back, deny
list lookups, fare, credit window) -> policy.commit (counters on flash), for a first sighting
(a credential the reader has never seen) and a cached credential (a rider tapping again); the
policy alone; the counters' flash cost per tap and per snapshot; the smallest heap that runs it.

    .venv/bin/python bench/run.py decision        (or: make bench)

Everything the reader keeps is on littlefs on the simulated flash (boards/unix_sim/flashdev.py):
a 1,000,000-entry deny list, the rider counters (default caps: 400 credentials, 200 accounts),
the clock. The trip log append is not included (its figures are in the "Trip log" section).
Times are CPU time of the MicroPython process (/proc/self/schedstat; the machine is shared),
best of R rounds. Benchmarks report numbers; they never fail on absolute times."""
import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "firmware")]

from host_tools.issuing import config_build, denylist_build as db  # noqa: E402
from host_tools.common import ecsign
from host_tools.issuing.issuer import Issuer, export_keyring  # noqa: E402
from host_tools.sim.wallet import Wallet  # noqa: E402
from mpharness import MICROPYTHON, compiled_tree, mp_env  # noqa: E402
from minheap import smallest_heap  # noqa: E402
from validator import denylist as fw_dl  # noqa: E402
sys.path.insert(0, str(ROOT / "bench"))
import esp32_estimate as E  # noqa: E402

NOW = 1_780_000_000
DAY = 86400
N_DENY = 1_000_000
CODES = 30          # taps per kind per round (about 0.3 s of CPU each)
ROUNDS = 3

# ESP32: the policy is interpreter-bound (x175-260; bench/esp32_estimate.py has the method for
# the ride code's verification). Flash: 4 KiB erase 45 ms typ, 256-byte page program 0.4 ms typ
# (W25Q32JV datasheet, as in the deny list section).
INTERP = E.INTERP
T_ERASE_MS, T_PAGE_MS = 45.0, 0.4

MP_SETUP = r"""
import sys, json, os
from validator import p256
p256._generator()  # before a littlefs mount: it opens its table by a path relative to the tree
import flashdev
from validator import denylist
spec = json.loads(open(sys.argv[1]).read())
dev = flashdev.FlashDev(spec["blocks"], path=spec["image"])
flashdev.mount(dev, "/f")
for d in ("/f/deny", "/f/state", "/f/staging"):
    os.mkdir(d)
buf = bytearray(4096)
with open(spec["deny"], "rb") as src, open("/f/staging/full.fvs", "wb") as dst:
    while True:
        n = src.readinto(buf)
        if not n:
            break
        dst.write(memoryview(buf)[:n])
ops = {1: (bytes.fromhex(spec["op_pub"]), 0)}
dl = denylist.DenyList("/f/deny")
print(dl.install("/f/staging/full.fvs", ops, spec["now"]), dl.count)
dl.close()
# the same list in a plain directory of the unix filesystem, for CPU times without the simulated
# flash (its block device is Python code; a device's is C)
plain = spec["plain"]
os.mkdir(plain + "/state")
dl = denylist.DenyList(plain + "/deny")
print(dl.install(plain + "/full.fvs", ops, spec["now"]), dl.count)
dl.close()
flashdev.umount("/f")
dev.close(delete=False)
"""

MP_BENCH = r"""
import sys, json, time, gc, os, hashlib
from cpuclock import clock, per_call, CLOCK  # CPU time of this process (tests/mp/cpuclock.py)
MIN_NS = 300000000   # every figure is a loop of at least 0.3 s of CPU time
from validator import p256
import frozen_gtable
frozen_gtable.use()  # the generator's table of a frozen build (bytecode and constants: "code" below)
import flashdev
from validator import riderstate

def data(key):
    with open(sys.argv[1] + "." + key) as f:
        return json.loads(f.read())

def lines(key):
    # ride codes one per line, read one at a time (no large text in the heap)
    with open(sys.argv[1] + "." + key) as f:
        for line in f:
            yield line.strip()

now = data("now")
rounds = int(sys.argv[2])
plain = data("plain")
dev = flashdev.FlashDev(data("blocks"), path=sys.argv[3])
flashdev.mount(dev, "/f", format_if_needed=False)
# As the reader does (app.py): the rider tables are the largest blocks, taken first.
gc.collect()
a0 = gc.mem_alloc()
st_flash = riderstate.RiderState("/f/state")
gc.collect()
state_bytes = gc.mem_alloc() - a0
st_plain = riderstate.RiderState(plain + "/state")
from validator import keyring, tokens, policy, clock as vclock, config, denylist, reasons
ops = {1: (bytes.fromhex(data("op_pub")), 0)}
cfg = config.parse(bytes.fromhex(data("config")), 1)
ring = keyring.KeyRing.load(data("ring"), ops, now, data("tables"))
cache = tokens.CredCache()

def reader(state, root):
    clk = vclock.Clock(lambda: now, root + "/state")
    clk.set(now)
    dl = denylist.DenyList(root + "/deny")
    assert dl.count > 900000
    return policy.Policy(cfg, state, dl, clk)

pols = {"flash": reader(st_flash, "/f"), "plain": reader(st_plain, plain)}
seq = [0]

def tap(pol, text):
    reason, tok = tokens.verify_qr(text, ring, now, cache)
    if reason:
        raise SystemExit("verify failed: %d" % reason)
    d = pol.decide(tok, now)
    if d.reason != reasons.OK:  # (a repeat would skip the commit this bench times)
        raise SystemExit("not a counted ride: %s" % reasons.name(d.reason))
    seq[0] += 1
    pol.commit(d, seq[0])

best = {}
def keep(name, ns, n):
    best[name] = min(best.get(name, 1e18), ns / 1e6 / n)

flash = {"taps": 0, "erases": 0, "programs": 0, "bytes": 0}
for r in range(rounds):
    for where in ("plain", "flash"):
        pol = pols[where]
        gc.collect()
        n = 0
        t = clock()
        for text in lines("first%d" % r):
            cache.clear()
            tap(pol, text)
            n += 1
        keep("first_" + where, clock() - t, n)
        codes = lines("cached%d" % r)
        cache.clear()
        tap(pol, next(codes))   # the credential goes into the cache
        gc.collect()
        e0, p0, b0 = dev.erases, dev.programs, dev.bytes_programmed
        n = 0
        t = clock()
        for text in codes:
            tap(pol, text)
            n += 1
        keep("cached_" + where, clock() - t, n)
        if where == "flash":
            flash["taps"] += n
            flash["erases"] += dev.erases - e0
            flash["programs"] += dev.programs - p0
            flash["bytes"] += dev.bytes_programmed - b0
        codes = None

# The policy alone (plain directory: no simulated flash in the time), on tokens verified once.
def verified(key):
    out = []
    for text in lines(key):
        cache.clear()
        reason, tok = tokens.verify_qr(text, ring, now, cache)
        if reason:
            raise SystemExit("verify failed: %s %r" % (reasons.name(reason), text[:20]))
        out.append(tok)
    cache.clear()
    return out

pol = pols["plain"]
new = verified("policy_new")
known = verified("policy")
for tok in known:
    pol.commit(pol.decide(tok, now), 0)
    tok.counter += 1

idle = [0]     # time a body spent in the reader's idle work (maintain): not the taps'

def loop(name, body):
    for r in range(rounds):
        gc.collect()
        n = 0
        idle[0] = 0
        t = clock()
        while True:
            n += body()
            dt = clock() - t
            if dt >= MIN_NS:
                break
        keep(name, dt - idle[0], n)

def decide_new():
    for tok in new:
        if pol.decide(tok, now).reason != reasons.OK:
            raise SystemExit("not a counted ride")
    return len(new)

def decide_known():
    for tok in known:
        if pol.decide(tok, now).reason != reasons.OK:
            raise SystemExit("not a counted ride")
    return len(known)

def decide_commit():
    for tok in known:
        d = pol.decide(tok, now)
        pol.commit(d, 0)
        tok.counter += 1
    # between taps the reader writes the counters' snapshot when it is due (app.py: maintain)
    t = clock()
    pol.maintain(now)
    idle[0] += clock() - t
    return len(known)

def lookups():
    dl = pol.denylist
    for tok in known:
        dl.denied_account(tok.account, now)
        dl.denied_credential(tok.cred_id, now)
    return len(known)

loop("decide_new", decide_new)
loop("decide_known", decide_known)
snaps = st_plain.snapshots
commits = seq[0]
loop("decide_commit", decide_commit)
loop("deny_lookups", lookups)
# snapshots written in decide_commit's runs (by maintain, between the taps, as the reader does)
best["commit_snapshots"] = st_plain.snapshots - snaps

# deny list reads on the simulated flash per lookup (both lookups of a tap)
dl = pols["flash"].denylist
r0 = dev.reads
for tok in known:
    dl.denied_account(tok.account, now)
    dl.denied_credential(tok.cred_id, now)
best["deny_reads_per_tap"] = (dev.reads - r0) / len(known)

# a snapshot of full tables (the journal's slots used up, or maintain() when idle)
st = st_flash
DAY = 86400
i = 0
while st.creds.n < st.creds.cap:
    st.creds.put(riderstate.cred_key(b"%016d" % i), (1, 100, now, 1, now + DAY))
    i += 1
i = 0
while st.accounts.n < st.accounts.cap:
    st.accounts.put(riderstate.account_key(10 ** 9 + i), (now, now))
    i += 1
gc.collect()
e0, p0, b0 = dev.erases, dev.programs, dev.bytes_programmed
st.snapshot(now)
snap = {"erases": dev.erases - e0, "programs": dev.programs - p0,
        "bytes": dev.bytes_programmed - b0, "creds": st.creds.n, "accounts": st.accounts.n}
# its CPU time, on the plain directory with the same tables
sp = st_plain
sp.creds.mv[:] = st.creds.mv
sp.creds.n = st.creds.n
sp.accounts.mv[:] = st.accounts.mv
sp.accounts.n = st.accounts.n
loop("snapshot", lambda: sp.snapshot(now) or 1)
# load at boot (snapshot + journal slots): single runs, so wall time (ticks_us), best of 10
st = sp = st_flash = st_plain = None
for p in pols.values():
    p.state = None
gc.collect()
for k in range(10):
    gc.collect()
    t = time.ticks_us()
    x = riderstate.RiderState(plain + "/state")
    best["load"] = min(best.get("load", 1e9), time.ticks_diff(time.ticks_us(), t) / 1000)
    x = None
for p in pols.values():
    p.denylist.close()
flashdev.umount("/f")
dev.close(delete=False)
best.update({"clock": CLOCK, "state_bytes": state_bytes, "flash": flash,
             "snapshot_ops": snap})
# The ESP32 estimate's parts of a tap's ride-code verification (bench/esp32_estimate.py): the
# engine's calls recorded, the rest timed with the engine stubbed (the stub's own cost taken
# off), the half gcd (native code, counted on the Xtensa) timed alone and taken off too.
import engine_tap
est = {}
for name in ("first", "cached"):
    codes = lines("cached0")
    prime = next(codes)
    text = next(codes) if name == "cached" else prime
    cache.clear()
    if name == "cached":
        tokens.verify_qr(prime, ring, now, cache)
    path = sys.argv[3] + "." + name + ".rec"
    gc.collect()
    engine_tap.record(path)
    assert tokens.verify_qr(text, ring, now, cache)[0] == 0
    engine_tap.stop()
    gc.collect()
    flags = engine_tap.load_flags(path)
    engine_tap.stub(flags)
    gc.collect()

    def stubbed():
        engine_tap.rewind()
        if name == "first":
            cache.clear()
        tokens.verify_qr(text, ring, now, cache)
    py = per_call(stubbed) / 1000
    engine_tap.stub(([0] * len(flags[0]), {}))
    f = engine_tap._stub

    def calls_only():
        engine_tap.rewind()
        for _ in range(len(flags[0])):
            f(0, 0, 0, 0)
    py -= per_call(calls_only) / 1000
    engine_tap.stop()
    u2 = int.from_bytes(hashlib.sha256(text).digest(), "big") % p256.N
    py -= per_call(lambda: p256._half_gcd(u2, p256.N)) / 1000
    est[name] = {"record": path, "python_us": py, "calls": len(flags[0])}
codes = None
best["est"] = est
print(json.dumps(best))
"""

# The smallest heap that loads everything and decides a first-sighting tap and a cached one.
MP_MINHEAP = r"""
import sys, json, gc
from validator import p256
import frozen_gtable
frozen_gtable.use()
import flashdev
from validator import riderstate
def data(key):
    with open(sys.argv[1] + "." + key) as f:
        return json.loads(f.read())
now = data("now")
dev = flashdev.FlashDev(data("blocks"), path=sys.argv[3])
flashdev.mount(dev, "/f", format_if_needed=False)
gc.collect()
state = riderstate.RiderState("/f/state")
from validator import keyring, tokens, policy, clock as vclock, config, denylist
ops = {1: (bytes.fromhex(data("op_pub")), 0)}
cfg = config.parse(bytes.fromhex(data("config")), 1)
clk = vclock.Clock(lambda: now, "/f/state")
clk.set(now)
dl = denylist.DenyList("/f/deny")
pol = policy.Policy(cfg, state, dl, clk)
ring = keyring.KeyRing.load(data("ring"), ops, now, data("tables"))
cache = tokens.CredCache()
codes = []
for key, k in (("cached0", 2), ("first0", 1)):
    with open(sys.argv[1] + "." + key) as f:
        for i in range(k):
            codes.append(f.readline().strip())
for text in codes:
    reason, tok = tokens.verify_qr(text, ring, now, cache)
    assert reason == 0, reason
    d = pol.decide(tok, now)
    assert d.accepted, d
    pol.commit(d, 1)
print("ok")
"""


MP_CODE = r"""
import gc
gc.collect()
a = gc.mem_alloc()
from validator import p256
import frozen_gtable
frozen_gtable.use()
import flashdev
from validator import keyring, tokens, policy, riderstate, clock, config, denylist, reasons
gc.collect()
print(gc.mem_alloc() - a)
"""


def run_mp(script, heap, args, tree, timeout=1800, check=True):
    env = mp_env(path=tree)
    proc = subprocess.run([MICROPYTHON, "-X", "heapsize=" + heap, "-c", script, *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode:
        raise SystemExit("MicroPython failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc


def min_heap(data, image, tmp, tree):
    def runs_in(kb):
        img = tmp / "minheap.img"
        shutil.copy(image, img)
        proc = run_mp(MP_MINHEAP, "%dk" % kb, [data, 1, img], tree, check=False)
        return proc.returncode == 0 and "ok" in proc.stdout
    return smallest_heap(runs_in, 48, 260, tries=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_decision_"))
    t_host = time.perf_counter()
    op = ecsign.new_key()
    iss = Issuer.new(7)
    tables = tmp / "tables"
    ring = tmp / "keyring.fvs"
    ring.write_bytes(export_keyring([iss.entry(NOW - DAY, NOW + DAY)], op, 1, 1,
                                    tables_dir=tables))
    # a million-entry deny list (700,000 accounts, 300,000 credentials), none of our riders
    ents = {(fw_dl.TAG_ACCOUNT, fw_dl.account_bytes((i * 0x9E3779B97F4A7C15 + 7) % (1 << 64))): 0
            for i in range(700_000)}
    for i in range(300_000):
        ents[(fw_dl.TAG_CREDENTIAL, hashlib.sha256(b"deny %d" % i).digest()[:16])] = 0
    deny, model, _ = db.build_list(ents, 1, op, 1, NOW - 3600)
    ents = None
    (tmp / "deny.fvs").write_bytes(deny)
    plain = tmp / "plain"
    plain.mkdir()
    (plain / "full.fvs").write_bytes(deny)
    # one rider taps again and again at the same instant: without these windows every repeat
    # would be the same tap (no decision work, no commit) or a pass-back
    body = config_build.body({"rules": {"passback_window": 0, "repeat_window": 0},
                              "fares": {"0": {"adult": 200, "student": 100}}})
    accounts = iter(range(5000, 10 ** 6))

    def wallet():
        w = Wallet()
        w.credential = iss.issue(next(accounts), w.public_key, NOW - 3600, NOW + DAY, 1000,
                                 10 ** 6, 1)
        return w

    inputs = {"now": NOW, "op_pub": ecsign.public_bytes(op).hex(), "ring": str(ring),
              "tables": str(tables), "config": body.hex(), "plain": str(plain),
              "blocks": (len(deny) * 2) // 4096 + 128}
    for r in range(a.rounds):
        inputs["first%d" % r] = [wallet().ride_code(NOW - 2) for _ in range(CODES)]
        w = wallet()
        inputs["cached%d" % r] = [w.ride_code(NOW - 2) for _ in range(CODES + 1)]
    inputs["policy"] = [wallet().ride_code(NOW - 2) for _ in range(10)]
    inputs["policy_new"] = [wallet().ride_code(NOW - 2) for _ in range(10)]
    data = tmp / "data"
    for k, v in inputs.items():
        if isinstance(v, list):
            Path("%s.%s" % (data, k)).write_text("".join(c + "\n" for c in v))
        else:
            Path("%s.%s" % (data, k)).write_text(json.dumps(v))
    t_host = time.perf_counter() - t_host
    tree = compiled_tree()
    image = tmp / "flash.img"
    spec = tmp / "setup.json"
    spec.write_text(json.dumps({"blocks": inputs["blocks"], "image": str(image),
                                "deny": str(tmp / "deny.fvs"), "now": NOW, "plain": str(plain),
                                "op_pub": inputs["op_pub"]}))
    # As the simulated reader (host_tools/sim/simreader.py): the bytecode is in the heap here but
    # frozen in flash on a device, so the heap is the ESP32's 110 KB for data plus the code.
    code = int(run_mp(MP_CODE, "4m", [], tree).stdout.split()[-1])
    heap_kb = (code + 110 * 1024 + 16 * 1024 + 1023) // 1024
    out = run_mp(MP_SETUP, "%dk" % heap_kb, [spec], tree).stdout.split()
    if out[0] != "OK" or out[2] != "OK":
        raise SystemExit("deny list install failed: %s" % out)
    work = tmp / "work.img"
    shutil.copy(image, work)
    # The timing run holds two readers' data (the counters on the simulated flash and in a plain
    # directory, each with its deny list): 32 KB more for the second. The smallest heap below is
    # one reader's.
    r = json.loads(run_mp(MP_BENCH, "%dk" % (heap_kb + 32), [data, a.rounds, work], tree).stdout
                   .strip().splitlines()[-1])
    heap = min_heap(data, image, tmp, tree)

    f = r["flash"]
    n = f["taps"]
    s = r["snapshot_ops"]
    print("host: keys, a %d-entry deny list, %d ride codes: %.1f s"
          % (model.count, a.rounds * (2 * CODES + 1) + 20, t_host))
    print("MicroPython unix port, firmware from .mpy (%d bytes of bytecode in the heap: frozen "
          "on a device) + 110 KB for data + 16 KB for load holes + 32 KB for the bench's second "
          "reader = %d KB heap; best of %d rounds of at least 0.3 s, %s time, ms"
          % (code, heap_kb + 32, a.rounds, r["clock"]))
    print("whole tap (verify_qr + decide with 2 deny-list lookups + commit):")
    print("                                         state in a plain dir | on littlefs/FlashDev")
    print("  first sighting (issuer + rider sig)      %7.2f              %7.2f"
          % (r["first_plain"], r["first_flash"]))
    print("  cached credential (rider sig only)       %7.2f              %7.2f"
          % (r["cached_plain"], r["cached_flash"]))
    print("policy alone (plain dir), ms: decide, new credential %.3f; decide, known credential "
          "%.3f; decide + commit %.3f (%d snapshots written between taps, not counted); "
          "2 deny list lookups %.3f"
          % (r["decide_new"], r["decide_known"], r["decide_commit"], r["commit_snapshots"],
             r["deny_lookups"]))
    print("counters on flash per tap: %.2f erases, %.1f programs, %d bytes programmed (%d taps); "
          "deny list: %.1f block reads per tap (2 lookups)"
          % (f["erases"] / n, f["programs"] / n, f["bytes"] // n, n, r["deny_reads_per_tap"]))
    print("snapshot of full tables (%d credentials, %d accounts): %.1f ms CPU, %d erases, %d "
          "programs, %d bytes; load at boot %.2f ms (wall)"
          % (s["creds"], s["accounts"], r["snapshot"], s["erases"], s["programs"], s["bytes"],
             r["load"]))
    print("heap: the smallest that loads it all and decides a first-sighting and a cached tap is "
          "%d KB, of which %.1f KB bytecode (frozen on a device): %.1f KB of data, including the "
          "rider tables' %d bytes (default caps, taken first at boot)"
          % (heap, code / 1024, heap - code / 1024, r["state_bytes"]))
    # ESP32 (bench/esp32_estimate.py): the ride code's verification by its native instructions
    # (qemu) and its Python (stubbed engine) scaled; the policy x175-260; the counters' flash from
    # the datasheet figures; the deny list's block reads at 30-150 us (deny list section).
    flash_ms = (f["erases"] / n) * T_ERASE_MS + (f["bytes"] / n / 256) * T_PAGE_MS
    reads = r["deny_reads_per_tap"]
    pol = r["decide_commit"]
    print("ESP32 estimate (bench/esp32_estimate.py; policy x%d-%d; counters' flash %.1f ms/tap "
          "avg at %.0f ms/erase, %.1f ms/page; deny list %.1f-%.1f ms at 30-150 us a block read):"
          % (INTERP[0], INTERP[1], flash_ms, T_ERASE_MS, T_PAGE_MS, reads * 0.03, reads * 0.15))
    for name, label in (("first", "first sighting"), ("cached", "cached credential")):
        e = r["est"][name]
        instr, calls = E.native_instructions(e["record"])
        instr += E.half_gcd_instructions()      # the rider signature's half gcd
        (vlo, vhi), _ = E.estimate(instr, e["python_us"], calls)
        print(E.line("ride code verified (" + label + ")", instr, e["python_us"], calls))
        lo = vlo + pol * INTERP[0] + flash_ms + reads * 0.03
        hi = vhi + pol * INTERP[1] + flash_ms + reads * 0.15
        print("  %-34s %5.0f-%-4.0f ms  (of which the policy and its flash %.0f-%.0f ms; "
              "target %s)" % ("tap, " + label, lo, hi, pol * INTERP[0] + flash_ms + reads * 0.03,
                              pol * INTERP[1] + flash_ms + reads * 0.15,
                              "<= 250 ms" if name == "first" else "<= 150 ms"))
        E.save(**{"tap_" + name: (lo, hi)})
    snap_flash = s["erases"] * T_ERASE_MS + s["bytes"] / 256 * T_PAGE_MS
    print("  snapshot       %.2f-%.2f s (flash %.0f ms): every 32 accepted taps at most, moved "
          "to idle time by maintain()" % ((r["snapshot"] * INTERP[0] + snap_flash) / 1000,
                                           (r["snapshot"] * INTERP[1] + snap_flash) / 1000,
                                           snap_flash))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
