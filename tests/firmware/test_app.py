"""The reader's tap path (validator.app.Reader) on MicroPython, without UARTs: the order
decide -> log -> commit, repeats, replays, and a power cut between the log and the counters."""
import json

import pytest

from host_tools.sim import simreader, simworld
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
    elif step[0] == "nfc":
        # a phone or card (anticollision id step[2]) whose answer is not ours
        b.t = step[1]
        res = r.tap_nfc(lambda apdu: b"\\x00\\x90\\x00", bytes.fromhex(step[2]))
        out["results"].append([res.accepted, res.reason, res.fare, res.seq])
    elif step[0] == "deny_read_error":
        def unreadable(*args):
            raise OSError(5)  # EIO: the deny list's flash cannot be read
        r.denylist.denied_account = unreadable
    elif step[0] == "deny_readable":
        del r.denylist.denied_account
    elif step[0] == "status":
        # the loop's housekeeping once the decision's hold is over (this is about what is
        # shown, not when): what the display rests on now
        r.shown_at = None
        b.t = step[1]
        n = len(b.shown)
        app._watch_status(r)
        out.setdefault("shown", []).append([x[0] for x in b.shown[n:]])
    elif step[0] == "qr_loop":
        # a tap as the loop runs it: decision shown, event reported
        b.t = step[1]
        res = r.tap_qr(step[2])
        app._done(r, res)
        out["results"].append([res.accepted, res.reason, res.fare, res.seq])
    elif step[0] == "set_time":
        out["set_time"] = r.set_time(step[1])
    elif step[0] == "info":
        i = r.info()
        out["info"] = {k: i[k] for k in ("log_last", "ack", "deny_version", "time",
                                         "log_state", "log_error", "counters", "riders",
                                         "file_errors", "config_version", "keyring_version")}
    elif step[0] == "install":
        # the depot pushes a file: it arrives in the staging folder, then install()
        with open(step[2], "rb") as f:
            data = f.read()
        with open(r.staging_dir + "/push.fvs", "wb") as f:
            f.write(data)
        out.setdefault("installs", []).append(r.install(step[1], 0, r.staging_dir + "/push.fvs"))
out["warnings"] = [e["warning"] for e in b.events if e.get("ev") == "service"]
out["warning_errors"] = [e.get("error") for e in b.events if e.get("ev") == "service"]
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
    # the counters' tables, for the depot: two riders counted, nothing dropped
    riders = out["info"]["riders"]
    assert (riders["credentials"], riders["accounts"], riders["evicted_live"]) == (2, 2, 0)


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


def test_a_deny_list_read_error_refuses_the_tap_and_the_reader_goes_on(tmp_path, world):
    alice = world.add_rider("alice", 1)
    bob = world.add_rider("bob", 2)
    prov = world.provision_reader(1001, CONFIG)
    out = run(tmp_path, prov, [
        ["deny_read_error"],
        ["qr", T + 1, alice.wallet.ride_code(T)],
        ["deny_readable"],
        ["qr", T + 2, bob.wallet.ride_code(T + 2)],
        ["info"],
    ], set_time=True)
    assert out["results"][0] == [False, 42, 0, 1]   # READER_ERROR, logged, nothing charged
    assert out["results"][1] == [True, 0, 200, 2]   # the next rider rides: no reboot
    assert out["info"]["counters"]["errors"] == 1


def test_refused_nfc_taps_are_logged_once_per_phone_not_once_for_all(tmp_path, world):
    prov = world.provision_reader(1001, CONFIG)
    out = run(tmp_path, prov, [
        ["nfc", T + 1, "04a1b2c3"],
        ["nfc", T + 2, "04a1b2c3"],     # the same phone back within seconds: not logged again
        ["nfc", T + 2, "08d4e5f6"],     # another phone: its own record
        ["info"],
    ], set_time=True)
    reasons = [r[1] for r in out["results"]]
    assert reasons == [10, 10, 10]      # MALFORMED: not our application's answer
    assert [r[3] for r in out["results"]] == [1, None, 2]
    assert out["info"]["log_last"] == 2


