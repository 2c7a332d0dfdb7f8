"""`fare sim` (`make sim`): a simulated day on two bus lines, end to end, ending in the back office.

Creates issuer and operator keys, provisions two readers (the real firmware on the MicroPython
binary, unix_sim board, littlefs image as flash) on lines 12 and 15, makes a few hundred riders
through the wallet (some denied, some expired, some over their offline limit, some on NFC, some
replaying a code or passing it back), plays the day's taps through the QR and PN532 emulators with
the clock moving, cuts the power of the first bus once mid-route, and syncs both readers into the
depot database over the serial protocol. Then the back office (host_tools/sim/simbackoffice.py):
the records go up to an embedded central PostgreSQL, are cleared, charged, and a payment provider
pays all but a few; the next deny list goes back to both readers at the next morning's sync, and
the first taps of the accounts that did not pay are refused. Four riders exercise the loop: one
shows the same screenshot on both buses, one uses the whole offline limit on each bus, one does
not pay, one lends the app to a friend on the other bus.

The summary is checked against the depot database and the central store; the run exits non-zero
if they disagree with what the readers decided, if any rider did not get the decision its kind
should, if clearing did not find what each of the four riders did, or if the power cut did not
happen.

--out must be a new or empty directory, or one an earlier run wrote (it holds a .fare-sim
marker); only that run's outputs are deleted."""
import argparse
import csv
import random
import shutil
import statistics
import time
import types
from collections import Counter
from pathlib import Path

from host_tools.common import esp32figures
from host_tools.common.clierrors import UserError, check_folder
from host_tools.depot import depotconfig, depotdb, readersync
from host_tools.sim import simbackoffice, simbus
from host_tools.common.fw import validator  # noqa: F401  (puts the firmware's modules on the path)
from validator import reasons

UTC_OFFSET = 8 * 3600           # the line's local time (UTC+8)
# 2026-11-24 06:00 at UTC+8 = 2026-11-23 22:00 UTC: two UTC calendar days, one service day
DAY_START = 1795471200
SERVICE_DAY = "2026-11-24"
NEXT_MORNING = DAY_START + 86400   # 06:00 the next day: the first taps with the new deny list
# The operator's service day, as the depot configuration the run writes says it
# (host_tools/depot/depotconfig.py): its time zone, and a day that starts at 04:00 local time
TIME_ZONE = "+08:00"
SERVICE_DAY_STARTS = 4
DEPOT_CONFIG = """# The depot's settings (written by `fare sim`; see examples/depot.toml)
[service_day]
time_zone = "%s"
starts_at = %d
""" % (TIME_ZONE, SERVICE_DAY_STARTS)
LINE = 12
READER_ID = 1201                # bus A, line 12 (its power is cut mid-route)
READERS = {1201: 12, 1202: 15}  # reader id -> line
MAX_CODE_AGE = 60               # s; the rules below, also used to say what each tap should get
REPEAT_WINDOW = 5
PASSBACK_WINDOW = 600
FARES = {"12": {"adult": 200, "student": 100, "senior": 50, "free": 0},
         "15": {"adult": 300, "student": 150, "senior": 80, "free": 0}}


def config(line):
    """The configuration of a reader on `line` (one fare table for the network)."""
    return {
        "line": line, "stop": 0,
        "rules": {"max_code_age": "%ds" % MAX_CODE_AGE, "clock_skew": "30s",
                  "repeat_window": "%ds" % REPEAT_WINDOW,
                  "passback_window": "%ds" % PASSBACK_WINDOW, "transfer_window": 0},
        "degraded": {"mode": "limit", "max_rides": 2},
        "fares": FARES,
    }


CONFIG = config(LINE)
PRODUCTS = [(1, 70), (2, 15), (3, 10), (4, 5)]   # (product, weight): adult, student, senior, free
PRODUCT_NAMES = {1: "adult", 2: "student", 3: "senior", 4: "free"}
# Rider kinds and their share of the riders; each rides on one bus, its home bus
KINDS = [("qr", 52), ("nfc", 20), ("denied", 5), ("expired", 5), ("limit", 5), ("replay", 4),
         ("passback", 4), ("stale", 3), ("double_read", 2)]
