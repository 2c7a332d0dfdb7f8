"""`fare sim` (`make sim`): a simulated day on one bus line, end to end.

Creates issuer and operator keys, provisions a reader (the real firmware on the MicroPython
binary, unix_sim board, littlefs image as flash), makes a few hundred riders through the wallet
(some denied, some expired, some over their offline limit, some on NFC, some replaying a code or
passing it back), plays the day's taps through the QR and PN532 emulators with the clock moving,
cuts the power once mid-route, syncs the reader into the depot database over the serial protocol
and prints a summary that it checks against the database."""
import random
import statistics
import time
import types
from collections import Counter
from pathlib import Path

from host_tools import depot, depotdb, simbus

DAY_START = 1795471200          # 2026-11-23 06:00 at UTC+8 (22:00 UTC the day before)
LINE = 12
READER_ID = 1201
CONFIG = {
    "line": LINE, "stop": 0,
    "rules": {"max_code_age": "60s", "clock_skew": "30s", "repeat_window": "5s",
              "passback_window": "10m", "transfer_window": 0},
    "degraded": {"mode": "limit", "max_rides": 2},
    "fares": {str(LINE): {"adult": 200, "student": 100, "senior": 50, "free": 0}},
}
PRODUCTS = [(1, 70), (2, 15), (3, 10), (4, 5)]   # (product, weight): adult, student, senior, free
# Rider kinds and their share of the riders
KINDS = [("qr", 52), ("nfc", 20), ("denied", 5), ("expired", 5), ("limit", 5), ("replay", 4),
         ("passback", 4), ("stale", 3), ("double_read", 2)]


class Tap:
    def __init__(self, t, rider, how, expect=None):
        self.t = t
        self.rider = rider
        self.how = how          # "qr", "nfc", "replay", "passback", "stale", "double_read"
        self.expect = expect


def _weighted(rng, pairs):
    return rng.choices([p for p, _ in pairs], [w for _, w in pairs])[0]


def make_riders(bus, n, rng):
    w = bus.world
    riders = []
    for i in range(n):
        kind = _weighted(rng, KINDS)
        product = _weighted(rng, PRODUCTS)
        valid_until = DAY_START - 3600 if kind == "expired" else None
        max_rides = 1 if kind == "limit" else 20
        r = w.add_rider("r%03d" % i, 100000 + i, product=product, valid_until=valid_until,
                        max_rides=max_rides, max_amount=20000)
        r.kind = kind
        riders.append(r)
    return riders


def make_day(riders, rng):
    """Taps over the day: everyone rides in the morning and most ride back in the evening;
    misbehaving riders do their thing on one of the rides."""
    taps = []
    for r in riders:
        how = "nfc" if r.kind == "nfc" else "qr"
        morning = DAY_START + rng.randrange(0, 4 * 3600)
        taps.append(Tap(morning, r, how))
        if r.kind in ("replay", "passback", "double_read"):
            taps.append(Tap(morning + {"replay": 30, "passback": 240, "double_read": 2}[r.kind],
                            r, r.kind))
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
    return taps


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


def export_csv(db_path, csv_path, reader_id):
    """The depot's CSV export (`fare export`) of the reader's trips; returns the rows."""
    args = types.SimpleNamespace(db=str(db_path), out=str(csv_path), format="csv", day=None,
                                 line=None, reader=reader_id)
    depot.cmd_export(args)
    db = depotdb.connect(str(db_path))
    try:
        return db.export(reader_id=reader_id)
    finally:
        db.close()


