"""Random sequences of taps (riders, times, repeats, reboots, syncs) through the real clock,
counters and policy, against a reference model written here from docs/decisions.md: on CPython with
hypothesis, and on MicroPython (simulated flash, reboots from the flash image) for sequences
generated here."""
import hashlib
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from mpharness import run_mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mp"))
import policy_replay  # noqa: E402
from policy_fakes import T0  # noqa: E402
from validator import reasons as R  # noqa: E402

# ---- scenarios ------------------------------------------------------------------------------


class Draw:
    """random.Random's randint/choice on top of hypothesis data (so that failures shrink)."""

    def __init__(self, data):
        self.data = data

    def randint(self, a, b):
        return self.data.draw(st.integers(a, b))

    def choice(self, seq):
        return seq[self.randint(0, len(seq) - 1)]


def scenario(rnd, n_events, busy=False):
    """busy: a reader in service (no stale-data limits) and riders with credit, so that most
    taps are rides and the counters' tables fill."""
    c = rnd.choice
    cfg = {"max_code_age": c([30, 60]), "clock_skew": c([0, 30]), "repeat_window": c([0, 5]),
           "passback_window": c([0, 120, 600]), "transfer_window": c([0, 300, 1800]),
           "sync_window": c([0, 3000, 259200]), "deny_max_age": c([0, 4000, 345600]),
           "degraded": c(["reject", "limit"]), "degraded_max_rides": c([1, 2]),
           "degraded_max_amount": c([0, 300]),
           "fares": [[0, 1, 200], [0, 2, 100], [0, 4, 0], [7, 1, 999]]}
    n = rnd.randint(2, 8 if busy else 6)
    # the counters' tables: often smaller than the riders, so that full tables drop entries
    caps = [c([1, 2, 3, 64]), c([1, 2, 64])]
    riders = []
    for i in range(n):
        riders.append([("%032x" % (0xC0FFEE00 + i * 7919)), 1000 + rnd.randint(0, n - 2),
                       T0 + c([-86400, 0, 600]), T0 + c([3000, 86400]), c([0, 2, 4, 100]),
                       c([0, 150, 400, 10 ** 6]), c([1, 1, 2, 4, 9]), c(["qr", "qr", "nfc"])])
        if busy:
            riders[-1][2:6] = [T0 - 86400, T0 + c([3000, 86400, 86400]), 100, 10 ** 6]
    if busy:
        cfg["sync_window"] = cfg["deny_max_age"] = 0
    deny = {"built_at": T0 - c([0, 3000, 350000]),
            "accounts": [a for a in range(1000, 1000 + n) if rnd.randint(0, 9) == 0],
            "creds": [r[0] for r in riders if rnd.randint(0, 9) == 0]}
    # time steps that land on the edges of the configured windows as well as between them
    steps = [0, 1, 4, 5, 6, 30, 4000]
    for w in (cfg["passback_window"], cfg["transfer_window"], cfg["max_code_age"]):
        if w:
            steps += [w - 1, w, w + 1]
    t = T0
    events = [["sync", t]] if busy or rnd.randint(0, 7) else []
    phone = [rnd.randint(0, 3) for _ in range(n)]
    shown = [None] * n
    last = 0
    for _ in range(n_events):
        t += c(steps)
        k = rnd.randint(0, 19)
        if k < 2:
            events.append(["reboot", t])
            if busy:  # the depot sets the clock again at once
                events.append(["sync", t])
        elif k < 4:
            events.append(["sync", t])
        else:
            i = last if rnd.randint(0, 1) else rnd.randint(0, n - 1)  # often the same rider
            last = i
            if k < 8 and shown[i] is not None:
                counter, code_time = shown[i]          # the same code read again
            elif k < 9:
                counter, code_time = phone[i] - rnd.randint(0, 2), t  # an old counter
            else:
                phone[i] += 1
                age = 0 if riders[i][7] == "nfc" else c([-31, -30, 0, 0, 0, 2, 30, 31, 59, 60, 61])
                counter, code_time = phone[i], t - age
                shown[i] = (counter, code_time)
            events.append(["tap", t, i, max(counter, 0), code_time])
    return {"config": cfg, "caps": caps, "riders": riders, "deny": deny, "events": events}