# Riders of each kind a day needs for every expectation to be exercised (two denied: one by
# account, one by credential); a day with fewer riders than this gets what it draws.
KIND_MINIMUM = dict({k: 1 for k, _ in KINDS}, denied=2)
# A rider's tap after the first, and how long after it (nominal; a busy door pushes taps later)
FOLLOW_UPS = {"replay": 30, "passback": 240, "double_read": 2}
# The riders of the back-office loop, on both buses, between the morning and evening peaks:
# (kind, account, [(seconds after DAY_START, reader, how, expected reason)])
LOOP_RIDERS = [
    ("screenshot", 200001, [(5 * 3600, 1201, "qr", "OK"),            # a friend shows the
                            (5 * 3600 + 20, 1202, "screenshot", "OK")]),   # same code on bus B
    ("limit_each_bus", 200002, [(int(4.5 * 3600), 1201, "qr", "OK"), (7 * 3600, 1201, "qr", "OK"),
                                (int(7.5 * 3600), 1202, "qr", "OK"), (9 * 3600, 1202, "qr", "OK"),
                                (int(9.5 * 3600), 1202, "qr", "QUOTA_RIDES")]),
    ("payment_fails", 200003, [(int(5.5 * 3600), 1201, "qr", "OK"), (8 * 3600, 1201, "nfc", "OK")]),
    ("sharer", 200004, [(6 * 3600, 1201, "qr", "OK"),                 # the app lent to a friend
                        (6 * 3600 + 30, 1202, "qr", "OK")]),          # on the other bus
]
LOOP_MAX_RIDES = {"limit_each_bus": 2}

OUT_MARKER = ".fare-sim"
# Everything a run writes into --out (besides the marker); a later run deletes only these.
OUT_NAMES = ("world", "reader", "reader-1202", "depot.sqlite", "depot.sqlite-wal",
             "depot.sqlite-shm", "depot.sqlite-journal", "depot.sqlite.writer", "depot.toml",
             "trips.csv", "central", "backoffice")
EXAMPLES = 5    # mismatched taps shown in the summary


class Tap:
    def __init__(self, t, rider, how, expect=None, bus=READER_ID):
        self.t = t
        self.rider = rider
        self.how = how          # "qr", "nfc", "replay", "passback", "stale", "double_read",
        self.expect = expect    # "screenshot"; the reason name this tap should get
        self.bus = bus          # reader id

    @property
    def medium(self):
        return "NFC" if self.how == "nfc" else "QR"


def local_time(t):
    return time.strftime("%H:%M:%S", time.gmtime(t + UTC_OFFSET))


def _weighted(rng, pairs):
    return rng.choices([p for p, _ in pairs], [w for _, w in pairs])[0]


def _cover_every_kind(kinds):
    """Turn surplus riders (the last ones first) into the kinds the draw left short of
    KIND_MINIMUM, so that a small day still checks every kind of rider."""
    if len(kinds) < sum(KIND_MINIMUM.values()):
        return
    have = Counter(kinds)
    for kind, least in KIND_MINIMUM.items():
        while have[kind] < least:
            i = max(j for j, k in enumerate(kinds) if have[k] > KIND_MINIMUM[k])
            have[kinds[i]] -= 1
            kinds[i] = kind
            have[kind] += 1


def make_riders(world, n, rng):
    drawn = [(_weighted(rng, KINDS), _weighted(rng, PRODUCTS)) for _ in range(n)]
    kinds = [k for k, _ in drawn]
    _cover_every_kind(kinds)
    buses = sorted(READERS)
    riders = []
    for i, (kind, (_, product)) in enumerate(zip(kinds, drawn)):
        valid_until = DAY_START - 3600 if kind == "expired" else None
        max_rides = 1 if kind == "limit" else 20
        r = world.add_rider("r%03d" % i, 100000 + i, product=product, valid_until=valid_until,
                            max_rides=max_rides, max_amount=20000)
        r.kind = kind
        r.bus = buses[i % len(buses)]
        riders.append(r)
    return riders


def make_loop_riders(world):
    """The four riders of the back-office loop, and their taps."""
    riders, taps = [], []
    for kind, account, plan in LOOP_RIDERS:
        r = world.add_rider(kind, account, product=1, max_rides=LOOP_MAX_RIDES.get(kind, 20),
                            max_amount=20000)
        r.kind = kind
        r.bus = plan[0][1]
        riders.append(r)
        taps += [Tap(DAY_START + dt, r, how, expect, bus) for dt, bus, how, expect in plan]
    return riders, taps


def deny_riders(world, riders):
    """Put the denied riders on the deny list, alternately by account and by credential."""
    denied = [r for r in riders if r.kind == "denied"]
    for r in denied[::2]:
        r.denied_as = "DENIED_ACCOUNT"
    for r in denied[1::2]:
        r.denied_as = "DENIED_CREDENTIAL"
    world.deny(accounts=[r.account for r in denied[::2]], riders=[r.name for r in denied[1::2]])


