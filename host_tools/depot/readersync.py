"""The depot: `fare sync` brings every reader's trip records home exactly once and sends the
readers what they need; `fare report` and `fare export` read the depot database.

Exactly once: each reader's records are checked against the hash chain the depot already holds
(validator.triplog), stored with a unique (reader_id, seq), committed, and only then acknowledged,
so the reader deletes nothing the depot has not got on disk. A retry or a second run fetches from
the first record the depot does not hold. A gap, a broken chain, or a log that is not the one the
depot holds (a reader wiped or replaced under the same id) stops the reader's sync before the
damage, is recorded as an incident and is never acknowledged past; --accept-gaps and
--accept-reset are the operator's ways on, each recorded as an incident too."""
import csv
import json
import sys
import threading
import time
from pathlib import Path

from host_tools.depot import depotdb
from host_tools.common.fw import validator  # noqa: F401
from host_tools.depot.synclink import LinkError, SyncLink, open_serial
from validator import hmac256
from validator.syncproto import VERSION_FIELD
from validator import triplog as tl

PUSH_OPTIONS = (("push_denylist", "denylist"), ("push_denylist_delta", "denylist_delta"),
                ("push_keyring", "keyring"), ("push_config", "config"))
ACK_EVERY = 64 * 1024  # record bytes between acknowledgements (each preceded by a commit)
FRAMES = 16            # GET_LOGS answers streamed per request (the reader's maximum)


# -- keys ------------------------------------------------------------------------------------------

def load_keys(path):
    """Per-reader sync secrets: a directory of `<reader_id>.key` files (64 hex digits or 32 raw
    bytes), or a JSON file {"<reader_id>": "<64 hex digits>"}. Returns {reader_id: bytes}."""
    p = Path(path)
    keys = {}
    if p.is_dir():
        for f in sorted(p.glob("*.key")):
            keys[int(f.stem)] = _secret(f.read_bytes(), f)
    else:
        for rid, v in json.loads(p.read_text()).items():
            keys[int(rid)] = _secret(v.encode(), p)
    return keys


