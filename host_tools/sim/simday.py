"""`fare sim` (`make sim`): a simulated day on one bus line, end to end.

Creates issuer and operator keys, provisions a reader (the real firmware on the MicroPython
binary, unix_sim board, littlefs image as flash), makes a few hundred riders through the wallet
(some denied, some expired, some over their offline limit, some on NFC, some replaying a code or
passing it back), plays the day's taps through the QR and PN532 emulators with the clock moving,
cuts the power once mid-route, syncs the reader into the depot database over the serial protocol
and prints a summary that it checks against the database. It exits non-zero if the database
disagrees with what the reader decided, if any rider did not get the decision its kind should,
or if the power cut did not happen.

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
from host_tools.sim import simbus
from host_tools.common.fw import validator  # noqa: F401  (puts the firmware's modules on the path)
from validator import reasons

UTC_OFFSET = 8 * 3600           # the line's local time (UTC+8)
# 2026-11-24 06:00 at UTC+8 = 2026-11-23 22:00 UTC: two UTC calendar days, one service day
DAY_START = 1795471200
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
READER_ID = 1201
MAX_CODE_AGE = 60               # s; the rules below, also used to say what each tap should get
REPEAT_WINDOW = 5
PASSBACK_WINDOW = 600
CONFIG = {
    "line": LINE, "stop": 0,
    "rules": {"max_code_age": "%ds" % MAX_CODE_AGE, "clock_skew": "30s",
              "repeat_window": "%ds" % REPEAT_WINDOW, "passback_window": "%ds" % PASSBACK_WINDOW,
              "transfer_window": 0},
    "degraded": {"mode": "limit", "max_rides": 2},
    "fares": {str(LINE): {"adult": 200, "student": 100, "senior": 50, "free": 0}},
}
PRODUCTS = [(1, 70), (2, 15), (3, 10), (4, 5)]   # (product, weight): adult, student, senior, free
# Rider kinds and their share of the riders
KINDS = [("qr", 52), ("nfc", 20), ("denied", 5), ("expired", 5), ("limit", 5), ("replay", 4),
         ("passback", 4), ("stale", 3), ("double_read", 2)]
# Riders of each kind a day needs for every expectation to be exercised (two denied: one by
# account, one by credential); a day with fewer riders than this gets what it draws.
KIND_MINIMUM = dict({k: 1 for k, _ in KINDS}, denied=2)
# A rider's tap after the first, and how long after it (nominal; a busy door pushes taps later)
FOLLOW_UPS = {"replay": 30, "passback": 240, "double_read": 2}

OUT_MARKER = ".fare-sim"
# Everything a run writes into --out (besides the marker); a later run deletes only these.
OUT_NAMES = ("world", "reader", "depot.sqlite", "depot.sqlite-wal", "depot.sqlite-shm",
             "depot.sqlite-journal", "depot.sqlite.writer", "depot.toml", "trips.csv")
EXAMPLES = 5    # mismatched taps shown in the summary


class Tap:
    def __init__(self, t, rider, how, expect=None):
        self.t = t
        self.rider = rider
        self.how = how          # "qr", "nfc", "replay", "passback", "stale", "double_read"
        self.expect = expect    # the reason name this tap should get (set_expectations)

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


def make_riders(bus, n, rng):
    w = bus.world
    drawn = [(_weighted(rng, KINDS), _weighted(rng, PRODUCTS)) for _ in range(n)]
    kinds = [k for k, _ in drawn]
    _cover_every_kind(kinds)
    riders = []
    for i, (kind, (_, product)) in enumerate(zip(kinds, drawn)):
        valid_until = DAY_START - 3600 if kind == "expired" else None
        max_rides = 1 if kind == "limit" else 20
        r = w.add_rider("r%03d" % i, 100000 + i, product=product, valid_until=valid_until,
                        max_rides=max_rides, max_amount=20000)
        r.kind = kind
        riders.append(r)
    return riders


def deny_riders(world, riders):
    """Put the denied riders on the deny list, alternately by account and by credential."""
    denied = [r for r in riders if r.kind == "denied"]
    for r in denied[::2]:
        r.denied_as = "DENIED_ACCOUNT"
    for r in denied[1::2]:
        r.denied_as = "DENIED_CREDENTIAL"
    world.deny(accounts=[r.account for r in denied[::2]], riders=[r.name for r in denied[1::2]])


def make_day(riders, rng):
    """Taps over the day: everyone rides in the morning and most ride back in the evening;
    misbehaving riders do their thing on one of the rides."""
    taps = []
    for r in riders:
        how = "nfc" if r.kind == "nfc" else "qr"
        morning = DAY_START + rng.randrange(0, 4 * 3600)
        taps.append(Tap(morning, r, how))
        if r.kind in FOLLOW_UPS:
            taps.append(Tap(morning + FOLLOW_UPS[r.kind], r, r.kind))
        if r.kind == "stale":
            taps[-1].how = "stale"
        evening = DAY_START + 10 * 3600 + rng.randrange(0, 5 * 3600)
        if r.kind == "limit" or rng.random() < 0.7:
            taps.append(Tap(evening, r, how))
    taps.sort(key=lambda tap: tap.t)
    # one bus door: riders board at least two seconds apart
    for a, b in zip(taps, taps[1:]):
        if b.t < a.t + 2:
            b.t = a.t + 2
    set_expectations(taps)
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
    if tap.how == "replay":       # someone else shows a screenshot of the code
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


def export_csv(db_path, csv_path, reader_id):
    """The depot's CSV export (`fare export`) of the reader's trips; returns its rows."""
    args = types.SimpleNamespace(db=str(db_path), out=str(csv_path), format="csv", day=None,
                                 line=None, reader=reader_id, depot_config=None, time_zone=None,
                                 day_starts=None)
    readersync.cmd_export(args)
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def depot_view(db_path, reader_id):
    """What the depot database holds for the reader: trip records per (accepted, reason name)
    with their fares, the record numbers, and records per service day (the depot
    configuration's, next to the database)."""
    cfg = depotconfig.load(depotconfig.find(db_path))
    db = depotdb.connect(str(db_path), readonly=True)
    try:
        by_reason, fares = Counter(), 0
        for decision, reason, n, fare in db.conn.execute(
                "SELECT decision, reason, COUNT(*), SUM(fare) FROM trips WHERE reader_id = ? "
                "GROUP BY decision, reason", (reader_id,)):
            by_reason[(bool(decision), reasons.name(reason))] = n
            fares += fare if decision else 0
        days = Counter()
        for day, _, _, trips, _, _, _ in db.report(cfg.day, reader_id=reader_id):
            days[day] += trips
        return types.SimpleNamespace(by_reason=by_reason, fares=fares, seqs=db.seqs(reader_id),
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
    bus = simbus.SimBus(out, DAY_START - 1800, reader_id=READER_ID, config=CONFIG)
    w = bus.world
    w.add_issuer(1, DAY_START - 30 * 86400, DAY_START + 365 * 86400)
    console.print("[bold]make sim[/]: one day on line %d, %d riders, reader %d (real firmware on "
                  "MicroPython, unix_sim board)" % (LINE, n_riders, READER_ID))
    riders = make_riders(bus, n_riders, rng)
    deny_riders(w, riders)
    taps = make_day(riders, rng)
    cut_at = len(taps) // 2
    results = []
    cut = types.SimpleNamespace(index=cut_at, before=taps[cut_at], seqs_before=None, ready=None)
    try:
        bus.start()
        morning = bus.sync(push_denylist=True)          # pull-out: clock, deny list
        if not morning.ok:
            raise SystemExit("morning sync failed: %s" % morning.message)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[now]}"), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task("taps", total=len(taps), now="")
            for i, tap in enumerate(taps):
                if i == cut_at:
                    bar.update(task, description="power cut!")
                    cut.seqs_before = [o.seq for _, o in results if o.seq is not None]
                    cut.ready = bus.power_cut()
                    bar.update(task, description="taps")
                bus.at(tap.t)
                outcome = play(bus, tap)
                results.append((tap, outcome))
                bar.update(task, advance=1, now=local_time(tap.t)[:5])
        bus.at(taps[-1].t + 3600)
        info_before = bus.info()
        night = bus.sync()
    finally:
        bus.close()
    elapsed = time.monotonic() - started

    csv_path = out / "trips.csv"
    csv_rows = export_csv(bus.db_path, csv_path, READER_ID)
    depot_db = depot_view(bus.db_path, READER_ID)
    return summarize(console, results, depot_db, csv_rows, [morning, night], info_before, cut,
                     bus, csv_path, elapsed)


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


def summarize(console, results, db, csv_rows, syncs, info, cut, bus, csv_path, elapsed):
    """Print the decisions, each kind of rider's outcomes and the summary, each figure checked
    against the depot database; returns the exit status (0: everything agrees and is as
    expected)."""
    from rich.table import Table

    taps_by = Counter()          # (accepted, reason) -> taps
    recorded = Counter()         # (accepted, reason) -> taps that wrote a trip record
    fares = 0
    latency = {"QR": [], "NFC": []}
    seqs = []
    mismatches = []
    for tap, o in results:
        key = (o.accepted, o.reason)
        taps_by[key] += 1
        if o.seq is not None:
            recorded[key] += 1
            seqs.append(o.seq)
            fares += o.fare if o.accepted else 0
        if o.reason != "NFC_FAILED":
            latency[tap.medium].append(o.us / 1000.0)
        if o.reason != tap.expect:
            mismatches.append((tap, o))
    not_recorded = taps_by - recorded

    t = Table(title="Decisions on the reader, and the depot database's trip records")
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
    for kind, _ in KINDS:
        mine = [(tap, o) for tap, o in results if tap.rider.kind == kind]
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
    if sorted(seqs) != db.seqs:
        problems.append("record numbers: reader %d records (%s..%s) / DB %d (%s..%s)"
                        % (len(seqs), min(seqs, default="-"), max(seqs, default="-"),
                           len(db.seqs), db.seqs[0] if db.seqs else "-",
                           db.seqs[-1] if db.seqs else "-"))
    if info.get("log_last") != (db.seqs[-1] if db.seqs else 0):
        problems.append("the reader's last record is %s, the DB's %s"
                        % (info.get("log_last"), db.seqs[-1] if db.seqs else None))
    synced = sum(s.records_new for s in syncs)
    if synced != len(db.seqs):
        problems.append("syncs brought %d new records, the DB has %d" % (synced, len(db.seqs)))
    if len(csv_rows) != len(db.seqs):
        problems.append("CSV export has %d rows, the DB %d records" % (len(csv_rows), len(db.seqs)))

    # The power cut: the reader booted again and came back with every record it had made
    boots = bus.reader.boots
    had = max(cut.seqs_before or [0])
    back = cut.ready.get("log_last") if cut.ready is not None else None
    cut_ok = boots == 2 and back == had
    cut_text = "before tap %d of %d (%s local); booted %d times (expected 2); " % (
        cut.index + 1, len(results), local_time(cut.before.t), boots)
    cut_text += ("back with all %d records" % had if back == had else
                 "had records up to %d, back with records up to %s" % (had, back))

    n_accepted = sum(n for (a, _), n in recorded.items() if a)
    n_rejected = sum(n for (a, _), n in recorded.items() if not a)
    db_accepted = sum(n for (a, _), n in db.by_reason.items() if a)
    db_rejected = sum(n for (a, _), n in db.by_reason.items() if not a)

    def against_db(mine, theirs):
        return "%d (depot DB: %d%s)" % (mine, theirs, "" if mine == theirs else " [bold red]≠[/]")

    s = Table(title="Summary", show_header=False)
    media = Counter(tap.medium for tap, _ in results)
    s.add_row("taps", "%d (QR %d, NFC %d)" % (len(results), media["QR"], media["NFC"]))
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
    s.add_row("records on the reader", str(info.get("log_last")))
    s.add_row("records synced (depot DB)", "%d new tonight, %d in all; sync %s"
              % (syncs[-1].records_new, len(db.seqs), syncs[-1].status))
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
    s.add_row("depot database", str(bus.db_path))
    s.add_row("CSV export", str(csv_path))
    s.add_row("reader faults", "; ".join(f.get("error", "?") for f in bus.reader.faults) or "none")
    s.add_row("wall time", "%.1f s" % elapsed)
    console.print(s)
    return 0 if not problems and not mismatches and cut_ok and syncs[-1].ok else 1


def riders_count(text):
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1, got %d" % n)
    return n


def cmd_sim(args):
    return run(args.out, args.riders, args.seed)


def add_commands(sub):
    p = sub.add_parser("sim", help="simulate a day on one bus line end to end (make sim)",
                       description=__doc__)
    p.add_argument("--riders", type=riders_count, default=300,
                   help="number of riders, at least 1 (default 300)")
    p.add_argument("--seed", type=int, default=2026, help="random seed (the day is reproducible)")
    p.add_argument("--out", default="sim-out",
                   help="output directory (default sim-out/): new, empty, or an earlier run's")
    p.set_defaults(func=cmd_sim)