def make_day(riders, rng, loop_taps=()):
    """Taps over the day: everyone rides in the morning and most ride back in the evening, on
    their home bus; misbehaving riders do their thing on one of the rides. The loop riders' taps
    come in the quiet hours between."""
    taps = []
    for r in riders:
        how = "nfc" if r.kind == "nfc" else "qr"
        morning = DAY_START + rng.randrange(0, 4 * 3600)
        taps.append(Tap(morning, r, how, bus=r.bus))
        if r.kind in FOLLOW_UPS:
            taps.append(Tap(morning + FOLLOW_UPS[r.kind], r, r.kind, bus=r.bus))
        if r.kind == "stale":
            taps[-1].how = "stale"
        evening = DAY_START + 10 * 3600 + rng.randrange(0, 5 * 3600)
        if r.kind == "limit" or rng.random() < 0.7:
            taps.append(Tap(evening, r, how, bus=r.bus))
    taps.sort(key=lambda tap: tap.t)
    # one door per bus: riders board at least two seconds apart
    last = {}
    for tap in taps:
        if tap.bus in last and tap.t < last[tap.bus] + 2:
            tap.t = last[tap.bus] + 2
        last[tap.bus] = tap.t
    set_expectations(taps)
    taps += list(loop_taps)
    taps.sort(key=lambda tap: tap.t)
    return taps


def set_expectations(taps):
    """The reason each tap should get, from its rider's kind. A follow-up tap (replay, pass-back,
    re-read) is judged by its actual distance from the rider's first tap, which a busy door can
    stretch: a code shown again is the same tap within the repeat window, a duplicate within
    its maximum age and expired after; a fresh code of the same account is the same tap within
    the repeat window and a pass-back within the pass-back window. The power cut falls between
    two taps and the reader keeps its counters through it, so no tap is excused."""
    first = {}
    for tap in taps:                    # in time order
        r = tap.rider
        earlier = first.get(r.name)
        if r.kind == "expired":
            expect = "CRED_EXPIRED"
        elif r.kind == "denied":
            expect = r.denied_as
        elif tap.how == "stale":        # a code made two minutes ago
            expect = "CODE_EXPIRED"
        elif tap.how in ("replay", "double_read"):     # the first tap's code again
            gap = tap.t - earlier.t
            expect = ("ALREADY_VALIDATED" if gap <= REPEAT_WINDOW else
                      "DUPLICATED" if gap <= MAX_CODE_AGE else "CODE_EXPIRED")
        elif tap.how == "passback":     # a fresh code of the account that just rode
            gap = tap.t - earlier.t
            expect = ("ALREADY_VALIDATED" if gap <= REPEAT_WINDOW else
                      "PASSBACK" if gap <= PASSBACK_WINDOW else "OK")
        elif r.kind == "limit" and earlier is not None:
            expect = "QUOTA_RIDES"      # one offline ride allowed, and it was the morning's
        else:
            expect = "OK"
        tap.expect = expect
        first.setdefault(r.name, tap)


def play(bus, tap):
    r = tap.rider
    if tap.how == "nfc":
        return bus.tap_nfc(r)
    if tap.how in ("replay", "screenshot"):   # someone else shows a screenshot of the code
        return bus.tap_qr(r, reuse=True)
    if tap.how == "double_read":  # the scanner reads the held phone again
        return bus.tap_qr(r, reuse=True)
    if tap.how == "stale":        # the phone shows a code it made two minutes ago
        return bus.tap_qr(r, code_age=120)
    return bus.tap_qr(r)          # includes "passback": a fresh code of the same account


def prepare_out(out):
    """Make `out` ready for a run: create it, or clear an earlier run's outputs from it. Refuses
    (SystemExit) anything else that is already there, so a mistyped --out cannot delete files."""
    if out.exists() and not out.is_dir():
        raise UserError("--out %s is not a directory" % out)
    check_folder(out, "--out folder")
    if out.is_dir() and any(out.iterdir()):
        # (a directory holding nothing but a run's outputs, its database among them, is one
        # too: runs from before the marker)
        names = {p.name for p in out.iterdir()}
        only_outputs = "depot.sqlite" in names and names <= set(OUT_NAMES)
        if not (out / OUT_MARKER).is_file() and not only_outputs:
            raise UserError("refusing to use --out %s: it is not empty and no earlier `fare sim` "
                            "wrote it (no %s file); remove it yourself or choose another "
                            "directory" % (out, OUT_MARKER))
        if (out / "central").is_dir():
            simbackoffice.stop(out)    # an earlier run's server, if it was left running
        for name in OUT_NAMES:
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / OUT_MARKER).write_text(
        "Written by `fare sim`. The next run into this directory deletes its outputs:\n%s\n"
        "and nothing else.\n" % "\n".join(OUT_NAMES))


def export_csv(db_path, csv_path):
    """The depot's CSV export (`fare export`) of every trip; returns its rows."""
    args = types.SimpleNamespace(db=str(db_path), out=str(csv_path), format="csv", day=None,
                                 line=None, reader=None, depot_config=None, time_zone=None,
                                 day_starts=None)
    readersync.cmd_export(args)
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def depot_view(db_path, reader_ids):
    """What the depot database holds for the readers: trip records per (accepted, reason name)
    with their fares, each reader's record numbers, and records per service day (the depot
    configuration's, next to the database)."""
    cfg = depotconfig.load(depotconfig.find(db_path))
    db = depotdb.connect(str(db_path), readonly=True)
    try:
        by_reason, fares = Counter(), 0
        for decision, reason, n, fare in db.conn.execute(
                "SELECT decision, reason, COUNT(*), SUM(fare) FROM trips GROUP BY decision, "
                "reason"):
            by_reason[(bool(decision), reasons.name(reason))] = n
            fares += fare if decision else 0
        days = Counter()
        for rid in reader_ids:
            for day, _, _, trips, _, _, _ in db.report(cfg.day, reader_id=rid):
                days[day] += trips
        return types.SimpleNamespace(by_reason=by_reason, fares=fares,
                                     seqs={rid: db.seqs(rid) for rid in reader_ids},
                                     days=sorted(days.items()), day_rule=cfg.day.describe())
    finally:
        db.close()


