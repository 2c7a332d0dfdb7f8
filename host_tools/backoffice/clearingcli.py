"""`fare clearing ...` and `fare denylist build --from-central URL`: the back office's clearing,
charges, payment results, reports and the deny list fed back to the readers
(docs/backoffice.md, "Clearing")."""
import argparse
import csv
import functools
import time
from pathlib import Path

from host_tools.backoffice import (charges, clearing, clearinginputs, clearingreport, denyfeed)
from host_tools.backoffice.pgconn import CentralError, connect, one_line
from host_tools.common import signedcheck
from host_tools.common.clierrors import UserError, check_output, read_bytes, write_bytes


def _database_errors(func):
    """A database error that no check named first (the server gone mid-run, a permission the
    login lacks) as one line: what was committed stays, a rerun goes on."""
    @functools.wraps(func)
    def run(args):
        import psycopg
        try:
            return func(args)
        except psycopg.Error as e:
            raise CentralError("the central store: %s" % one_line(e)) from None
    return run


def _operator_keys(args):
    specs = args.operator_key or [k for k in [signedcheck.default_operator_key(args.issuer_dir)]
                                  if k]
    if not specs:
        raise UserError("cannot check the files' signatures: give --operator-key (operator.json "
                        "or KID:PUBHEX) or --issuer-dir")
    return signedcheck.operator_keys(specs)


def _console(stderr=False):
    from rich.console import Console
    return Console(stderr=stderr, highlight=False)


def _table(title, columns, rows, limit=None):
    from rich.table import Table
    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="left" if c in ("reason", "verdicts", "decision", "credential",
                                                "first evidence", "charges and reasons",
                                                "records (reader/seq)") else "right")
    for r in rows[:limit] if limit else rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    if limit and len(rows) > limit:
        t.caption = "%d of %d rows (--csv writes all)" % (limit, len(rows))
    return t


def _money(minor):
    return "%d.%02d" % divmod(minor, 100)


# -- commands --------------------------------------------------------------------------------------

def _load(args):
    if not args.keyring and not args.config:
        raise UserError("give --keyring and/or --config files to load")
    for line in clearinginputs.load(args.db, args.keyring or (), args.config or (),
                                    _operator_keys(args)):
        print(line)


def _settings(args):
    values = {k: getattr(args, k) for k in clearinginputs.SETTINGS
              if getattr(args, k, None) is not None}
    for k, v in clearinginputs.set_settings(args.db, values).items():
        print("%-16s %s" % (k, v))


def _run(args):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn)
    err = _console(stderr=True)
    through = clearing.parse_day(args.through) if args.through else None
    connect(args.db).close()   # a wrong URL or a server that is not there: one line, no bar
    started = time.perf_counter()
    with Progress(TextColumn("clearing {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[speed]}"), TimeRemainingColumn(), console=err,
                  disable=args.no_progress) as bar:
        task = bar.add_task("verify", total=None, speed="")

        def progress(total=None, advance=None, step=None):
            kw = {}
            if total is not None:
                kw["total"] = total
            if advance:
                kw["advance"] = advance
                done = bar.tasks[0].completed + advance
                kw["speed"] = "%.0f records/s" % (done / max(time.perf_counter() - started, 1e-6))
            if step:
                kw["description"] = step
            bar.update(task, **kw)

        s = clearing.run(args.db, through, args.workers, progress)
    rows = [("service days", "up to %s (%s)" % (s.through, "every day" if s.days is None else
                                                ", ".join(map(str, s.days)) or "nothing new")),
            ("records verified", "%d: %d stand, %d do not" % (s.verified, s.ok, s.bad)),
            ("signatures checked", "%d credentials (issuer), %d rides (rider), %d codes seen "
                                   "again" % (s.issuer_verifies, s.rider_verifies, s.rider_reused)),
            ("suspect readers", "%d reader-days wait for a decision, %d rides held"
             % (s.suspects, s.held)),
            ("duplicates", "%d ride codes accepted more than once (charged once)" % s.duplicates),
            ("exposure", "%d credentials past their offline limits" % s.exposure),
            ("possible sharing", "%d pairs" % s.sharing),
            ("settlement batch", "%s: %d rides, %d accounts charged, %s" % (
                s.batch_id, s.batch_rides, s.batch_accounts, _money(s.batch_amount))
             if s.batch_id else "none (nothing new to charge)"),
            ("seconds", "%.1f (verify %.1f, settle %.1f)" % (
                time.perf_counter() - started, s.seconds.get("verify", 0),
                s.seconds.get("settle", 0)))]
    from rich.table import Table
    t = Table(title="clearing run", show_header=False)
    t.add_column("what")
    t.add_column("value")
    for r in rows:
        t.add_row(*r)
    _console().print(t)
    if s.suspects:
        err.print("[bold yellow]%d suspect reader-day(s): fare clearing report lists the "
                  "evidence; fare clearing decide --reader R --day D --charge|--void[/]"
                  % s.suspects)
    return 0


