"""Clearing against a small reference model (hypothesis), on the real PostgreSQL: random days of
several readers and riders with screenshots shown on other buses, riders past their offline
limits, free transfers, refusals and tampered records; and idempotence: a run cut at random
points and run again, or killed, ends with the same tables as a run that was not cut."""
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clearingkit import T0, IssuerKey, Operator, Reader, Rider, put
from conftest import new_central
from host_tools.backoffice import clearing, clearing_schema

DAY = clearing.parse_day("2026-11-24")
LINES = {1201: 12, 1202: 15, 1203: 12}
FARES = {12: {1: 200, 2: 100}, 15: {1: 300, 2: 150}}
TRANSFER = {12: 0, 15: 1800}
WINDOW = 60   # the sharing window (the store's default)
TAMPER = ("fare", "account", "counter", "nfc_elsewhere")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("clearing-inputs")
    op = Operator(d)
    iss = IssuerKey(7)
    files = ([op.keyring([iss.entry()], 1)],
             [op.config(12, {"1": 200, "2": 100}), op.config(15, {"1": 300, "2": 150},
                                                             transfer_window=1800)])
    return op, iss, files


def fresh_store(pg_server, inputs):
    op, iss, (rings, cfgs) = inputs
    db = new_central(pg_server)
    op.load(db.url, rings, cfgs)
    return db


# -- a day and what the model says of it -----------------------------------------------------------

event = st.tuples(st.integers(1, 400),                         # seconds after the previous event
                  st.integers(0, 4),                           # rider
                  st.sampled_from(sorted(LINES)),              # reader
                  st.sampled_from(("qr", "qr", "qr", "nfc", "screenshot", "transfer", "refuse",
                                   "fare", "account", "counter", "nfc_elsewhere", "stranger")))
rider_spec = st.tuples(st.integers(1, 4), st.integers(100, 900), st.sampled_from((1, 2)))


class Rec:
    def __init__(self, reader, seq, t, account, fare, accepted, truth, code=None, cred=None):
        self.reader, self.seq, self.t = reader, seq, t
        self.account, self.fare, self.accepted = account, fare, accepted
        self.truth = truth      # "ok" or why the record does not stand
        self.code = code        # (cred index, counter) of a record that stands
        self.cred = cred


def make_day(iss, specs, events, honest=False):
    """(stored records, model records, riders) of a day from drawn events. `honest`: leave out
    the screenshots a reader would refuse and free transfers that are not due (the tampered
    kinds of event still tamper)."""
    riders = [Rider(iss, 900 + i % 4, product=p, max_rides=mr, max_amount=ma)
              for i, (mr, ma, p) in enumerate(specs)]   # riders 0 and 4 share account 900
    stranger = Rider(IssuerKey(99), 999)
    readers = {rid: Reader(rid, line) for rid, line in LINES.items()}
    last = {}                   # rider -> (raw, counter, reader, time) of its last genuine QR code
    stored, model = [], []
    t = T0
    for dt, ri, rid, action in events:
        t += dt
        rd, r = readers[rid], riders[ri]
        line = rd.line
        fare = FARES[line][r.product]
        truth, code, acct, cred = "ok", None, r.account, ri
        if action == "screenshot":
            if ri not in last or last[ri][2] == rid:
                continue
            raw, ctr, _, made = last[ri]
            if honest and t - made > 60:
                continue
            stored.append(rd.record(t, "qr", raw, r.account, ctr, r.cred_id, fare))
            code = (ri, ctr)
            if t - made > 60:           # a reader refuses a code this old (max_code_age)
                truth, code = "time_mismatch", None
        elif action in ("qr", "nfc"):
            rec, (raw, ctr) = rd.tap(r, t, fare, kind=action)
            stored.append(rec)
            code = (ri, ctr)
            if action == "qr":
                last[ri] = (raw, ctr, rid, t)
        elif action == "transfer":      # fare 0: stands if the line has free transfers and this
            # reader took a paid ride of the account in the window
            paid_before = any(m.reader == rid and m.account == r.account and m.accepted
                              and m.fare > 0 and t - TRANSFER[line] <= m.t <= t for m in model)
            due = TRANSFER[line] and paid_before
            rec, (raw, ctr) = rd.tap(r, t, 0 if due or not honest else fare)
            stored.append(rec)
            code = (ri, ctr)
            fare = 0 if due or not honest else fare
            if fare == 0 and not due:
                truth, code = "fare_mismatch", None
        elif action == "refuse":
            stored.append(rd.refusal(r, t))
            model.append(Rec(rid, rd.seq, t, r.account, 0, False, "refused"))
            continue
        elif action == "stranger":
            stored.append(rd.tap(stranger, t, fare)[0])
            truth, acct, cred = "unknown_key", stranger.account, None
        else:                            # tampered: the code is genuine, the record is not
            raw, ctr = (r.nfc(1299 if rid != 1299 else 1298, t) if action == "nfc_elsewhere"
                        else r.qr(t))
            kind = "nfc" if action == "nfc_elsewhere" else "qr"
            f, a, c = fare, r.account, ctr
            if action == "fare":
                f = fare + 50
            elif action == "account":
                a = r.account + 1000
            elif action == "counter":
                c = ctr + 7
            stored.append(rd.record(t, kind, raw, a, c, r.cred_id, f))
            truth = {"fare": "fare_mismatch", "account": "account_mismatch",
                     "counter": "counter_mismatch", "nfc_elsewhere": "nfc_other_reader"}[action]
            fare, acct = f, a
        model.append(Rec(rid, rd.seq, t, acct, fare, True, truth, code, cred))
    return stored, model, riders