def run(out_dir, n_riders=300, seed=2026, console=None):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console()
    out = Path(out_dir)
    prepare_out(out)
    (out / "depot.toml").write_text(DEPOT_CONFIG)  # `fare report --db OUT/depot.sqlite` uses it
    rng = random.Random(seed)
    started = time.monotonic()
    a = simbus.SimBus(out, DAY_START - 1800, reader_id=READER_ID, config=config(READERS[1201]))
    w = a.world
    b = simbus.SimBus(out / "reader-1202", DAY_START - 1800, reader_id=1202,
                      config=config(READERS[1202]), world=w, db_path=a.db_path)
    buses = {1201: a, 1202: b}
    w.add_issuer(1, DAY_START - 30 * 86400, DAY_START + 365 * 86400)
    console.print("[bold]make sim[/]: one day on lines 12 and 15, %d riders, readers 1201 and "
                  "1202 (real firmware on MicroPython, unix_sim board), then the back office "
                  "(embedded PostgreSQL)" % n_riders)
    riders = make_riders(w, n_riders, rng)
    loop_riders, loop_taps = make_loop_riders(w)
    deny_riders(w, riders)
    taps = make_day(riders, rng, loop_taps)
    a_taps = [i for i, tap in enumerate(taps) if tap.bus == READER_ID]
    cut_at = a_taps[len(a_taps) // 2] if a_taps else len(taps)
    results, morning_results = [], []
    cut = types.SimpleNamespace(index=cut_at, before=taps[cut_at] if a_taps else None,
                                seqs_before=None, ready=None, bus=READER_ID)
    syncs = {rid: [] for rid in buses}
    loop = None
    try:
        for bus in buses.values():
            bus.start()
        for rid, bus in buses.items():                 # pull-out: clock, deny list
            s = bus.sync(push_denylist=True)
            syncs[rid].append(s)
            if not s.ok:
                raise SystemExit("morning sync of reader %d failed: %s" % (rid, s.message))
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[now]}"), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task("taps", total=len(taps), now="")
            for i, tap in enumerate(taps):
                if i == cut_at:
                    bar.update(task, description="power cut!")
                    cut.seqs_before = [o.seq for t, o in results
                                       if o.seq is not None and t.bus == READER_ID]
                    cut.ready = a.power_cut()
                    bar.update(task, description="taps")
                bus = buses[tap.bus]
                bus.at(tap.t)
                results.append((tap, play(bus, tap)))
                bar.update(task, advance=1, now=local_time(tap.t)[:5])
        infos = {}
        for rid, bus in buses.items():                 # the night at the depot
            bus.at(taps[-1].t + 3600)
            infos[rid] = bus.info()
            syncs[rid].append(bus.sync())
        csv_path = out / "trips.csv"
        csv_rows = export_csv(a.db_path, csv_path)
        depot = depot_view(a.db_path, sorted(buses))
        console.print("the back office: upload, clearing, charges, payments, the next deny list")
        night_end = NEXT_MORNING - 4 * 3600            # 02:00: the provider's results
        must_fail = [r.account for r in loop_riders if r.kind == "payment_fails"]
        keep_paying = {r.account for r in loop_riders}
        loop = simbackoffice.run(out, w, sorted(buses), SERVICE_DAY_DATE(), night_end,
                                 NEXT_MORNING - 1800, must_fail, simbackoffice.rng_for(seed),
                                 keep_paying)
        # the next morning: the new list goes to both readers, then the first taps
        next_taps = next_morning_taps(riders + loop_riders, loop)
        for rid, bus in buses.items():
            bus.at(NEXT_MORNING - 1800)
            syncs[rid].append(bus.sync(pushes=simbackoffice.push_for_readers(loop)))
        for tap in next_taps:
            bus = buses[tap.bus]
            bus.at(tap.t)
            morning_results.append((tap, play(bus, tap)))
        facts = simbackoffice.facts(loop.url)
    finally:
        for bus in buses.values():
            bus.close()
        if loop is not None or (out / "central").is_dir():
            simbackoffice.stop(out)
    elapsed = time.monotonic() - started
    fleet = [types.SimpleNamespace(reader_id=rid, info=infos[rid], syncs=syncs[rid][:2],
                                   boots=bus.reader.boots, faults=bus.reader.faults)
             for rid, bus in buses.items()]
    status = summarize(console, results, depot, csv_rows, fleet, cut, csv_path, elapsed,
                       db_path=a.db_path)
    bo = backoffice_summary(console, results, loop, facts, morning_results,
                            [syncs[rid][2] for rid in buses], loop_riders)
    return max(status, bo)