def _decide(args):
    day = clearing.parse_day(args.day)
    n = clearing.decide(args.db, args.reader, day, "charge" if args.charge else "void",
                        note=args.note)
    print("reader %d on %s: %s (%d ride(s) of that day waiting; the next fare clearing run "
          "acts on it)" % (args.reader, day, "charge the rides that stand" if args.charge
                           else "charge none", n))


def _export(args):
    for p in args.out:
        check_output(p, "charge file")
    b = charges.export(args.db, args.out, args.batch)
    print("batch %s (service days through %s): %d charges, %s %s -> %s" % (
        b["batch_id"], b["through"], b["charges"], _money(b["amount"]), b["currency"],
        ", ".join(map(str, args.out))))


def _import(args):
    read_bytes(args.file, "payment results file")  # a missing or unreadable file: one line
    r = charges.import_results(args.db, args.file)
    print("%s: %d results (%d paid, %d failed): %d new, %d recorded already"
          % (args.file, r["results"], r["paid"], r["failed"], r["new"], r["already"]))


def _report(args):
    first = clearing.parse_day(args.since) if args.since else None
    last = clearing.parse_day(args.until) if args.until else None
    if args.day:
        first = last = clearing.parse_day(args.day)
    out = clearingreport.reports(args.db, first, last)
    con = _console()
    for name, title, cols, rows in out:
        con.print(_table(title, cols, rows, args.limit))
    if args.csv:
        d = Path(args.csv)
        d.mkdir(parents=True, exist_ok=True)
        for name, _, cols, rows in out:
            with open(d / (name + ".csv"), "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(cols)
                w.writerows(rows)
        print("CSV files: %s" % ", ".join(str(d / (n + ".csv")) for n, *_ in out))


def cmd_clearing(args):
    return _database_errors(args.clearing_func)(args) or 0


def _day(text):
    try:
        return clearing.parse_day(text).isoformat()
    except CentralError as e:
        raise argparse.ArgumentTypeError(str(e))


def _duration(text):
    try:
        return clearinginputs.parse_seconds(text, "duration")
    except CentralError as e:
        raise argparse.ArgumentTypeError(str(e))


def add_commands(sub):
    p = sub.add_parser("clearing", help="re-verify every ride, find duplicates and exposure, "
                                        "charge, record payments, report",
                       description="Clearing in the central store: re-verify every accepted "
                                   "ride, catch what no single reader sees, charge the accounts "
                                   "and record what they paid (docs/backoffice.md).")
    csub = p.add_subparsers(dest="clearing_command", metavar="COMMAND")
    csub.required = True
    p.set_defaults(func=cmd_clearing)

    def command(name, func, helptext, more=""):
        c = csub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:]
                            + "." + (" " + more if more else ""))
        c.add_argument("--db", required=True, metavar="URL",
                       help="the central store (postgresql://...)")
        c.set_defaults(clearing_func=func)
        return c

    c = command("load", _load, "load the issuer key ring and reader configurations",
                more="Signed files, checked against the operator key; clearing verifies the "
                     "rides with their keys, fares and rules. Loading a file again changes "
                     "nothing; every key ring version is kept (a key's retirement is dated).")
    c.add_argument("--keyring", action="append", metavar="FILE",
                   help="signed key ring (fare issuer export-keyring), repeatable")
    c.add_argument("--config", action="append", metavar="FILE",
                   help="signed reader configuration (fare config build), repeatable")
    c.add_argument("--operator-key", action="append", metavar="KEY",
                   help="check signatures with this operator key: operator.json or KID:PUBHEX "
                        "(default: $FARE_OPERATOR_KEY or the issuer directory's)")
    c.add_argument("--issuer-dir", default="issuer",
                   help="issuer directory whose operator.json is the default key")

    c = command("settings", _settings, "show or change clearing's settings")
    c.add_argument("--sharing-window", type=_duration, metavar="DURATION",
                   help="one account on two readers this close is flagged (default 60s)")
    c.add_argument("--update-grace", type=_duration, metavar="DURATION",
                   help="how long a reader may keep a replaced configuration or retired key "
                        "(default 72h)")
    c.add_argument("--currency", help="currency code of the charge files (default CNY)")

    c = command("run", _run, "clear the service days up to a day",
                more="Incremental and idempotent: only records without a verdict are verified; "
                     "a rerun, or a cut run run again, gives the same tables.")
    c.add_argument("--through", type=_day, metavar="DAY",
                   help="last service day to clear, YYYY-MM-DD (default: the last day that ended)")
    c.add_argument("--workers", type=int, metavar="N",
                   help="verify processes (default: one per core; 0: in this process)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")

    c = command("decide", _decide, "decide on a suspect reader's service day")
    c.add_argument("--reader", type=int, required=True, help="the reader id")
    c.add_argument("--day", type=_day, required=True, help="the service day, YYYY-MM-DD")
    how = c.add_mutually_exclusive_group(required=True)
    how.add_argument("--charge", action="store_true",
                     help="charge its rides that stand (the others never)")
    how.add_argument("--void", action="store_true", help="charge none of its rides")
    c.add_argument("--note", help="why (kept with the decision)")

    c = command("export-charges", _export, "write a settlement batch's charge file",
                more="CSV or JSON by the file's suffix (docs/backoffice.md, \"Charge file\").")
    c.add_argument("--batch", help="the batch id (default: the latest)")
    c.add_argument("--out", action="append", required=True, metavar="FILE",
                   help="charges.csv or charges.json, repeatable")

    c = command("import-payments", _import, "record a payment provider's results",
                more="All or nothing per file; importing a file again changes nothing.")
    c.add_argument("file", help="results file, .csv or .json (docs/backoffice.md)")

    c = command("report", _report, "per-day revenue, refusals, exposure, duplicates, sharing, "
                                   "suspect readers, unpaid accounts")
    c.add_argument("--day", type=_day, help="one service day (default: the latest cleared)")
    c.add_argument("--from", dest="since", type=_day, metavar="DAY", help="first service day")
    c.add_argument("--to", dest="until", type=_day, metavar="DAY", help="last service day")
    c.add_argument("--csv", metavar="DIR", help="also write each report as DIR/<name>.csv")
    c.add_argument("--limit", type=int, default=25, help="rows shown per table (default 25)")

    _extend_denylist_build(sub)