def run(out_dir, n_riders=300, seed=2026, console=None):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = console or Console()
    out = Path(out_dir)
    if out.exists():
        import shutil
        shutil.rmtree(out)
    rng = random.Random(seed)
    started = time.monotonic()
    bus = simbus.SimBus(out, DAY_START - 1800, reader_id=READER_ID, config=CONFIG)
    w = bus.world
    w.add_issuer(1, DAY_START - 30 * 86400, DAY_START + 365 * 86400)
    console.print("[bold]make sim[/]: one day on line %d, %d riders, reader %d (real firmware on "
                  "MicroPython, unix_sim board)" % (LINE, n_riders, READER_ID))
    riders = make_riders(bus, n_riders, rng)
    denied = [r for r in riders if r.kind == "denied"]
    w.deny(accounts=[r.account for r in denied[::2]], riders=[r.name for r in denied[1::2]])
    taps = make_day(riders, rng)
    cut_at = len(taps) // 2
    results = []
    bus.start()
    try:
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
                    bus.power_cut()
                    bar.update(task, description="taps")
                bus.at(tap.t)
                outcome = play(bus, tap)
                results.append((tap, outcome))
                bar.update(task, advance=1, now=time.strftime("%H:%M", time.gmtime(tap.t + 8 * 3600)))
        bus.at(taps[-1].t + 3600)
        info_before = bus.info()
        night = bus.sync()
    finally:
        bus.close()
    elapsed = time.monotonic() - started

    csv_path = out / "trips.csv"
    rows = export_csv(bus.db_path, csv_path, READER_ID)
    return summarize(console, results, rows, night, info_before, bus, csv_path, elapsed, Table)


def summarize(console, results, rows, night, info, bus, csv_path, elapsed, Table):
    by_reason = Counter()
    fares = 0
    lat = []
    logged = 0
    for tap, o in results:
        by_reason[(o.accepted, o.reason)] += 1
        fares += o.fare if o.accepted else 0
        if o.reason != "NFC_FAILED":
            lat.append(o.us / 1000.0)
        if o.seq is not None:
            logged += 1
    t = Table(title="Decisions on the reader")
    t.add_column("decision")
    t.add_column("reason")
    t.add_column("taps", justify="right")
    for (acc, reason), n in sorted(by_reason.items(), key=lambda kv: (not kv[0][0], -kv[1])):
        t.add_row("accept" if acc else "reject", reason, str(n))
    console.print(t)
    lat.sort()
    p50 = statistics.median(lat)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
    db_accepted = [r for r in rows if r["decision"]]
    db_fares = sum(r["fare"] for r in db_accepted)
    agree = len(rows) == logged and db_fares == fares
    s = Table(title="Summary", show_header=False)
    s.add_row("taps", str(len(results)))
    s.add_row("accepted", str(sum(n for (a, _), n in by_reason.items() if a)))
    s.add_row("rejected", str(sum(n for (a, _), n in by_reason.items() if not a)))
    s.add_row("fares charged", "%d.%02d (%d minor units)" % (fares // 100, fares % 100, fares))
    s.add_row("decision latency (unix port)", "median %.1f ms, p95 %.1f ms" % (p50, p95))
    s.add_row("power cuts", "1 (reader recovered and continued)")
    s.add_row("records on the reader", str(info.get("log_last")))
    s.add_row("records synced (depot DB)", "%d new tonight, %d in all; sync %s"
              % (night.records_new, len(rows), night.status))
    s.add_row("depot DB agrees", "yes" if agree else "NO: reader %d records / %d fares, DB %d / %d"
              % (logged, fares, len(rows), db_fares))
    s.add_row("depot database", str(bus.db_path))
    s.add_row("CSV export", str(csv_path))
    s.add_row("reader faults", "; ".join(f.get("error", "?") for f in bus.reader.faults) or "none")
    s.add_row("wall time", "%.1f s" % elapsed)
    console.print(s)
    return 0 if agree and night.ok else 1


def cmd_sim(args):
    return run(args.out, args.riders, args.seed)


def add_commands(sub):
    p = sub.add_parser("sim", help="simulate a day on one bus line end to end (make sim)",
                       description=__doc__)
    p.add_argument("--riders", type=int, default=300, help="number of riders (default 300)")
    p.add_argument("--seed", type=int, default=2026, help="random seed (the day is reproducible)")
    p.add_argument("--out", default="sim-out", help="output directory (default sim-out/)")
    p.set_defaults(func=cmd_sim)