def test_the_display_goes_back_to_idle_once_the_clock_is_set(tmp_path, world):
    alice = world.add_rider("alice", 1)
    prov = world.provision_reader(1001, CONFIG)
    out = run(tmp_path, prov, [
        ["status", T],
        ["qr_loop", T + 1, alice.wallet.ride_code(T)],   # clock unset: refused, "service"
        ["status", T + 1],
        ["set_time", T + 2],
        ["status", T + 2],
        ["qr_loop", T + 3, alice.wallet.ride_code(T + 3)],
        ["status", T + 4],
    ])
    assert out["results"][0][1] == 40 and out["results"][1][:2] == [True, 0]
    assert out["set_time"] == "OK"
    # out of service until the depot set the time, then idle again (an ESP32 board's LED
    # would otherwise stay on the amber it last rested on); an accepted tap changes nothing
    assert out["shown"] == [["service"], ["service"], ["idle"], []]


def test_a_nearly_full_log_warns_without_putting_the_reader_out_of_service(tmp_path, world):
    rider = world.add_rider("r", 1, max_rides=100, max_amount=100000)
    # (never synced: degraded mode, so its per-rider limit is raised for one rider's many rides)
    prov = world.provision_reader(1001, dict(CONFIG, rules={"passback_window": 0},
                                             degraded={"mode": "limit", "max_rides": 100}))
    steps = []
    for i in range(40):
        steps += [["qr_loop", T + 60 * i, rider.wallet.ride_code(T + 60 * i)],
                  ["status", T + 60 * i]]
    args = {"flash": str(tmp_path / "flash.img"), "log": str(tmp_path / "log.img"),
            "prov": str(prov), "t": T, "steps": steps, "set_time": True}
    (tmp_path / "args.json").write_text(json.dumps(args))
    tree = compiled_tree()
    script = SCRIPT.replace("b = BenchBoard(args[\"flash\"], args[\"log\"], t=args[\"t\"])",
                            "b = BenchBoard(args[\"flash\"], args[\"log\"], t=args[\"t\"], "
                            "log_blocks=4)")
    assert script != SCRIPT
    out = json.loads(run_mp(script, heap=simreader.heap_for(tree[0]),
                            args=[tmp_path / "args.json"], path=tree).strip().splitlines()[-1])
    reasons = [r[1] for r in out["results"]]
    assert 41 in reasons, (reasons, out["warnings"])
    first_full = reasons.index(41)                          # LOG_FULL
    assert set(reasons[:first_full]) == {0}
    assert set(reasons[first_full:]) == {41}
    # the display: idle (ready), idle again with the warning on the text when the log became
    # nearly full (rides still accepted), out of service from the ride that filled it
    shown = out["shown"]
    assert shown[:first_full - 1].count(["idle"]) == 2 and ["service"] not in shown[:first_full - 1]
    assert shown[first_full - 1] == ["service"]
    # the warnings came in order, each once: nearly full while rides were accepted, then full
    assert out["warnings"] == ["LOG_NEARLY_FULL", "LOG_FULL"]


def test_a_given_file_that_does_not_load_is_a_service_warning_not_a_silent_default(tmp_path,
                                                                                 world):
    """A configuration or key ring on the reader that does not load (another kind of file, a
    damaged one, another operator's) must not leave the reader on defaults without a word: it
    shows a service warning, the event and INFO say why, and a good file pushed later ends it."""
    alice = world.add_rider("alice", 1)
    prov = world.provision_reader(1001, CONFIG)
    good_ring, good_config = tmp_path / "ring.fvs", tmp_path / "config.fvs"
    good_ring.write_bytes((prov / "keyring.fvs").read_bytes())
    good_config.write_bytes((prov / "config.fvs").read_bytes())
    (prov / "config.fvs").write_bytes(good_ring.read_bytes())   # the key ring given as config
    damaged = bytearray(good_ring.read_bytes())
    damaged[25] ^= 1                                              # a bit of its body flipped
    (prov / "keyring.fvs").write_bytes(bytes(damaged))
    out = run(tmp_path, prov, [
        ["status", T + 1], ["info"],
        ["qr", T + 2, alice.wallet.ride_code(T + 2)],
        ["install", "keyring", str(good_ring)], ["status", T + 3],
        ["install", "config", str(good_config)], ["status", T + 4],
        ["qr", T + 5, alice.wallet.ride_code(T + 5)]], set_time=True, t=T + 1)
    assert out["info"]["file_errors"] == {"config": "WRONG_KIND", "keyring": "BAD_SIGNATURE"}
    assert out["info"]["config_version"] == 0 and out["info"]["keyring_version"] == 0
    assert out["results"][0][0] is False                      # no issuer keys: refused
    assert out["installs"] == ["OK", "OK"]
    # out of service, saying why: the key ring first, then the configuration, then ready
    assert out["shown"] == [["service"], ["service"], ["idle"]]
    assert out["warnings"] == ["KEYRING_NOT_LOADED", "CONFIG_NOT_LOADED"]
    assert out["warning_errors"] == ["BAD_SIGNATURE", "WRONG_KIND"]
    assert out["results"][1][:3] == [True, 0, 200]            # and then it works