# -- fare denylist build --from-central ------------------------------------------------------------

def _extend_denylist_build(sub):
    """Add --from-central to the deny-list builder's `build` (the issuing package knows nothing
    of the back office; its parser is extended here, as uploadcli extends `fare sync`)."""
    dl = sub.choices.get("denylist")
    if dl is None:
        return
    build = next(a for a in dl._actions if isinstance(a, argparse._SubParsersAction)
                 ).choices["build"]
    build.add_argument("--from-central", metavar="URL",
                       help="list what clearing flags in this central store (unpaid accounts, "
                            "duplicated and suspect credentials), plus SOURCE if given; also "
                            "writes the delta against the last list built from it")
    build.add_argument("--delta-out", metavar="FILE",
                       help="with --from-central: where the delta goes (default: --out with "
                            "-delta before its suffix)")
    build.add_argument("--base", metavar="FILE",
                       help="with --from-central: the full list the readers have, when it was "
                            "not built from the central store")
    build.add_argument("--payment-grace", type=_duration, default=86400, metavar="DURATION",
                       help="with --from-central: an account is listed once a payment failed "
                            "this long ago (default 24h)")
    build.add_argument("--duplicates", type=int, default=1, metavar="N",
                       help="with --from-central: list a credential with at least N duplicated "
                            "ride codes (default 1)")
    build.add_argument("--report-csv", metavar="FILE",
                       help="with --from-central: write what came on and went off, and why")
    build.set_defaults(func=_from_central_or(build.get_default("func")))