def expected(model, riders):
    """What clearing must find: verdicts, charges per account, duplicates, exposure, sharing."""
    accepted = [m for m in model if m.accepted]
    suspect = {m.reader for m in accepted if m.truth != "ok"}
    good = [m for m in accepted if m.truth == "ok"]
    order = sorted(good, key=lambda m: (m.reader in suspect, m.t, m.reader, m.seq))
    kept, dup_groups, losers = {}, defaultdict(list), set()
    for m in order:
        dup_groups[m.code].append(m)
        if m.code in kept and m.reader not in suspect:
            losers.add((m.reader, m.seq))
        kept.setdefault(m.code, m)
    charged = [m for m in good if m.reader not in suspect and (m.reader, m.seq) not in losers]
    charges = defaultdict(int)
    for m in charged:
        charges[m.account] += m.fare
    counted = [m for m in good if (m.reader, m.seq) not in losers]
    exposure = {}
    for ci in {m.code[0] for m in counted}:
        r = riders[ci]
        rides = sorted((m for m in counted if m.code[0] == ci), key=lambda m: (m.t, m.reader, m.seq))
        over = [m for k, m in enumerate(rides, 1)
                if k > r.max_rides or sum(x.fare for x in rides[:k]) > r.max_amount]
        if over:
            exposure[r.cred_id] = (len(over), sum(m.fare for m in over))
    sharing = set()
    for a in counted:
        for b in counted:
            if (a.account == b.account and a.reader != b.reader and a.code != b.code
                    and (a.t, a.reader, a.seq) < (b.t, b.reader, b.seq) and b.t - a.t <= WINDOW):
                sharing.add(((a.reader, a.seq), (b.reader, b.seq)))
    dups = {(riders[c[0]].cred_id, c[1]): len(ms) for c, ms in dup_groups.items() if len(ms) > 1}
    verdicts = {(m.reader, m.seq): m.truth for m in accepted}
    return dict(verdicts=verdicts, suspects=suspect, charges={a: v for a, v in charges.items()
                                                                 if v > 0},
                duplicates=dups, exposure=exposure, sharing=sharing)


def found(db):
    return dict(
        verdicts={(r, s): v for r, s, v in db.q("SELECT reader_id, seq, verdict FROM clearing_rides")},
        suspects={r for r, in db.q("SELECT reader_id FROM clearing_suspects")},
        charges={int(a): m for a, m in db.q("SELECT account, amount FROM clearing_charges")},
        duplicates={(bytes(c), int(n)): k for c, n, k in db.q(
            "SELECT cred_id, counter, records FROM clearing_duplicates")},
        exposure={bytes(c): (o, a) for c, o, a in db.q(
            "SELECT cred_id, over_rides, over_amount FROM clearing_exposure")},
        sharing={((ra, sa), (rb, sb)) for ra, sa, rb, sb in db.q(
            "SELECT reader_a, seq_a, reader_b, seq_b FROM clearing_sharing")})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(rider_spec, min_size=5, max_size=5),
       events=st.lists(event, min_size=1, max_size=30))
# (found by hypothesis: one code accepted by two readers that are both suspect, so every record
# of it is held; it is a duplicate all the same)
@example(specs=[(1, 100, 1)] * 5, events=[(1, 0, 1201, "qr"), (1, 0, 1201, "transfer"),
                                          (1, 0, 1202, "screenshot"), (1, 0, 1202, "fare")])