# ---- the reference model --------------------------------------------------------------------


def make_room(table, cap, t, needed_until, last, key):
    """A new entry for a table of `cap` entries (docs/decisions.md, "Bounds"): if it is full,
    drop the entries no longer needed; if there is none, the one used least recently (ties: the
    lowest key). Returns how many entries still needed were dropped."""
    if len(table) < cap:
        return 0
    gone = [k for k in table if needed_until(k) < t]
    if gone:
        for k in gone:
            del table[k]
        return 0
    del table[min(table, key=lambda k: (last(k), key(k)))]
    return 1


def model(sc, stats=None):
    """Expected [accepted, reason, fare, record] per tap, from the rules as documented.
    `stats`: a dict that gets the number of entries dropped while still needed."""
    cfg = sc["config"]
    cred_cap, account_cap = sc.get("caps", [64, 64])
    account_keep = max(cfg["passback_window"], cfg["transfer_window"], cfg["repeat_window"]) + 600
    cred_keep = 3600
    until = {r[0]: r[3] for r in sc["riders"]}
    evicted_live = 0
    fares = {(line, p): a for line, p, a in cfg["fares"]}
    deny = sc["deny"]
    creds = {}        # cred -> [counter, last accepted, rides, amount]
    accounts = {}     # account -> [last accepted, last paid]
    rejects = []      # (cred, counter, reason, time), newest last, RAM only
    clock_set = False
    synced = 0
    out = []
    for ev in sc["events"]:
        t = ev[1]
        if ev[0] == "reboot":
            clock_set, rejects = False, []
            continue
        if ev[0] == "sync":
            clock_set, synced = True, t
            continue
        cid, acct, vfrom, vuntil, max_rides, max_amount, product, kind = sc["riders"][ev[2]]
        counter, code_time = ev[3], ev[4]
        if not clock_set:
            out.append([0, R.SYNC_REQUIRED, 0, 0])
            continue
        c = creds.get(cid)
        a = accounts.get(acct)
        same_code = c is not None and counter == c[0]
        if same_code and cfg["repeat_window"] and 0 <= t - c[1] <= cfg["repeat_window"]:
            out.append([1, R.ALREADY_VALIDATED, 0, 0])
            continue
        stale = ((cfg["sync_window"] and t - synced > cfg["sync_window"])
                 or (cfg["deny_max_age"] and t - deny["built_at"] > cfg["deny_max_age"]))
        fare = fares.get((0, product))
        paid_recently = (a is not None and a[1] and cfg["transfer_window"]
                         and 0 <= t - a[1] <= cfg["transfer_window"])
        if fare and paid_recently:
            fare = 0
        rides = c[2] if c else 0
        amount = c[3] if c else 0
        rules = [
            (stale and cfg["degraded"] == "reject", R.SYNC_REQUIRED),
            (t + cfg["clock_skew"] < vfrom, R.CRED_NOT_YET_VALID),
            (t > vuntil, R.CRED_EXPIRED),
            (t - code_time > cfg["max_code_age"], R.CODE_EXPIRED),
            (code_time - t > cfg["clock_skew"], R.CODE_FROM_FUTURE),
            (c is not None and counter == c[0], R.DUPLICATED),
            (c is not None and counter < c[0], R.COUNTER_ROLLBACK),
            (a is not None and cfg["repeat_window"] and 0 <= t - a[0] <= cfg["repeat_window"],
             R.ALREADY_VALIDATED),  # a fresh code of the same account: the same tap
            (a is not None and cfg["passback_window"] and t - a[0] <= cfg["passback_window"],
             R.PASSBACK),
            (acct in deny["accounts"], R.DENIED_ACCOUNT),
            (cid in deny["creds"], R.DENIED_CREDENTIAL),
            (fare is None, R.NO_FARE),
            (fare is not None and rides + 1 > max_rides, R.QUOTA_RIDES),
            (fare is not None and amount + fare > max_amount, R.QUOTA_AMOUNT),
            (stale and (rides + 1 > cfg["degraded_max_rides"] or (
                cfg["degraded_max_amount"] and amount + (fare or 0) > cfg["degraded_max_amount"])),
             R.SYNC_REQUIRED),
        ]
        reason = next((r for broken, r in rules if broken), R.OK)
        if reason == R.ALREADY_VALIDATED:
            out.append([1, R.ALREADY_VALIDATED, 0, 0])
            continue
        if reason != R.OK:
            record = not any(x[0] == cid and x[1] == counter and x[2] == reason
                             and 0 <= t - x[3] <= cfg["repeat_window"] for x in rejects)
            out.append([0, reason, 0, 1 if record else 0])
            if record:
                rejects = (rejects + [(cid, counter, reason, t)])[-4:]
            continue
        out.append([1, R.OK, fare, 1])
        if c is None:
            evicted_live += make_room(
                creds, cred_cap, t, lambda k: until[k] + cred_keep, lambda k: creds[k][1],
                lambda k: hashlib.sha256(bytes.fromhex(k)).digest()[:8])
        creds[cid] = [counter, t, rides + 1, amount + fare]
        if a is None:
            evicted_live += make_room(
                accounts, account_cap, t, lambda k: accounts[k][0] + account_keep,
                lambda k: accounts[k][0], lambda k: k.to_bytes(8, "big"))
        accounts[acct] = [t, t if fare > 0 else (a[1] if a else 0)]
    if stats is not None:
        stats["evicted_live"] = evicted_live
    return out