def SERVICE_DAY_DATE():
    from datetime import date
    return date.fromisoformat(SERVICE_DAY)


def next_morning_taps(riders, loop):
    """The first taps the next morning: every account that did not pay (refused by account),
    the screenshot's credential (refused by credential: that account paid), one rider who paid
    (let through)."""
    by_account = {}
    for r in riders:
        by_account.setdefault(r.account, r)
    taps, t = [], NEXT_MORNING
    for account in sorted(loop.failed):
        r = by_account[account]
        taps.append(Tap(t, r, "qr", "DENIED_ACCOUNT", r.bus))
        t += 60
    for r in riders:
        if r.kind == "screenshot":
            taps.append(Tap(t, r, "qr", "DENIED_CREDENTIAL", r.bus))
            t += 60
        if r.kind == "sharer":
            taps.append(Tap(t, r, "qr", "OK", r.bus))
            t += 60
    return taps


def _esp32_estimate():
    # what `make bench` last estimated for the same firmware on a 240 MHz ESP32 (the simulated
    # reader here runs on this machine's CPU: its latency above says nothing about a board's)
    e = esp32figures.load()
    if "tap_first" not in e or "tap_cached" not in e:
        return "not estimated yet here: make bench (docs/performance.md has the figures)"
    return "first sighting %.0f-%.0f ms, cached credential %.0f-%.0f ms (make bench)" % (
        tuple(e["tap_first"]) + tuple(e["tap_cached"]))


def _median_p95(values):
    if not values:
        return "no taps"
    values = sorted(values)
    return "median %.1f ms, p95 %.1f ms (%d taps)" % (
        statistics.median(values), values[min(len(values) - 1, int(0.95 * len(values)))],
        len(values))


