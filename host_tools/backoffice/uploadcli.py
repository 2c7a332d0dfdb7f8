"""`fare upload` and `fare sync --upload-to`: the upload with a progress bar and a summary."""
import time

from host_tools.backoffice.pgconn import CentralError
from host_tools.backoffice.upload import BATCH_RECORDS, Uploader


def upload_with_progress(depot_path, url, depot=None, batch_records=BATCH_RECORDS,
                         no_progress=False, console=None):
    """Run an upload with a progress bar and print its summary; returns the exit status."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    err = console or Console(stderr=True)
    started = time.perf_counter()
    with Progress(TextColumn("upload {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("records"), TextColumn("{task.fields[speed]}"), TimeRemainingColumn(),
                  console=err, disable=no_progress) as bar:
        task = bar.add_task(str(depot_path), total=None, speed="")

        def progress(total=None, completed=None, advance=None, nbytes=None):
            kw = {}
            if total is not None:
                kw["total"] = total
            if completed is not None:
                kw["completed"] = completed
            if advance:
                kw["advance"] = advance
            if nbytes is not None:
                dt = max(time.perf_counter() - started, 1e-6)
                done = bar.tasks[0].completed + (advance or 0)
                kw["speed"] = "%.0f rec/s %.1f MB/s" % (done / dt, nbytes / 1e6 / dt)
            bar.update(task, **kw)

        try:
            s = Uploader(depot_path, url, depot=depot, batch_records=batch_records,
                         progress=progress).run()
        except CentralError as e:
            bar.stop()
            err.print("[bold red]upload failed:[/] %s" % e, soft_wrap=True, highlight=False)
            return 1
    table = Table(title="upload of %s (depot %s)" % (depot_path, s.depot), show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in (("records sent", s.records), ("new in the central store", s.new),
                        ("already there (skipped)", s.skipped), ("bad records (incidents)", s.bad),
                        ("depot incidents sent", s.depot_incidents),
                        ("held back (readers not registered)", sum(s.held.values())),
                        ("batches committed", s.batches), ("MB", "%.1f" % (s.nbytes / 1e6)),
                        ("seconds", "%.2f" % s.seconds), ("records/s", "%.0f" % s.rate),
                        ("MB/s", "%.1f" % s.mb_per_s)):
        table.add_row(what, str(value))
    Console().print(table)
    if s.bad:
        err.print("[bold yellow]%d depot record(s) are not good trip records: recorded as "
                  "incidents (kind bad_record) in the central store[/]" % s.bad, highlight=False)
    if s.held:
        err.print("[bold red]held back: %s: not registered to depot %s (fare central add-readers "
                  "%s ...), sent once registered[/]" % (
                      ", ".join("reader %s (%d records)" % kv for kv in sorted(s.held.items(), key=str)),
                      s.depot, s.depot), soft_wrap=True, highlight=False)
        return 1
    return 0


def cmd_upload(args):
    return upload_with_progress(args.source, args.to, depot=args.depot,
                                batch_records=args.batch, no_progress=args.no_progress)


def _positive(text):
    import argparse
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 1_000_000:
        raise argparse.ArgumentTypeError("a number of records from 1 to 1,000,000, not %r" % text)
    return n


def _add_upload_options(p, prefix=""):
    p.add_argument("--%sdepot" % prefix, metavar="NAME",
                   help="the depot's name in the central store (needed only when connecting as "
                        "an administrator, not as the depot's own role)")


def add_commands(sub):
    p = sub.add_parser("upload", help="send a depot database's trip records and incidents to the "
                                      "central store, exactly once",
                       description="Send what the central store has not confirmed of a depot "
                                   "database, in batches of one transaction each; a cut "
                                   "anywhere is simply run again (docs/backoffice.md).")
    p.add_argument("--from", dest="source", default="depot.sqlite", metavar="DEPOT_DB",
                   help="the depot database (SQLite file)")
    p.add_argument("--to", required=True, metavar="URL", help="the central store (postgresql://...)")
    _add_upload_options(p)
    p.add_argument("--batch", type=_positive, default=BATCH_RECORDS,
                   help="records per central transaction (default %d)" % BATCH_RECORDS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_upload)

    # `fare sync --upload-to URL`: the depot's sync command, then this upload. The depot package
    # knows nothing of the back office; the option is added to its parser here.
    sync = sub.choices.get("sync")
    if sync is not None:
        sync.add_argument("--upload-to", metavar="URL",
                          help="after the sync, upload the depot database to this central store "
                               "(fare upload)")
        _add_upload_options(sync, "upload-")
        sync.set_defaults(func=_sync_then_upload(sync.get_default("func")))


def _sync_then_upload(sync_func):
    def run(args):
        status = sync_func(args)
        if getattr(args, "upload_to", None):
            # the records that came home are sent up even if some reader failed
            status = max(status or 0, upload_with_progress(args.db, args.upload_to,
                                                           depot=args.upload_depot,
                                                           no_progress=args.no_progress))
        return status
    return run