# ---- the tests ------------------------------------------------------------------------------


def test_model_sanity():
    # a hand-checked scenario, so that the model itself is tested
    sc = {"config": {"max_code_age": 60, "clock_skew": 30, "repeat_window": 5,
                     "passback_window": 600, "transfer_window": 0, "sync_window": 259200,
                     "deny_max_age": 0, "degraded": "reject", "degraded_max_rides": 1,
                     "degraded_max_amount": 0, "fares": [[0, 1, 200]]},
          "riders": [["00" * 16, 5, T0 - 10, T0 + 86400, 2, 1000, 1, "qr"]],
          "deny": {"built_at": T0, "accounts": [], "creds": []},
          "events": [["tap", T0, 0, 1, T0], ["sync", T0], ["tap", T0, 0, 1, T0],
                     ["tap", T0 + 4, 0, 2, T0 + 4],
                     ["tap", T0 + 5, 0, 1, T0], ["tap", T0 + 6, 0, 1, T0],
                     ["tap", T0 + 6, 0, 1, T0], ["tap", T0 + 600, 0, 2, T0 + 600],
                     ["tap", T0 + 601, 0, 2, T0 + 600], ["reboot", T0 + 700],
                     ["tap", T0 + 700, 0, 3, T0 + 700], ["sync", T0 + 700],
                     ["tap", T0 + 700, 0, 3, T0 + 700]]}
    assert model(sc) == [[0, R.SYNC_REQUIRED, 0, 0], [1, R.OK, 200, 1],
                         [1, R.ALREADY_VALIDATED, 0, 0],
                         [1, R.ALREADY_VALIDATED, 0, 0], [0, R.DUPLICATED, 0, 1],
                         [0, R.DUPLICATED, 0, 0], [0, R.PASSBACK, 0, 1], [1, R.OK, 200, 1],
                         [0, R.SYNC_REQUIRED, 0, 0], [0, R.PASSBACK, 0, 1]]
    assert policy_replay.run(sc, _fresh_dir()) == model(sc)