def _secret(data, where):
    if len(data) == 32:
        return bytes(data)
    try:
        key = bytes.fromhex(data.decode().strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise SystemExit("%s: a sync secret is 32 bytes (64 hex digits)" % where)
    return key


def log_key(secret):
    """The key of a reader's keyed trip-log chain, derived from its sync secret
    (docs/triplog.md, "Hash chain")."""
    return hmac256.hmac_sha256(secret, b"triplog")


# -- one reader ------------------------------------------------------------------------------------

class Result:
    def __init__(self, port):
        self.port = port
        self.reader_id = None
        self.status = "running"
        self.message = ""
        self.records_new = 0
        self.records_total = 0
        self.acked = None
        self.pushes = []
        self.time_set = None
        self.stats = {}
        self.started = time.time()
        self.finished = None

    @property
    def ok(self):
        return self.status == "ok"


class SyncProblem(Exception):
    """A reader's sync that did not do what was asked, for a reason the operator must see;
    `kind` is its status in the summary and in sync_runs."""
    kind = "problem"


class ChainProblem(SyncProblem):
    """A gap, a broken chain, or a log that is not the one the depot holds: recorded as an
    incident; nothing past it is stored or acknowledged."""
    kind = "chain"


class NotApplied(SyncProblem):
    """A push that the reader did not take because it holds a newer version."""
    kind = "not_applied"


def _seq_of(raw):
    """The sequence number in a stored record's header, or None if it is no record at all."""
    if len(raw) < tl.MIN_RECORD or raw[0] != tl.REC_MARK:
        return None
    return int.from_bytes(raw[4:8], "big")


def _prev_link(raw):
    """The chain link a record commits to, or None if it is not a well-formed record."""
    try:
        return tl.decode(raw)["prev_link"]
    except tl.RecordError:
        return None


def _runs(recs):
    """An answer's records as runs of consecutive sequence numbers, by their own headers:
    [(first seq, [record, ...])]. A record without a readable header stays in its run, for
    verify_chain to report."""
    runs = []
    prev = None
    for raw in recs:
        seq = _seq_of(raw)
        if not runs or (seq is not None and prev is not None and seq != prev + 1):
            runs.append((seq, []))
        runs[-1][1].append(raw)
        prev = seq
    return runs


class ReaderSync:
    """Syncs one reader over an open SyncLink into a DepotDB."""

    def __init__(self, link, db, result, keys, pushes=(), set_time=False, allow_back=False,
                 reboot=False, accept_gaps=False, accept_reset=False, ack_every=ACK_EVERY,
                 frames=FRAMES, progress=None, now=time.time):
        self.link = link
        self.db = db
        self.res = result
        self.keys = keys
        self.pushes = pushes
        self.set_time = set_time
        self.allow_back = allow_back
        self.reboot = reboot
        self.accept_gaps = accept_gaps
        self.accept_reset = accept_reset
        self.ack_every = ack_every
        self.frames = frames
        self.progress = progress or (lambda **kw: None)
        self.now = now
        self.rows = []          # verified records not yet committed
        self.head = None        # (seq, link) after the last verified record
        self.stored = 0         # the depot holds (committed) every record up to this one
        self.chain = None       # the chain link after record `stored`
        self.acked = 0          # the reader's ack watermark as last seen
        self.key = None         # the reader's chain key, from its sync secret
        self.confirmed = True   # the reader's log is known to hold the depot's records

    def run(self):
        info = self.link.hello()
        rid = info["id"]
        self.res.reader_id = rid
        # The verifier, not the record, decides the chain's mode (docs/triplog.md): a reader whose
        # sync secret the depot holds (hello() checked it) is always checked with its keyed chain,
        # so unkeyed records appended by someone who can write the flash never pass.
        self.key = log_key(self.keys[rid])
        self.db.set_reader_info(rid, info, int(self.now()), tl.genesis(rid))
        self.db.set_reader_health(rid, info, int(self.now()))
        self.stored, self.chain, _ = self.db.reader_state(rid)
        self.head = (self.stored, self.chain)
        self.acked = info["ack"]
        try:
            self._pull(rid, info)
        finally:
            self._commit(rid)  # what arrived verified is kept, even if the link broke
        not_applied = []
        for kind, data in self.pushes:
            self.progress(total=len(data), completed=0, unit="bytes", status="push " + kind)

            def pushed(sent, total, kind=kind):
                self.progress(completed=sent, status="push " + kind)
            outcome = self.link.push(kind, data, progress=pushed)
            self.res.pushes.append((kind, outcome))
            if outcome == "newer_installed":
                not_applied.append("%s (the reader holds version %s)"
                                   % (kind, self.link.info.get(VERSION_FIELD[kind])))
        if self.pushes:   # the heap after the installs (a failed push: its status says why)
            self.db.set_reader_health(rid, self.link.hello(), int(self.now()))
        if self.set_time:
            self.progress(status="time")
            res = self.link.set_time(int(self.now()), self.allow_back)
            self.res.time_set = res.get("time") if isinstance(res, dict) else None
        if self.reboot:
            self.link.reboot()
        if not_applied:
            raise NotApplied("reader %d: push not applied, the file is older than the reader's: %s"
                             % (rid, ", ".join(not_applied)))

    def _pull(self, rid, info):
        self._check_same_log(rid, info)
        self.progress(total=max(info["last"] - self.stored, 0), completed=0, unit="records",
                      status="logs")
        if self.stored > self.acked:  # the depot has them; the last ACK did not arrive
            self._ack(rid, self.stored)
        elif self.acked > self.stored:
            self._gap(rid, self.stored + 1, self.acked, self._ack_link(info),
                      "they are gone from the reader (acknowledged elsewhere, or the depot "
                      "database was replaced)")
        self.uncommitted = 0
        while True:
            answers = self.link.get_logs(self.head[0] + 1, frames=self.frames)
            if not answers or not answers[0][1]:
                break  # nothing more to fetch
            for _, recs in answers:
                if not recs:
                    break
                for first, run in _runs(recs):
                    if first is not None and first > self.head[0] + 1:
                        # the reader skipped records it cannot read
                        self._gap(rid, self.head[0] + 1, first - 1, _prev_link(run[0]),
                                  "the reader cannot read them (damaged flash?)")
                    self._take(rid, run)
        if self.head[0] < info["last"]:
            # the reader counts records up to `last` but served none past head: unreadable, and
            # nothing after them to anchor the chain on yet
            self._stop(rid, "gap", self.head[0] + 1, info["last"],
                       "records %d..%d are counted by the reader but it cannot read them "
                       "(damaged flash?); they can be skipped (--accept-gaps) once the reader "
                       "has records after them" % (self.head[0] + 1, info["last"]))
        self._commit(rid)
        self._ack(rid, self.stored)

    def _check_same_log(self, rid, info):
        """Whether the reader's log still holds the records that the depot has from it. A reader
        wiped or replaced under the same id numbers its records from 1 again: acknowledging the
        depot's watermark would make it delete records that the depot never had."""
        if self.stored == 0:
            return
        why = None
        if info["last"] < self.stored:
            why = "the reader's log ends at %d but the depot holds records up to %d" % (
                info["last"], self.stored)
        elif self.acked < self.stored:
            # the reader still has record `stored`: it must be the depot's (max 1 byte: the
            # reader sends that one record)
            answers = self.link.get_logs(self.stored, 1, frames=1)
            recs = answers[0][1] if answers else []
            if recs and _seq_of(recs[0]) == self.stored:
                try:
                    same = tl.link(recs[0], self.key) == self.chain
                except tl.RecordError:
                    same = False
                if not same:
                    why = "the reader's record %d is not the one the depot holds" % self.stored
            else:
                self.confirmed = False  # unreadable there: acknowledge only what chains on
        elif self.acked == self.stored and self._ack_link(info) not in (None, self.chain):
            why = "the reader's chain after record %d is not the depot's" % self.stored
        if why is None:
            return
        if not self.accept_reset:
            self._stop(rid, "reset", 1, self.stored,
                       "%s (reader wiped or replaced under the same id?); run with --accept-reset "
                       "to put the depot's records of it aside and sync it as a new log" % why,
                       ack=False)
        old = self.stored
        moved = self.db.reset_reader(rid, tl.genesis(rid), int(self.now()))
        self.db.add_incident(rid, "reset_accepted", 1, old,
                             "%s: accepted by the operator as a new log; the depot's %d records "
                             "of the old one are kept in trips_replaced" % (why, moved))
        self.stored, self.chain = 0, tl.genesis(rid)
        self.head = (self.stored, self.chain)

    @staticmethod
    def _ack_link(info):
        """The chain link after the reader's watermark, as its INFO reports it (None if not)."""
        a = info.get("alink")
        return a if isinstance(a, bytes) and len(a) == tl.LINK_SIZE else None

    def _take(self, rid, recs):
        """Check one run of records against the chain and queue them for the next commit."""
        nxt = self.head[0] + 1
        good, broken = recs, None
        try:
            link, seq = tl.verify_chain(self.head[1], recs, self.key, prev_seq=nxt - 1)
        except tl.ChainError as e:
            good, broken = recs[:e.index], e
            seq = nxt - 1 + e.index
            link = tl.link(recs[e.index - 1], self.key) if e.index else self.head[1]
        t = int(self.now())
        for raw in good:
            self.rows.append(depotdb.trip_row(rid, tl.decode(raw, self.key), raw, t))
            self.uncommitted += len(raw)
        self.head = (seq, link)
        if good:
            self.confirmed = True  # they chain on from the depot's records
        self.res.records_total += len(good)
        self.progress(advance=len(good), bytes=self.link.stats["bytes_in"])
        if broken is not None:
            self._stop(rid, "chain", seq + 1, seq + 1,
                       "hash chain broken at record %d (%s): it and the records after it "
                       "are not stored and not acknowledged" % (seq + 1, broken))
        if self.uncommitted >= self.ack_every:
            self._commit(rid)
            self._ack(rid, self.stored)
            self.uncommitted = 0

    def _commit(self, rid):
        """Store the verified records and the chain head in one committed transaction."""
        if self.head is None or self.head[0] == self.stored:
            return
        seq, link = self.head
        self.res.records_new += self.db.store_batch(rid, self.rows, seq, link, self.acked)
        self.rows = []
        self.stored, self.chain = seq, link

    def _ack(self, rid, seq):
        """Acknowledge up to `seq`: only ever records committed in the depot database."""
        if seq <= self.acked or seq > self.stored or not self.confirmed:
            return
        res = self.link.ack(seq)
        self.acked = res.get("ack", seq) if isinstance(res, dict) else seq
        self.res.acked = self.acked
        self.db.set_acked(rid, self.acked)

    def _gap(self, rid, first, last, anchor, why):
        """Records first..last are missing: stop, or with --accept-gaps record the loss and go on
        with the chain from `anchor`, the link that the record after the gap commits to."""
        self._commit(rid)
        if not self.accept_gaps:
            self._stop(rid, "gap", first, last,
                       "records %d..%d are missing: %s; they are not in the depot; run with "
                       "--accept-gaps to record the loss and go on" % (first, last, why))
        if anchor is None:
            self._stop(rid, "gap", first, last,
                       "records %d..%d are missing: %s; the reader reports no chain link to go on "
                       "from" % (first, last, why))
        self.db.add_incident(rid, "gap_accepted", first, last,
                             "records %d..%d accepted as lost by the operator (%s)" % (first, last, why))
        # The chain cannot be checked across the gap: it goes on from the link the reader reports
        # after it (what its next record commits to), and the gap stays on record as an incident.
        self.head = (last, anchor)
        self.db.store_batch(rid, [], last, anchor, self.acked)
        self.stored, self.chain = last, anchor

    def _stop(self, rid, kind, first, last, detail, ack=True):
        """Stop this reader's sync: keep the verified records, record the incident (first, so
        that it is on record whatever fails next), acknowledge what the depot holds before it."""
        self._commit(rid)
        self.db.add_incident(rid, kind, first, last, detail)
        if ack:
            try:
                self._ack(rid, self.stored)
            except LinkError as e:
                detail += "; acknowledging up to %d failed: %s" % (self.stored, e)
        raise ChainProblem("reader %d: %s" % (rid, detail))


def sync_port(path, keys, db_url, opts, progress=None, opener=open_serial):
    """Sync the reader on serial port `path`; returns a Result (never raises for reader faults)."""
    res = Result(path)
    db = None
    link = None
    port = None
    try:
        db = depotdb.connect(db_url)
        port = opener(path, getattr(opts, "baud", 115200))
        link = SyncLink(port, keys.get, timeout=getattr(opts, "timeout", 2.0),
                        retries=getattr(opts, "retries", 5))
        for attempt in (1, 2):
            try:
                ReaderSync(link, db, res, keys, pushes=opts.pushes, set_time=opts.set_time,
                           allow_back=opts.allow_time_backwards, reboot=opts.reboot,
                           accept_gaps=opts.accept_gaps,
                           accept_reset=getattr(opts, "accept_reset", False), progress=progress,
                           now=getattr(opts, "now", time.time)).run()
                break
            except LinkError as e:
                # The reader rebooted under us (power dip, watchdog): what was committed stays
                # committed; a new session picks up from there, once.
                if e.kind != "session_lost" or attempt == 2:
                    raise
        res.status = "ok"
    except (LinkError, SyncProblem) as e:
        res.status = e.kind
        res.message = str(e)
    except OSError as e:  # serial.SerialException too: the port went away under us
        res.status = "port"
        res.message = "%s: connection lost (cable pulled or adapter reset?): %s" % (path, e)
    except Exception as e:  # noqa: BLE001 -- e.g. serial.SerialException; report it per reader
        res.status = "error"
        res.message = "%s: %s" % (type(e).__name__, e)
    finally:
        res.finished = time.time()
        if link is not None:
            res.stats = dict(link.stats)
        if port is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001
                pass
        if db is not None:
            try:
                db.add_run(res.reader_id, path, int(res.started), int(res.finished), res.status,
                           res.records_new, res.stats.get("bytes_in", 0), res.message)
            finally:
                db.close()
        if progress:
            progress(status="done" if res.ok else "FAILED")
    return res


# -- the commands --------------------------------------------------------------------------------

def _find_ports():
    from serial.tools import list_ports
    return [p.device for p in list_ports.comports() if p.vid is not None]


def _read_pushes(args):
    pushes = []
    for opt, kind in PUSH_OPTIONS:
        path = getattr(args, opt, None)
        if path:
            try:
                pushes.append((kind, Path(path).read_bytes()))
            except OSError as e:
                raise SystemExit("cannot read %s: %s" % (path, e))
    return pushes


def cmd_sync(args):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    ports = list(args.port or [])
    if args.all:
        ports += [p for p in _find_ports() if p not in ports]
    if not ports:
        raise SystemExit("no ports: give --port (one or more) or --all (no USB serial ports found)")
    keys = load_keys(args.keys)
    args.pushes = _read_pushes(args)
    depotdb.connect(args.db).close()  # create the schema once, before the threads race for it
    console = Console(stderr=True)
    results = [None] * len(ports)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[unit]}"), TextColumn("{task.fields[kbytes]:.1f} KiB in"),
                  TextColumn("{task.fields[status]}"), console=console,
                  disable=args.no_progress) as bar:

        def worker(i, path):
            task = bar.add_task(path, total=None, kbytes=0.0, unit="records", status="connecting")

            def progress(total=None, completed=None, advance=None, bytes=None, unit=None,
                         status=None):
                # records while the log comes in, then the bytes of each push
                kw = {}
                if total is not None:
                    kw["total"] = total
                if completed is not None:
                    kw["completed"] = completed
                if advance:
                    kw["advance"] = advance
                if unit is not None:
                    kw["unit"] = unit
                if bytes is not None:
                    kw["kbytes"] = bytes / 1024
                if status is not None:
                    kw["status"] = status
                bar.update(task, **kw)

            res = sync_port(path, keys, args.db, args, progress)
            if res.reader_id is not None:
                bar.update(task, description="reader %d %s" % (res.reader_id, path))
            results[i] = res

        threads = [threading.Thread(target=worker, args=(i, p), daemon=True)
                   for i, p in enumerate(ports)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    table = Table(title="depot sync")
    for col in ("port", "reader", "status", "new records", "acked to", "KiB in", "pushed",
                "time set", "message"):
        table.add_column(col)
    for r in results:
        table.add_row(r.port, str(r.reader_id if r.reader_id is not None else "-"),
                      "ok" if r.ok else "FAILED (%s)" % r.status, str(r.records_new),
                      str(r.acked if r.acked is not None else "-"),
                      "%.1f" % (r.stats.get("bytes_in", 0) / 1024),
                      ", ".join("%s:%s" % p for p in r.pushes) or "-",
                      "yes" if r.time_set else "-", r.message)
    Console().print(table)
    failed = [r for r in results if not r.ok]
    for r in failed:
        console.print("[bold red]%s: %s[/]" % (r.port, r.message), soft_wrap=True, markup=True,
                      highlight=False)
    return 1 if failed else 0


def _filters(args):
    return {"day": args.day, "line": args.line, "reader_id": args.reader}


def cmd_report(args):
    from rich.console import Console
    from rich.table import Table
    db = depotdb.connect(args.db)
    rows = db.report(**_filters(args))
    incidents = db.incidents()
    health = db.health()
    db.close()
    table = Table(title="trips per day, line and reader")
    for col in ("day", "line", "reader", "trips", "accepted", "rejected", "fares"):
        table.add_column(col, justify="right" if col != "day" else "left")
    for r in rows:
        table.add_row(*[str(x) for x in r])
    Console().print(table)
    if health:
        t = Table(title="readers at their last sync: heap (bytes) and last fault")
        for col in ("reader", "at", "free", "largest free block", "lowest free", "fault"):
            t.add_column(col, justify="left" if col in ("at", "fault") else "right")
        for rid, at, free, largest, low, _work, fault in health:
            t.add_row(str(rid), time.strftime("%Y-%m-%d %H:%M", time.gmtime(at)),
                      *["-" if v is None else str(v) for v in (free, largest, low)], fault or "-")
        Console().print(t)
    if incidents:
        Console().print("[bold red]%d incident(s):[/]" % len(incidents))
        for rid, kind, a, b, detail, at in incidents:
            Console().print("  reader %s %s %d..%d: %s" % (rid, kind, a, b, detail))
    return 0


def cmd_export(args):
    db = depotdb.connect(args.db)
    rows = db.export(**_filters(args))
    db.close()
    out = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        if args.format == "json":
            json.dump(rows, out, indent=1)
            out.write("\n")
        else:
            w = csv.DictWriter(out, fieldnames=depotdb.TRIP_COLUMNS)
            w.writeheader()
            w.writerows(rows)
    finally:
        if args.out:
            out.close()
    return 0


def add_commands(sub):
    p = sub.add_parser("sync", help="pull trip logs from readers into the depot database, push "
                                    "deny lists, keys, configuration and time")
    p.add_argument("--port", action="append", help="serial port of a reader (repeatable)")
    p.add_argument("--all", action="store_true", help="every USB serial port found")
    p.add_argument("--db", default="depot.sqlite", help="depot database (SQLite file)")
    p.add_argument("--keys", required=True,
                   help="per-reader sync secrets: a directory of <reader_id>.key files or a JSON file")
    p.add_argument("--push-denylist", metavar="FILE", help="signed full deny list")
    p.add_argument("--push-denylist-delta", metavar="FILE", help="signed deny list delta")
    p.add_argument("--push-keyring", metavar="FILE", help="signed issuer key ring")
    p.add_argument("--push-config", metavar="FILE", help="signed configuration / fare table")
    p.add_argument("--set-time", action="store_true", help="set each reader's clock to this PC's")
    p.add_argument("--allow-time-backwards", action="store_true",
                   help="authorise moving a reader's clock back by more than the small bound")
    p.add_argument("--reboot", action="store_true", help="reboot each reader at the end")
    p.add_argument("--accept-gaps", action="store_true",
                   help="record missing records as lost (incident) and go on past them")
    p.add_argument("--accept-reset", action="store_true",
                   help="a reader whose log is not the one the depot holds (wiped, or replaced "
                        "under the same id): put the depot's records of it aside (incident) and "
                        "sync it as a new log")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an answer")
    p.add_argument("--retries", type=int, default=5)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_sync)

    for name, func, helptext in (("report", cmd_report, "trips per day, line and reader"),
                                 ("export", cmd_export, "export trip records (CSV or JSON)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--db", default="depot.sqlite")
        p.add_argument("--day", help="YYYY-MM-DD (UTC)")
        p.add_argument("--line", type=int)
        p.add_argument("--reader", type=int)
        if name == "export":
            p.add_argument("--format", choices=("csv", "json"), default="csv")
            p.add_argument("--out", help="file (default: standard output)")
        p.set_defaults(func=func)