def _from_central_or(plain):
    def run(args):
        if not getattr(args, "from_central", None):
            return plain(args)
        return _database_errors(_build_from_central)(args)
    return run


def _build_from_central(args):
    from host_tools.issuing import denylist_build, issuer
    out = Path(args.out)
    delta_out = Path(args.delta_out) if args.delta_out else out.with_name(
        out.stem + "-delta" + out.suffix)
    check_output(out, "deny list file")
    check_output(delta_out, "delta file")
    if args.report_csv:
        check_output(Path(args.report_csv), "report file")
    source = None
    if args.source:
        try:
            source = denylist_build.read_source(args.source)
        except denylist_build.SourceError as e:
            raise UserError(str(e)) from None
    base = read_bytes(args.base, "base deny list") if args.base else None
    try:
        good = list(denylist_build.read_source(args.known_good)) if args.known_good else None
    except denylist_build.SourceError as e:
        raise UserError(str(e)) from None
    salt = denylist_build.parse_salt(args.salt)
    key, kid = issuer.operator_signing(args)

    def publish(b):
        # inside the transaction that records the version: files not written, nothing recorded
        write_bytes(out, b.full, "deny list file")
        if b.delta is not None:
            write_bytes(delta_out, b.delta, "delta file")
    b = denyfeed.build(args.from_central, key, kid, args.version, args.created, args.payment_grace,
                       args.duplicates, source, base, publish, salt, args.width, good)
    print("%s: deny list v%d, %d entries (%d added, %d removed, %d kept), false-positive rate "
          "%.1e per lookup" % (out, b.version, b.entries, len(b.added), len(b.removed), b.kept,
                               b.fp_rate))
    if b.delta is not None:
        print("%s: delta v%d -> v%d, +%d -%d entries, %d bytes" % (
            delta_out, b.base_version, b.version, b.report.get("adds", 0),
            b.report.get("removes", 0), len(b.delta)))
    elif b.base_version is not None:
        print("no delta: %s; push the full list" % (
            "--salt/--width give the list a new layout" if salt is not None or args.width
            else "the new set does not fit the base list's layout"))
    if b.report.get("known_good_denied"):
        print("warning: %d of %d known-good ids are false positives of this list%s" % (
            b.report["known_good_denied"], b.report["known_good"],
            " (a delta keeps the base's salt: build a full list with --salt to move them)"
            if b.delta is not None else ""))
    rows = [("on", k, i, r, d) for k, i, r, d in b.added] + [
        ("off", k, i, why, "") for k, i, why in b.removed]
    if rows:
        _console().print(_table("What comes on and goes off the list, and why",
                                ("", "kind", "id", "why", "detail"), rows, 40))
    if args.report_csv:
        with open(args.report_csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(("change", "kind", "id", "why", "detail"))
            w.writerows(rows)
    return 0