def test_model_sanity_full_tables():
    # hand-checked: what a full table forgets, and that entries past their keep time go first
    cfg = {"max_code_age": 60, "clock_skew": 0, "repeat_window": 5, "passback_window": 600,
           "transfer_window": 1800, "sync_window": 0, "deny_max_age": 0, "degraded": "reject",
           "degraded_max_rides": 1, "degraded_max_amount": 0, "fares": [[0, 1, 200]]}
    riders = [["%032x" % i, 5 + i, T0 - 10, T0 + 86400, 100, 10 ** 6, 1, "qr"] for i in range(3)]
    deny = {"built_at": T0, "accounts": [], "creds": []}
    ok = [1, R.OK, 200, 1]
    # accounts (keep: 1800 + 600 s) in a table of 2
    sc = {"config": cfg, "caps": [64, 2], "riders": riders, "deny": deny,
          "events": [["sync", T0], ["tap", T0, 0, 1, T0], ["tap", T0 + 10, 1, 1, T0 + 10],
                     ["tap", T0 + 20, 2, 1, T0 + 20],        # pushes out account 5
                     ["tap", T0 + 30, 0, 2, T0 + 30],        # no pass-back, no transfer
                     ["tap", T0 + 40, 2, 2, T0 + 40],
                     ["tap", T0 + 2500, 1, 2, T0 + 2500],    # 5 and 7 are past their keep
                     ["tap", T0 + 2510, 0, 3, T0 + 2510]]}
    stats = {}
    assert model(sc, stats) == [ok, ok, ok, ok, [0, R.PASSBACK, 0, 1], ok, ok]
    assert stats["evicted_live"] == 2
    assert check(sc, _fresh_dir()) == 2
    # credentials in a table of 1: an evicted one gets its max_rides (1) again
    riders[0][4] = 1
    sc = {"config": cfg, "caps": [1, 64], "riders": riders, "deny": deny,
          "events": [["sync", T0], ["tap", T0, 0, 1, T0], ["tap", T0 + 700, 0, 2, T0 + 700],
                     ["tap", T0 + 710, 1, 1, T0 + 710], ["tap", T0 + 1400, 0, 3, T0 + 1400]]}
    assert model(sc, stats) == [ok, [0, R.QUOTA_RIDES, 0, 1], ok, [1, R.OK, 0, 1]]  # transfer
    assert stats["evicted_live"] == 2
    assert check(sc, _fresh_dir()) == 2


def check(sc, directory):
    """Run the scenario through the firmware; the decisions and the number of entries dropped
    while still needed must be the model's. Returns that number."""
    got_stats, want_stats = {}, {}
    got = policy_replay.run(sc, directory, stats=got_stats)
    assert got == model(sc, want_stats)
    assert got_stats["evicted_live"] == want_stats["evicted_live"]
    return want_stats["evicted_live"]


_dirs = []


@pytest.fixture(scope="module", autouse=True)
def _remove_fresh_dirs():
    # hypothesis runs an example many times in one test call: a directory per example, not per test
    yield
    while _dirs:
        shutil.rmtree(_dirs.pop(), ignore_errors=True)


def _fresh_dir():
    d = tempfile.mkdtemp(prefix="policy-model-")
    _dirs.append(d)
    return d


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_tap_sequences_match_the_model(data):
    sc = scenario(Draw(data), data.draw(st.integers(1, 60)), busy=data.draw(st.booleans()))
    event("tables too small: %s" % ("yes" if check(sc, _fresh_dir()) else "no"))


def test_many_seeded_sequences_match_the_model(tmp_path):
    evicting = 0
    for seed in range(1000):
        sc = scenario(random.Random(1000 + seed), 40)
        state = tmp_path / ("s%d" % seed)
        state.mkdir()
        try:
            evicting += check(sc, str(state)) > 0
        except AssertionError:
            raise AssertionError("seed %d" % (1000 + seed))
    assert evicting >= 30  # (43) sequences where a full table dropped an entry still needed


