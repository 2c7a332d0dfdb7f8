"""The verification and tap benchmark on a connected board: the day a reader is at hand, its
measured times replace the ESP32 estimate (docs/performance.md).

    make bench-device PORT=/dev/ttyUSB0        (or: .venv/bin/python bench/bench_device.py --port ...)

The board must run the reader's firmware (a frozen build, or `make deploy`). The host makes the
inputs (keys, signatures, a signed key ring and configuration, ride codes, the issuer's comb
table), copies them to the board's flash under bench/ with mpremote, runs the benchmark there
(wall time, time.ticks_us, on the board's own CPU) and removes bench/ again. It prints each
figure beside the estimate that `make bench` last wrote (build/esp32-estimate.json).

What runs on the board is what a reader runs: validator.p256 (rider signatures with a key seen
for the first time and with a cached one, issuer signatures with the key's table file), and
whole taps (tokens.verify_qr, policy.decide with a 10,000-entry deny list, policy.commit with
the counters on the board's flash) for a credential seen for the first time and for a cached one.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from host_tools.common import ecsign, esp32figures  # noqa: E402
from host_tools.fleet import deploy  # noqa: E402
from host_tools.issuing import config_build, denylist_build  # noqa: E402
from host_tools.issuing.issuer import Issuer, export_keyring  # noqa: E402

DENY_ENTRIES = 10_000   # a deny list the board installs first (a reader without one is degraded)
NOW = 1_800_000_000
DAY = 86400
DIR = "bench"

# Runs on the board. argv is not available through mpremote exec: the rounds are filled in.
DEVICE = r"""
import gc, json, time
from validator import p256, tokens, keyring, policy, riderstate, config, clock, denylist
from validator import signedfile
D = %(dir)r
ROUNDS = %(rounds)d
with open(D + "/data.json") as f:
    d = json.load(f)
now = d["now"]
R = [(bytes.fromhex(a), bytes.fromhex(b), bytes.fromhex(c), r) for a, b, c, r in d["rider"]]
I = [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in d["issuer"]]
ops = {1: (bytes.fromhex(d["op_pub"]), 0)}
first = d["first"]
cached = d["cached"]
d = None
p256._generator()
ipub = None
out = {}

def timed(name, fn, n):
    gc.collect()
    best = None
    for _ in range(ROUNDS):
        t0 = time.ticks_us()
        for i in range(n):
            if fn(i) is not True:
                raise SystemExit("failed: " + name)
        t = time.ticks_diff(time.ticks_us(), t0) / n / 1000
        best = t if best is None or t < best else best
    out[name] = best

ring = keyring.KeyRing.load(D + "/keyring.fvs", ops, now, D + "/tables")
key = ring.lookup(7, now)[1]
fb = p256.FixedBase(key.public_key, D + "/tables/7.p2t")
keys = [p256.decode_key(r[0]) for r in R]
timed("rider", lambda i: p256.verify_recoverable(R[i][0], R[i][1], R[i][2], R[i][3]), len(R))
timed("rider_cached", lambda i: p256.verify_recoverable(keys[i], R[i][1], R[i][2], R[i][3]),
      len(R))
timed("issuer", lambda i: p256.verify_fixed(fb, I[i][0], I[i][1]), len(I))
fb.close()
cfg = config.Config.load(D + "/config.fvs", ops, now)
state = riderstate.RiderState(D + "/state")
clk = clock.Clock(lambda: now, D + "/state")
clk.set(now)
dl = denylist.DenyList(D + "/deny")
r = dl.install(D + "/deny.fvs", ops, now)
if r != signedfile.OK:
    raise SystemExit("deny list refused: %%s" %% r)
pol = policy.Policy(cfg, state, dl, clk)
cache = tokens.CredCache()
seq = [0]

def tap(text, fresh):
    if fresh:
        cache.clear()
    reason, tok = tokens.verify_qr(text, ring, now, cache)
    if reason:
        return False
    dec = pol.decide(tok, now)
    seq[0] += 1
    pol.commit(dec, seq[0])
    pol.maintain(now)
    return dec.accepted

# every tap a code not seen before (a repeated one is refused): one list for all rounds
k = [-1, 0]

def new_rider(i):
    k[0] += 1
    return tap(first[k[0]], True)

def known_rider(i):
    k[1] += 1
    return tap(cached[k[1]], False)