def _money(minor):
    return "%d.%02d (%d minor units)" % (minor // 100, minor % 100, minor)


def summarize(console, results, db, csv_rows, fleet, cut, csv_path, elapsed, db_path="depot.sqlite"):
    """Print the decisions, each kind of rider's outcomes and the summary, each figure checked
    against the depot database; returns the exit status (0: everything agrees and is as
    expected). `fleet`: per reader, its id, INFO before the night's sync, its syncs of the day
    (morning, night), boots and faults."""
    from rich.table import Table

    taps_by = Counter()          # (accepted, reason) -> taps
    recorded = Counter()         # (accepted, reason) -> taps that wrote a trip record
    fares = 0
    latency = {"QR": [], "NFC": []}
    seqs = {f.reader_id: [] for f in fleet}
    mismatches = []
    for tap, o in results:
        key = (o.accepted, o.reason)
        taps_by[key] += 1
        if o.seq is not None:
            recorded[key] += 1
            seqs.setdefault(tap.bus, []).append(o.seq)
            fares += o.fare if o.accepted else 0
        if o.reason != "NFC_FAILED":
            latency[tap.medium].append(o.us / 1000.0)
        if o.reason != tap.expect:
            mismatches.append((tap, o))
    not_recorded = taps_by - recorded

    t = Table(title="Decisions on the readers, and the depot database's trip records")
    for col in ("decision", "reason", "taps", "records", "depot DB"):
        t.add_column(col, justify="left" if col in ("decision", "reason") else "right")
    keys = set(taps_by) | set(db.by_reason)
    for acc, reason in sorted(keys, key=lambda k: (not k[0], -taps_by[k], k[1])):
        mine, theirs = recorded[(acc, reason)], db.by_reason[(acc, reason)]
        t.add_row("accept" if acc else "reject", reason, str(taps_by[(acc, reason)]), str(mine),
                  str(theirs) if mine == theirs else "[bold red]%d ≠[/]" % theirs)
    console.print(t)

    by_kind = Table(title="What each kind of rider got")
    for col in ("kind", "riders", "taps", "decisions", "not as expected"):
        by_kind.add_column(col, justify="left" if col in ("kind", "decisions") else "right")
    kinds = [k for k, _ in KINDS] + [k for k, _, _ in LOOP_RIDERS]
    for kind in kinds:
        mine = [(tap, o) for tap, o in results if tap.rider.kind == kind]
        if not mine:
            continue
        got = Counter(o.reason for _, o in mine)
        wrong = sum(1 for tap, o in mine if o.reason != tap.expect)
        by_kind.add_row(kind, str(len({tap.rider.name for tap, _ in mine})), str(len(mine)),
                        ", ".join("%s %d" % rn for rn in got.most_common()),
                        str(wrong) if not wrong else "[bold red]%d[/]" % wrong)
    console.print(by_kind)

    # Everything the summary states about the records, checked against the depot database
    problems = []
    if recorded != db.by_reason:
        differ = sorted((key for key in set(recorded) | set(db.by_reason)
                         if recorded[key] != db.by_reason[key]), key=lambda k: (not k[0], k[1]))
        problems.append("records by reason: " + ", ".join(
            "%s reader %d / DB %d" % (key[1], recorded[key], db.by_reason[key]) for key in differ))
    if fares != db.fares:
        problems.append("fares: reader %d / DB %d" % (fares, db.fares))
    for f in fleet:
        mine, theirs = sorted(seqs.get(f.reader_id, [])), db.seqs.get(f.reader_id, [])
        if mine != theirs:
            problems.append("reader %d's record numbers: reader %d records (%s..%s) / DB %d "
                            "(%s..%s)" % (f.reader_id, len(mine), min(mine, default="-"),
                                          max(mine, default="-"), len(theirs),
                                          theirs[0] if theirs else "-",
                                          theirs[-1] if theirs else "-"))
        if f.info.get("log_last") != (theirs[-1] if theirs else 0):
            problems.append("reader %d's last record is %s, the DB's %s"
                            % (f.reader_id, f.info.get("log_last"), theirs[-1] if theirs else None))
    n_db = sum(len(v) for v in db.seqs.values())
    synced = sum(s.records_new for f in fleet for s in f.syncs)
    if synced != n_db:
        problems.append("syncs brought %d new records, the DB has %d" % (synced, n_db))
    if len(csv_rows) != n_db:
        problems.append("CSV export has %d rows, the DB %d records" % (len(csv_rows), n_db))

    # The power cut: reader 1201 booted again and came back with every record it had made
    cut_bus = next(f for f in fleet if f.reader_id == cut.bus)
    had = max(cut.seqs_before or [0])
    back = cut.ready.get("log_last") if cut.ready is not None else None
    cut_ok = cut_bus.boots == 2 and back == had
    cut_text = "reader %d, before tap %d of %d (%s local); booted %d times (expected 2); " % (
        cut.bus, cut.index + 1, len(results), local_time(cut.before.t) if cut.before else "-",
        cut_bus.boots)
    cut_text += ("back with all %d records" % had if back == had else
                 "had records up to %d, back with records up to %s" % (had, back))

    n_accepted = sum(n for (a, _), n in recorded.items() if a)
    n_rejected = sum(n for (a, _), n in recorded.items() if not a)
    db_accepted = sum(n for (a, _), n in db.by_reason.items() if a)
    db_rejected = sum(n for (a, _), n in db.by_reason.items() if not a)

    def against_db(mine, theirs):
        return "%d (depot DB: %d%s)" % (mine, theirs, "" if mine == theirs else " [bold red]≠[/]")

    s = Table(title="Summary of the day", show_header=False)
    media = Counter(tap.medium for tap, _ in results)
    per_bus = Counter(tap.bus for tap, _ in results)
    s.add_row("taps", "%d (QR %d, NFC %d; %s)" % (len(results), media["QR"], media["NFC"],
                                                   ", ".join("reader %d: %d" % kv
                                                             for kv in sorted(per_bus.items()))))
    s.add_row("accepted, trip recorded", against_db(n_accepted, db_accepted))
    s.add_row("rejected, trip recorded", against_db(n_rejected, db_rejected))
    for (acc, reason), n in sorted(not_recorded.items(), key=lambda kv: (not kv[0][0], kv[0][1])):
        what = ("held-phone re-reads, green, no record" if reason == "ALREADY_VALIDATED"
                else "%s, no record" % ("accepted" if acc else "refused again"))
        s.add_row(what, "%d %s" % (n, reason))
    s.add_row("fares charged", _money(fares) + ("" if fares == db.fares else
                                                " [bold red]≠ depot DB %s[/]" % _money(db.fares)))
    all_lat = latency["QR"] + latency["NFC"]
    s.add_row("decision latency (unix port)", _median_p95(all_lat))
    s.add_row("  QR", _median_p95(latency["QR"]))
    s.add_row("  NFC (with the emulated APDU exchange)", _median_p95(latency["NFC"]))
    s.add_row("a tap on an ESP32 (estimate)", _esp32_estimate())
    s.add_row("power cut", ("" if cut_ok else "[bold red]NOT AS EXPECTED:[/] ") + cut_text)
    s.add_row("records on the readers", ", ".join("reader %d: %s" % (f.reader_id,
                                                                     f.info.get("log_last"))
                                                  for f in fleet))
    s.add_row("records synced (depot DB)", "%d new tonight, %d in all; sync %s" % (
        sum(f.syncs[-1].records_new for f in fleet), n_db,
        ", ".join(f.syncs[-1].status for f in fleet)))
    # The depot files records by the operator's service day (06:00-21:00 at UTC+8 is one day)
    s.add_row("records per service day", (", ".join("%s: %d" % d for d in db.days) or "none")
              + " (%s; `fare report --db DB --reader %d` shows every day)"
              % (db.day_rule, READER_ID))
    s.add_row("depot DB agrees", "yes (records by decision and reason, record numbers, fares, "
              "syncs, CSV)" if not problems else "[bold red]NO[/]: " + "; ".join(problems))
    s.add_row("riders as expected", "yes, all %d taps" % len(results) if not mismatches else
              "[bold red]NO[/]: %d of %d taps" % (len(mismatches), len(results)))
    for tap, o in mismatches[:EXAMPLES]:
        s.add_row("", "%s %s (%s, %s): expected %s, got %s" % (
            local_time(tap.t), tap.rider.name, tap.rider.kind, tap.how, tap.expect, o.reason))
    s.add_row("depot database", str(db_path))
    s.add_row("CSV export", str(csv_path))
    s.add_row("reader faults", "; ".join("reader %d: %s" % (f.reader_id, x.get("error", "?"))
                                         for f in fleet for x in f.faults) or "none")
    s.add_row("wall time", "%.1f s" % elapsed)
    console.print(s)
    return 0 if (not problems and not mismatches and cut_ok
                 and all(f.syncs[-1].ok for f in fleet)) else 1


def expected_clearing(results):
    """What clearing must find, from what the readers decided: each account's charge (every
    accepted fare, a code accepted twice charged once: its first record), the duplicated code,
    the credit window's excess, the possible sharing."""
    charges, firsts = Counter(), {}
    dup = {}
    for tap, o in sorted(results, key=lambda x: x[0].t):
        if not (o.accepted and o.seq is not None):
            continue
        r = tap.rider
        if tap.how == "screenshot":
            dup[r.account] = (2, 2, firsts[r.account])
            continue
        charges[r.account] += o.fare
        firsts.setdefault(r.account, tap.bus)
    exposure, sharing = {}, {}
    for kind, account, plan in LOOP_RIDERS:
        ok = [(t, bus) for t, bus, how, e in plan if e == "OK" and how != "screenshot"]
        rides = [o.fare for tap, o in sorted(results, key=lambda x: x[0].t)
                 if tap.rider.account == account and o.accepted and tap.how != "screenshot"]
        if kind == "limit_each_bus":
            limit = LOOP_MAX_RIDES[kind]
            exposure[account] = (len(rides), len(rides) - limit, sum(rides[limit:]),
                                 len({bus for _, bus in ok}))
        if kind == "sharer":
            (t1, b1), (t2, b2) = ok
            sharing[account] = (b1, b2, t2 - t1)
    return ({a: v for a, v in charges.items() if v > 0}, dup, exposure, sharing)


def backoffice_summary(console, results, loop, facts, morning, morning_syncs, loop_riders):
    """The back office's part of the summary, each figure checked against the central store;
    returns the exit status."""
    from rich.table import Table
    charges, dup, exposure, sharing = expected_clearing(results)
    problems = []

    def check(what, mine, theirs):
        if mine != theirs:
            problems.append("%s: expected %s, the store has %s" % (what, mine, theirs))
        return "" if mine == theirs else " [bold red]≠ store: %s[/]" % (theirs,)

    accepted = sum(1 for _, o in results if o.accepted and o.seq is not None)
    u = loop.upload
    c = loop.clearing
    deny_accounts = {int(i) for (k, i), r in facts["deny"].items() if r == "payment_failed"}
    deny_creds = {i for (k, i), r in facts["deny"].items() if r == "duplicates"}
    shot = next(r for r in loop_riders if r.kind == "screenshot")
    rows = [
        ("uploaded", "%d records, %d new in the central store (%d batches, %.1f MB/s)%s" % (
            u.records, u.new, u.batches, u.mb_per_s,
            check("records", (u.new, accepted), (facts["trips"][0], facts["trips"][1])))),
        ("re-verified", "%d accepted records: %d stand, %d suspect readers%s" % (
            c.verified, c.ok, c.suspects,
            check("verdicts", {"ok": accepted}, facts["verdicts"]))),
        ("duplicates", "%s%s" % (", ".join("account %d: %d records on %d readers, charged once "
                                           "(reader %d's)" % ((a,) + v) for a, v in dup.items()),
                                 check("duplicates", dup, facts["duplicates"]))),
        ("offline limits, all readers", "%s%s" % (", ".join(
            "account %d: %d rides, %d past the limit (%s exposure) on %d readers"
            % (a, n, o, _money(m), rd) for a, (n, o, m, rd) in exposure.items()),
            check("exposure", exposure, facts["exposure"]))),
        ("possible sharing", "%s%s" % (", ".join("account %d: readers %d and %d, %d s apart"
                                                 % ((a,) + v) for a, v in sharing.items()),
                                       check("sharing", sharing, facts["sharing"]))),
        ("charges", "batch %s: %d accounts, %s%s" % (
            loop.batch["batch_id"], loop.batch["charges"], _money(loop.batch["amount"]),
            check("charges", charges, facts["charges"]))),
        ("charge files", ", ".join(str(p) for p in loop.charges_files)),
        ("payment results", "%d paid, %d failed (%s); imported twice, the second time %d new%s"
         % (loop.imports[0]["paid"], loop.imports[0]["failed"],
            ", ".join("%d: %s" % kv for kv in sorted(loop.failed.items())),
            loop.imports[1]["new"],
            check("payments", ({a: "failed" for a in loop.failed}, 0, len(charges)),
                  ({a: s for a, (s, _) in facts["payments"].items() if s == "failed"},
                   loop.imports[1]["new"], facts["payment_rows"])))),
        ("next deny list", "v%d: +%d, -%d (%s), %d entries; %s%s" % (
            loop.deny.version, len(loop.deny.added), len(loop.deny.removed),
            ", ".join("%s %s: %s" % (k, i, why) for k, i, why, _ in loop.deny.added),
            loop.deny.entries, ", ".join(str(p) for p in loop.deny_files),
            check("deny list", (set(loop.failed), {shot.cred_id.hex()}),
                  (deny_accounts, deny_creds)))),
        ("next morning's sync", ", ".join("%s (%s)" % (s.status, ", ".join(
            "%s %s" % (k, o) for k, o in s.pushes)) for s in morning_syncs)),
        ("back office time", "%.1f s (clearing %.1f s)" % (
            loop.seconds, sum(v for k, v in c.seconds.items() if k in ("verify", "settle")))),
    ]
    wrong = [(tap, o) for tap, o in morning if o.reason != tap.expect]
    rows.append(("first taps the next morning", ", ".join(
        "%s %s %s" % (tap.rider.name, "→", o.reason) for tap, o in morning)
        + ("" if not wrong else " [bold red]NOT AS EXPECTED[/]")))
    if wrong:
        problems.append("next morning: " + ", ".join("%s expected %s, got %s" % (
            tap.rider.name, tap.expect, o.reason) for tap, o in wrong))
    if not all(s.ok for s in morning_syncs):
        problems.append("the next morning's sync failed")
    rows.append(("central store agrees", "yes (records, verdicts, duplicates, exposure, "
                 "sharing, charges, payments, deny list)" if not problems else
                 "[bold red]NO[/]: " + "; ".join(problems)))
    t = Table(title="The back office (central PostgreSQL)", show_header=False)
    for r in rows:
        t.add_row(*r)
    console.print(t)

    found = Table(title="What clearing found for each rider of the loop")
    for col in ("rider", "did", "clearing found (central store)"):
        found.add_column(col)
    acct = {r.kind: r.account for r in loop_riders}
    d = facts["duplicates"].get(acct["screenshot"])
    found.add_row("screenshot", "showed one code on both buses",
                  "duplicate: %s records on %s readers, charged once; credential on the next "
                  "deny list (%s)" % (d[0], d[1], facts["deny"].get(
                      ("credential", shot.cred_id.hex()))) if d else "[bold red]nothing[/]")
    e = facts["exposure"].get(acct["limit_each_bus"])
    found.add_row("limit_each_bus", "used the 2-ride offline limit on each bus",
                  "exposure: %d rides across %d readers, %d past the limit, %s; still owed: "
                  "charged %s" % (e[0], e[3], e[1], _money(e[2]),
                                  _money(facts["charges"].get(acct["limit_each_bus"], 0)))
                  if e else "[bold red]nothing[/]")
    p = facts["payments"].get(acct["payment_fails"])
    found.add_row("payment_fails", "did not pay",
                  "payment %s (%s); account on the next deny list (%s); refused the next "
                  "morning" % (p[0], p[1], facts["deny"].get(("account", str(acct["payment_fails"]))))
                  if p else "[bold red]nothing[/]")
    sh = facts["sharing"].get(acct["sharer"])
    found.add_row("sharer", "lent the app to a friend on the other bus",
                  "possible sharing: readers %d and %d, %d s apart (flagged, charged both)"
                  % sh if sh else "[bold red]nothing[/]")
    console.print(found)
    return 0 if not problems else 1


def riders_count(text):
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1, got %d" % n)
    return n


def cmd_sim(args):
    return run(args.out, args.riders, args.seed)


def add_commands(sub):
    p = sub.add_parser("sim", help="simulate a day on two bus lines and its back office, end to "
                                   "end (make sim)", description=__doc__)
    p.add_argument("--riders", type=riders_count, default=300,
                   help="number of riders, at least 1 (default 300)")
    p.add_argument("--seed", type=int, default=2026, help="random seed (the day is reproducible)")
    p.add_argument("--out", default="sim-out",
                   help="output directory (default sim-out/): new, empty, or an earlier run's")
    p.set_defaults(func=cmd_sim)