def test_busy_readers_with_small_tables_match_the_model(tmp_path):
    evicting = 0
    for seed in range(150):
        sc = scenario(random.Random(5000 + seed), 60, busy=True)
        state = tmp_path / ("s%d" % seed)
        state.mkdir()
        try:
            evicting += check(sc, str(state)) > 0
        except AssertionError:
            raise AssertionError("seed %d" % (5000 + seed))
    assert evicting >= 50  # (68 of these 150)


def test_generated_sequences_on_micropython_match_the_model(tmp_path):
    reasons_seen = set()
    evicted = 0
    for seed in range(6):
        sc = scenario(random.Random(seed), 150, busy=seed >= 4)
        want_stats = {}
        want = model(sc, want_stats)
        reasons_seen |= {w[1] for w in want}
        path = tmp_path / ("scenario%d.json" % seed)
        path.write_text(json.dumps(sc))
        out = run_mp("import policy_replay\npolicy_replay.main(%r)\n" % str(path), heap="110k")
        lines = [line.split() for line in out.split("\n") if line.strip()]
        assert lines[-1][0] == "evicted_live"
        assert int(lines[-1][1]) == want_stats["evicted_live"], "seed %d" % seed
        got = [[int(x) for x in line] for line in lines[:-1]]
        assert got == want, "seed %d" % seed
        evicted += want_stats["evicted_live"]
        # and the CPython run agrees too
        state = tmp_path / ("state%d" % seed)
        state.mkdir()
        assert check(sc, str(state)) == want_stats["evicted_live"]
    assert len(reasons_seen) >= 8, sorted(R.name(r) for r in reasons_seen)
    assert evicted > 0


U64 = (1 << 64) - 1
u64 = st.integers(0, U64)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=16, max_size=16) | st.sampled_from([b"A" * 16]),
                          u64 | st.just(7), u64,
                          u64 | st.integers(0, 10),                     # small: "age" below
                          u64 | st.just(0), u64 | st.just(U64),
                          st.integers(0, (1 << 32) - 1), u64, st.integers(0, (1 << 32) - 1),
                          st.sampled_from(["qr", "nfc"]), st.integers(0, 700)),
                min_size=1, max_size=12))
def test_any_token_field_values_decide_and_commit_without_error(taps):
    """Every field at any value the token parser lets through (docs/tokens.md bounds): a decision
    with a known reason, counters that store and reload."""
    from policy_fakes import DenyList, Source, Token
    from validator import clock, config, policy, riderstate
    d = _fresh_dir()
    cfg = config.Config()
    cfg.fares = {0: {p: 100 for p in range(5)}}
    src = Source(T0)
    clk = clock.Clock(src, d)
    clk.set(T0)
    state = riderstate.RiderState(d, 4, 4, 4)  # small: full tables drop entries
    pol = policy.Policy(cfg, state, DenyList(), clk)
    known = set(R.MESSAGES)
    accepted = []
    for cid, acct, counter, ctime, vfrom, vuntil, rides, amount, product, kind, dt in taps:
        src.t += dt
        if ctime <= 10:
            ctime = src.t - ctime
        tok = Token(cred_id=cid, account=acct, counter=counter, time=ctime, valid_from=vfrom,
                    valid_until=vuntil, max_rides=rides, max_amount=amount, product=product % 7,
                    kind=kind)
        dec = pol.decide(tok, clk.now())
        assert dec.reason in known and dec.message == R.message(dec.reason)
        assert pol.commit(dec, 1) is True
        accepted.append(dec.reason == R.OK)
    before = (bytes(state.creds.mv[:state.creds.n * state.creds.r]),
              bytes(state.accounts.mv[:state.accounts.n * state.accounts.r]))
    again = riderstate.RiderState(d, 4, 4, 4)
    assert (bytes(again.creds.mv[:again.creds.n * again.creds.r]),
            bytes(again.accounts.mv[:again.accounts.n * again.accounts.r])) == before
    event("accepted taps: %s" % ("some" if any(accepted) else "none"))
