"""The reader's tap path (validator.app.Reader) on MicroPython, without UARTs: the order
decide -> log -> commit, repeats, replays, and a power cut between the log and the counters."""
import json

import pytest

from host_tools import simreader, simworld
from mpharness import compiled_tree, run_mp

T = 1795000000

SCRIPT = """
import sys, json
from app_bench import BenchBoard
from validator import app
args = json.loads(open(sys.argv[1]).read())
b = BenchBoard(args["flash"], args["log"], t=args["t"])
b.provision(args["prov"])
r = app.Reader(b)
out = {"boot_recovered": r.recovered, "results": []}
if args.get("set_time"):
    out["set_time"] = r.set_time(args["t"])
for step in args["steps"]:
    if step[0] == "qr":
        b.t = step[1]
        res = r.tap_qr(step[2])
        out["results"].append([res.accepted, res.reason, res.fare, res.seq])
    elif step[0] == "cut_after_append":
        # power dies after the record is on flash, before the counters are committed
        r.policy.commit = lambda d, seq=0: True
    elif step[0] == "info":
        i = r.info()
        out["info"] = {k: i[k] for k in ("log_last", "ack", "deny_version", "time")}
print(json.dumps(out))
"""

CONFIG = {"line": 12, "fares": {"12": {"adult": 200, "student": 100}},
          "rules": {"passback_window": "10m"}, "degraded": {"mode": "limit", "max_rides": 5}}


@pytest.fixture
def world(tmp_path):
    w = simworld.World(tmp_path / "world", T)
    w.add_issuer(1, T - 86400, T + 365 * 86400)
    return w


def run(tmp_path, prov, steps, set_time=False, t=T):
    args = {"flash": str(tmp_path / "flash.img"), "log": str(tmp_path / "log.img"),
            "prov": str(prov), "t": t, "steps": steps, "set_time": set_time}
    (tmp_path / "args.json").write_text(json.dumps(args))
    tree = compiled_tree()
    out = run_mp(SCRIPT, heap=simreader.heap_for(tree[0]), args=[tmp_path / "args.json"],
                 path=tree)
    return json.loads(out.strip().splitlines()[-1])


def test_taps_decide_log_and_count(tmp_path, world):
    alice = world.add_rider("alice", 1, product=1)
    bob = world.add_rider("bob", 2, product=2, max_rides=1)
    prov = world.provision_reader(1001, CONFIG)
    a1 = alice.wallet.ride_code(T)
    b1 = bob.wallet.ride_code(T + 10)
    b2 = bob.wallet.ride_code(T + 900)
    out = run(tmp_path, prov, [
        ["qr", T + 1, a1],          # accepted, adult fare
        ["qr", T + 2, a1],          # the scanner reads the same code again: already validated
        ["qr", T + 20, a1],         # same code later: duplicated
        ["qr", T + 11, b1],         # student fare
        ["qr", T + 901, b2],        # bob's one offline ride is used up
        ["qr", T + 902, "FV1:garbage"],
        ["info"],
    ], set_time=True)
    assert out["set_time"] == "OK"
    r = out["results"]
    assert r[0] == [True, 0, 200, 1]
    assert r[1] == [True, 1, 0, None]           # ALREADY_VALIDATED: no charge, no record
    assert r[2][:2] == [False, 24] and r[2][3] == 2   # DUPLICATED, logged
    assert r[3] == [True, 0, 100, 3]
    assert r[4][:2] == [False, 27]              # QUOTA_RIDES
    assert r[5][:2] == [False, 10]              # MALFORMED, logged
    assert out["info"]["log_last"] == 5


def test_clock_never_set_refuses_without_a_record(tmp_path, world):
    alice = world.add_rider("alice", 1)
    prov = world.provision_reader(1001, CONFIG)
    out = run(tmp_path, prov, [["qr", T, alice.wallet.ride_code(T)], ["info"]])
    assert out["results"][0] == [False, 40, 0, None]   # SYNC_REQUIRED
    assert out["info"]["log_last"] == 0


def test_cut_between_log_and_counters_is_recovered_at_boot(tmp_path, world):
    alice = world.add_rider("alice", 1, max_rides=1)
    prov = world.provision_reader(1001, dict(CONFIG, rules={"passback_window": 0}))
    code = alice.wallet.ride_code(T)
    out = run(tmp_path, prov, [["cut_after_append"], ["qr", T + 1, code]], set_time=True)
    assert out["results"][0][:2] == [True, 0]
    # Reboot on the same flash: the ride is in the log, the counters learn it from there.
    later = alice.wallet.ride_code(T + 31)
    out = run(tmp_path, prov, [["qr", T + 30, code], ["qr", T + 31, later]], t=T + 30)
    assert out["boot_recovered"] == 1
    assert out["results"][0][:2] == [False, 24]    # the code is a duplicate: its counter is known
    assert out["results"][1][:2] == [False, 27]    # QUOTA_RIDES: the one ride was counted
