# Plays a tap scenario (a JSON-friendly dict made by tests/firmware/test_policy_model.py) through the real
# clock, counters and policy, on CPython (a directory) or MicroPython (simulated flash), and
# returns one (accepted, reason, fare, record) per tap. Reboots rebuild everything from storage.
#
# scenario = {"config": {setting: value, "fares": [[line, product, amount], ...]},
#             "caps": [max_credentials, max_accounts] (optional: 64 each),
#             "riders": [[cred_hex, account, valid_from, valid_until, max_rides, max_amount,
#                         product, kind], ...],
#             "deny": {"built_at": t, "accounts": [...], "creds": [cred_hex, ...]},
#             "events": [["tap", t, rider, counter, code_time] | ["reboot", t] | ["sync", t]]}
import gc
import sys

from validator import riderstate, clock, config, policy  # riderstate first: see policy_fakes
from policy_fakes import DenyList, Source, Token

MICROPYTHON = sys.implementation.name == "micropython"


def make_config(d):
    cfg = config.Config()
    for k in d:
        if k != "fares":
            setattr(cfg, k, d[k])
    for line, product, amount in d["fares"]:
        cfg.fares.setdefault(line, {})[product] = amount
    return cfg


class Reader:
    def __init__(self, sc, directory, remount=None):
        self.sc = sc
        self.dir = directory
        self.remount = remount
        self.cfg = make_config(sc["config"])
        dn = sc["deny"]
        self.dl = DenyList(dn["built_at"], dn["accounts"],
                           [bytes.fromhex(c) for c in dn["creds"]])
        self.src = Source(0)
        self.seq = 0
        self.start()

    def start(self):
        caps = self.sc.get("caps", [64, 64])
        self.state = riderstate.RiderState(self.dir, caps[0], caps[1], 8)
        self.clock = clock.Clock(self.src, self.dir)
        self.policy = policy.Policy(self.cfg, self.state, self.dl, self.clock)

    def event(self, ev):
        self.src.t = ev[1]
        if ev[0] == "reboot":
            self.state.close()
            self.state = self.clock = self.policy = None  # as after a real reboot: all gone
            if MICROPYTHON:
                gc.collect()  # (slow and needless on CPython)
            if self.remount:
                self.remount()
            self.start()
            return None
        if ev[0] == "sync":
            assert self.clock.set(ev[1]) == clock.OK
            return None
        r = self.sc["riders"][ev[2]]
        tok = Token(cred_id=bytes.fromhex(r[0]), account=r[1], counter=ev[3], time=ev[4],
                    valid_from=r[2], valid_until=r[3], max_rides=r[4], max_amount=r[5],
                    product=r[6], kind=r[7])
        d = self.policy.decide(tok, self.clock.now())
        if d.record:
            self.seq += 1  # the trip log append
            self.policy.commit(d, self.seq)
        else:
            self.policy.commit(d)
        return [1 if d.accepted else 0, d.reason, d.fare, 1 if d.record else 0]


def run(sc, directory, remount=None, stats=None):
    """One [accepted, reason, fare, record] per tap; `stats` (a dict) gets the counters' stats()
    at the end."""
    rd = Reader(sc, directory, remount)
    out = []
    for ev in sc["events"]:
        o = rd.event(ev)
        if o is not None:
            out.append(o)
    if stats is not None:
        stats.update(rd.state.stats())
    return out


def main(path):
    # MicroPython: the scenario file in, one line per tap out, state on a FlashDev.
    import json
    import flashdev
    with open(path) as f:
        sc = json.load(f)
    box = [flashdev.FlashDev(32)]
    flashdev.mount(box[0], "/s")

    def remount():
        flashdev.umount("/s")
        box[0] = box[0].revive()
        flashdev.mount(box[0], "/s", format_if_needed=False)

    stats = {}
    for o in run(sc, "/s", remount, stats):
        print("%d %d %d %d" % tuple(o))
    print("evicted_live %d" % stats["evicted_live"])
    flashdev.umount("/s")
    box[0].close()