tap(cached[0], True)
timed("tap_first", new_rider, len(first) // ROUNDS)
timed("tap_cached", known_rider, (len(cached) - 1) // ROUNDS)
print("BENCH " + json.dumps(out))
"""

LABELS = (("rider", "rider verify, new key"), ("rider_cached", "rider verify, cached key"),
          ("issuer", "issuer verify (table file)"), ("tap_first", "tap, first sighting"),
          ("tap_cached", "tap, cached credential"))


def make_inputs(tmp, n, rounds):
    """The benchmark's files in `tmp` (what goes to the board)."""
    import random
    from host_tools.sim.wallet import Wallet
    rng = random.Random(7)
    op = ecsign.new_key()
    iss = Issuer.new(7)
    (tmp / "tables").mkdir()
    (tmp / "keyring.fvs").write_bytes(export_keyring([iss.entry(NOW - DAY, NOW + DAY)], op, 1, 1,
                                                     tables_dir=tmp / "tables"))
    (tmp / "config.fvs").write_bytes(config_build.build(
        {"rules": {"passback_window": 0, "repeat_window": 0},
         "fares": {"0": {"adult": 200, "student": 100}}}, 1, op, 1))
    sys.path.insert(0, str(ROOT / "firmware"))
    from validator import denylist_format as dlf
    ents = {(dlf.TAG_ACCOUNT, dlf.account_bytes(10 ** 9 + i)): 0 for i in range(DENY_ENTRIES)}
    (tmp / "deny.fvs").write_bytes(denylist_build.build_list(ents, 1, op, 1, NOW - 3600)[0])
    rider = []
    for _ in range(n):
        sk = ecsign.new_key()
        digest = rng.randbytes(32)
        sig, recid = ecsign.sign_digest(sk, digest)
        rider.append((ecsign.public_bytes(sk, True).hex(), digest.hex(), sig.hex(), recid))
    issuer = []
    for _ in range(n):
        digest = rng.randbytes(32)
        issuer.append((digest.hex(), ecsign.sign_digest(iss.key, digest)[0].hex()))
    accounts = iter(range(5000, 10 ** 6))

    def wallet():
        w = Wallet()
        w.credential = iss.issue(next(accounts), w.public_key, NOW - 3600, NOW + DAY, 10 ** 6,
                                 10 ** 8, 1)
        return w
    first = [wallet().ride_code(NOW - 2) for _ in range(n * rounds)]
    w = wallet()
    cached = [w.ride_code(NOW - 2) for _ in range(n * rounds + 1)]
    (tmp / "data.json").write_text(json.dumps({
        "now": NOW, "op_pub": ecsign.public_bytes(op).hex(), "rider": rider, "issuer": issuer,
        "first": first, "cached": cached}))
    return sorted(p for p in tmp.rglob("*") if p.is_file())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", required=True, help="the board's serial port")
    ap.add_argument("--cases", type=int, default=6, help="signatures and ride codes per kind")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per kind (the best is kept)")
    a = ap.parse_args(argv)
    try:
        deploy.check_port(a.port)
        with tempfile.TemporaryDirectory() as t:
            tmp = Path(t)
            files = make_inputs(tmp, a.cases, a.rounds)
            # (the counters and an empty deny list live in state/ and deny/, as on a reader)
            dirs = sorted({p.parent.relative_to(tmp).as_posix() for p in files} - {"."}
                          | {"state", "deny"})
            deploy.run_mpremote(a.port, "exec", "import os\nfor d in %r:\n    try:\n"
                                "        os.mkdir(d)\n    except OSError:\n        pass\n"
                                % ([DIR] + [DIR + "/" + d for d in dirs]))
            for i, p in enumerate(files, 1):
                rel = p.relative_to(tmp).as_posix()
                print("[%d/%d] cp %s" % (i, len(files), rel), flush=True)
                deploy.run_mpremote(a.port, "fs", "cp", str(p), ":%s/%s" % (DIR, rel))
            print("running on the board (a minute or two)...", flush=True)
            try:
                out = deploy.run_mpremote(a.port, "exec", DEVICE % {"dir": DIR, "rounds": a.rounds},
                                          timeout=1800)
            finally:
                deploy.run_mpremote(a.port, "exec", _RMTREE % DIR)
    except deploy.DeployError as e:
        print("bench-device: %s" % e, file=sys.stderr)
        return 1
    line = [ln for ln in out.splitlines() if ln.startswith("BENCH ")]
    if not line:
        print("bench-device: the board printed no result:\n%s" % out[-2000:], file=sys.stderr)
        return 1
    got = json.loads(line[-1][6:])
    est = esp32figures.load()
    print("On the board at %s (best of %d rounds, wall time), beside the ESP32 estimate of the "
          "last `make bench`:" % (a.port, a.rounds))
    for key, label in LABELS:
        e = est.get(key)
        print("  %-30s %8.1f ms   estimate %s" % (label, got[key], "%.0f-%.0f ms" % tuple(e)
                                                if e else "(none yet: make bench)"))
    return 0


_RMTREE = """import os
def rm(p):
    try:
        os.remove(p)
    except OSError:
        for n in os.listdir(p):
            rm(p + "/" + n)
        os.rmdir(p)
try:
    rm(%r)
except OSError:
    pass
"""


if __name__ == "__main__":
    sys.exit(main())