def test_clearing_agrees_with_the_model(pg_server, inputs, specs, events):
    op, iss, _ = inputs
    stored, model, riders = make_day(iss, specs, events)
    db = fresh_store(pg_server, inputs)
    try:
        with db.connect() as c:
            put(c, stored)
        clearing.run(db.url, DAY, workers=0)
        want, got = expected(model, riders), found(db)
        for what in want:
            assert got[what] == want[what], what
    finally:
        db.drop()


# -- idempotence -----------------------------------------------------------------------------------

def busy_day(iss, n_riders=40, seed=5):
    """A few hundred records with every kind of finding."""
    rnd = random.Random(seed)
    specs = [(rnd.randint(2, 6), rnd.randint(400, 2000), rnd.choice((1, 2)))
             for _ in range(n_riders)]
    kinds = ("qr",) * 12 + ("nfc", "nfc", "screenshot", "screenshot", "transfer", "refuse",
                            "fare", "stranger")
    events = [(rnd.randint(5, 120), rnd.randrange(n_riders), rnd.choice(sorted(LINES)),
               rnd.choice(kinds)) for _ in range(400)]
    # tampering on reader 1203 only: the other readers' rides are charged
    riders_events = [(dt, ri % 5, rid, "qr" if a in ("fare", "stranger") and rid != 1203 else a)
                     for dt, ri, rid, a in events]
    return make_day(iss, specs[:5], riders_events, honest=True)[0]


def snapshot(db):
    """Every clearing table, sorted, without the run log and the times rows were written."""
    out = {}
    with db.connect() as c:
        for t in clearing_schema.TABLES:
            if t in ("clearing_runs",):
                continue
            cols = [r[0] for r in c.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "AND column_name NOT LIKE '%%\\_at' ORDER BY ordinal_position", (t,))]
            out[t] = sorted(map(repr, c.execute("SELECT %s FROM %s" % (", ".join(cols), t))))
    return out


class Cut(Exception):
    pass


def test_a_cut_run_run_again_gives_the_same_tables(pg_server, inputs):
    op, iss, _ = inputs
    stored = busy_day(iss)
    whole, cut = fresh_store(pg_server, inputs), fresh_store(pg_server, inputs)
    try:
        for db in (whole, cut):
            with db.connect() as c:
                put(c, stored)
        clearing.run(whole.url, DAY, workers=0, chunk=40)
        rnd = random.Random(11)
        cuts = []
        for _ in range(8):      # cut at a random hook (a verify chunk committed, a settle step)
            calls, at = [0], rnd.randint(1, 14)

            def hook(step):
                calls[0] += 1
                if calls[0] == at:
                    raise Cut(step)
            try:
                clearing.run(cut.url, DAY, workers=0, chunk=40, hook=hook)
            except Cut as e:
                cuts.append(e.args[0])
        clearing.run(cut.url, DAY, workers=0, chunk=40)
        assert len(cuts) >= 3 and "verify-chunk" in cuts and any(c.startswith("settle") for c in cuts)
        assert snapshot(cut) == snapshot(whole)
        # and a run with nothing new changes nothing
        before = snapshot(whole)
        assert clearing.run(whole.url, DAY, workers=0).batch_id is None
        assert snapshot(whole) == before
    finally:
        whole.drop()
        cut.drop()


RUNNER = """
import sys
from host_tools.backoffice import clearing
clearing.run(sys.argv[1], clearing.parse_day(sys.argv[2]), workers=2, chunk=25)
"""


def test_a_killed_run_with_workers_run_again_gives_the_same_tables(pg_server, inputs):
    op, iss, _ = inputs
    stored = busy_day(iss, seed=9)
    whole, cut = fresh_store(pg_server, inputs), fresh_store(pg_server, inputs)
    try:
        for db in (whole, cut):
            with db.connect() as c:
                put(c, stored)
        clearing.run(whole.url, DAY, workers=2)
        rnd = random.Random(3)
        for _ in range(2):
            p = subprocess.Popen([sys.executable, "-c", RUNNER, cut.url, DAY.isoformat()],
                                 start_new_session=True, stderr=subprocess.DEVNULL)
            time.sleep(rnd.uniform(0.8, 2.0))
            os.killpg(p.pid, signal.SIGKILL)   # the run and its workers
            p.wait()
        subprocess.run([sys.executable, "-c", RUNNER, cut.url, DAY.isoformat()], check=True,
                       cwd=Path(__file__).resolve().parents[2])
        assert snapshot(cut) == snapshot(whole)
    finally:
        whole.drop()
        cut.drop()