def test_another_readers_log_keeps_the_reader_up_and_out_of_service(tmp_path, world):
    alice = world.add_rider("alice", 1)
    first = world.provision_reader(1001, CONFIG)
    run(tmp_path, first, [["qr", T + 1, alice.wallet.ride_code(T)]], set_time=True)
    # the board is re-provisioned as another reader; its trip log partition was not wiped
    (tmp_path / "flash.img").unlink()
    second = world.provision_reader(1002, CONFIG)
    out = run(tmp_path, second, [["status", T + 2], ["qr", T + 3, alice.wallet.ride_code(T + 3)],
                                 ["info"]], set_time=True, t=T + 2)
    assert out["shown"] == [["service"]]
    assert out["results"][0] == [False, 42, 0, None]        # READER_ERROR, nothing charged
    assert out["info"]["log_state"] == "error" and "1001" in out["info"]["log_error"]
    assert out["warnings"] == ["LOG_ERROR"]


LOOP_SCRIPT = """
import sys, json
import asyncio
from app_bench import BenchBoard
from validator import app
app.NFC_POLL_MS = 0   # the loop's pacing is not under test here
app.NFC_RETRY_MS = 0
args = json.loads(open(sys.argv[1]).read())
b = BenchBoard(args["flash"], args["log"], t=args["t"])
b.provision(args["prov"])
r = app.Reader(b)
r.set_time(args["t"])


class Target:
    def __init__(self, uid, iso):
        self.uid = bytes.fromhex(uid)
        self.iso14443_4 = iso


class DeadThenAlive:
    # a front end that does not answer its first two starts, then sees what the test lays out
    def __init__(self, fields):
        self.fields = fields
        self.begins = 0
        self.started = False

    def begin(self):
        self.begins += 1
        if self.begins <= 2:
            raise OSError("no answer from the PN532")
        self.started = True

    def poll(self):
        if not self.started:
            raise OSError("not started")
        f = self.fields.pop(0) if self.fields else None
        return Target(f[0], f[1]) if f else None

    def exchange(self, apdu):
        return b"\\x00\\x90\\x00"


nfc = DeadThenAlive(args["fields"])


async def main():
    t = asyncio.create_task(app._nfc_task(r, nfc))
    for _ in range(200):
        await asyncio.sleep_ms(0)
        if nfc.started and not nfc.fields:
            break
    for _ in range(5):
        await asyncio.sleep_ms(0)
    t.cancel()

asyncio.run(main())
print(json.dumps({"begins": nfc.begins, "events": b.events, "errors": r.counters["errors"],
                  "log_last": r.log.last_seq}))
"""


def test_a_dead_nfc_front_end_is_retried_and_foreign_cards_are_refused_once(tmp_path, world):
    prov = world.provision_reader(1001, CONFIG)
    fields = [["04a1b2c3", False], ["04a1b2c3", False], None, ["08d4e5f6", True]]
    args = {"flash": str(tmp_path / "flash.img"), "log": str(tmp_path / "log.img"),
            "prov": str(prov), "t": T, "fields": fields}
    (tmp_path / "args.json").write_text(json.dumps(args))
    tree = compiled_tree()
    out = json.loads(run_mp(LOOP_SCRIPT, heap=simreader.heap_for(tree[0]),
                            args=[tmp_path / "args.json"], path=tree).strip().splitlines()[-1])
    assert out["begins"] == 3
    kinds = [e["ev"] for e in out["events"]]
    # the outage is reported once (not per retry), and its end
    assert kinds.count("fault") == 1 and kinds.count("nfc") == 1
    assert kinds.index("fault") < kinds.index("nfc") < kinds.index("tap")
    taps = [(e["name"], e["seq"]) for e in out["events"] if e["ev"] == "tap"]
    # the MIFARE-like card is refused once while it stays in the field; the phone is answered
    assert taps == [("UNSUPPORTED", 1), ("MALFORMED", 2)]
    assert out["errors"] == 1 and out["log_last"] == 2
