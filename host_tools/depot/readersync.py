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
import os
import sys
import threading
import time
from pathlib import Path

from host_tools.common import serviceday, signedcheck
from host_tools.common.clierrors import UserError, check_output, read_bytes, read_text
from host_tools.depot import depotconfig, depotdb
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
    bytes), or a JSON file {"<reader_id>": "<64 hex digits>"}. Returns {reader_id: bytes}.
    Anything else ends the command with one line (UserError)."""
    p = Path(path)
    keys = {}
    if p.is_dir():
        for f in sorted(p.glob("*.key")):
            if not f.stem.isdigit():
                raise UserError("%s: a sync secret file is named <reader id>.key" % f)
            keys[int(f.stem)] = _secret(read_bytes(f, "sync secret"), f)
        if not keys:
            raise UserError("--keys %s has no <reader id>.key files (fare provision writes them "
                            "to the depot-keys folder)" % p)
        return keys
    if not p.exists():
        raise UserError("--keys %s does not exist: give the depot-keys folder that fare "
                        "provision writes, or a JSON file of secrets" % p)
    text = read_text(p, "--keys file")
    try:
        items = json.loads(text).items()
        for rid, v in items:
            keys[int(rid)] = _secret(v.encode(), p)
    except (ValueError, AttributeError, TypeError):
        raise UserError("--keys %s is neither a folder of <reader id>.key files nor a JSON "
                        "file {\"<reader id>\": \"<64 hex digits>\"}" % p) from None
    return keys


def _secret(data, where):
    if len(data) == 32:
        return bytes(data)
    try:
        key = bytes.fromhex(data.decode().strip())
    except (ValueError, UnicodeDecodeError):
        key = b""
    if len(key) != 32:
        raise UserError("%s: a sync secret is 32 bytes (64 hex digits)" % where)
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
        self.warnings = []      # what the reader said is wrong with it (INFO's file_errors)
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
        bad_files = info.get("file_errors")
        if isinstance(bad_files, dict):  # the reader runs without a file it was given
            self.res.warnings = ["its %s does not load (%s)" % (k, v)
                                 for k, v in sorted(bad_files.items(), key=str)]
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
            if outcome == "installed":
                self.res.warnings = [w for w in self.res.warnings
                                     if not w.startswith("its %s " % kind)]
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
    """Sync the reader on serial port `path`; returns a Result (never raises for reader faults,
    a port that fails, or a depot database held by another writer)."""
    res = Result(path)
    db = None
    link = None
    port = None

    def waiting(seconds, holder):
        if progress and seconds >= 1:
            progress(status="waiting for the depot DB lock (%s)" % holder)
    try:
        db = depotdb.connect(db_url, lock_wait=getattr(opts, "db_wait", depotdb.LOCK_WAIT),
                             on_wait=waiting)
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
    except depotdb.DBLocked as e:
        res.status = "db_locked"
        res.message = str(e)
    except OSError as e:  # serial.SerialException too: the port went away under us
        res.status = "port"
        res.message = "connection lost (cable pulled or adapter reset?): %s" % e
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
            except depotdb.DBLocked:
                if res.ok:
                    res.status = "db_locked"
                    res.message = ("the records are stored, but this sync run could not be "
                                   "logged: the depot database stayed locked")
            finally:
                db.close()
        if progress:
            progress(status="done" if res.ok else "FAILED")
    return res


# -- the commands --------------------------------------------------------------------------------

def _find_ports():
    from serial.tools import list_ports
    return [p.device for p in list_ports.comports() if p.vid is not None]


def checked_pushes(args, cfg):
    """[(kind, file bytes)] of the --push-* files, each checked on the host as a reader would
    check it (kind, length, signature against the operator key), before any reader is
    connected: a wrong or damaged file stops the command with one line."""
    wanted = [(opt, kind, getattr(args, opt, None)) for opt, kind in PUSH_OPTIONS
              if getattr(args, opt, None)]
    if not wanted:
        return []
    specs = list(getattr(args, "operator_key", None) or [])
    if not specs and cfg.operator_key:
        specs = [cfg.operator_key]
    if not specs and signedcheck.default_operator_key():
        specs = [signedcheck.default_operator_key()]
    if not specs:
        raise UserError("files to push are checked against the operator key first: give "
                        "--operator-key (operator.json or KID:PUBHEX), or [operator] key in "
                        "the depot configuration")
    ops = signedcheck.operator_keys(specs)
    pushes = []
    for opt, kind, path in wanted:
        _, data = signedcheck.check_file(path, signedcheck.KIND_BY_NAME[kind], ops,
                                         what="--%s %s" % (opt.replace("_", "-"), path))
        pushes.append((kind, data))
    return pushes


def _port_name(path):
    """A port as the summary shows it: without the /dev/ every port has."""
    return path[5:] if path.startswith("/dev/") else path


# How the summary names pushes and their outcomes (docs/sync-protocol.md)
PUSH_KIND = {"denylist": "denylist", "denylist_delta": "delta", "keyring": "keyring",
             "config": "config"}
PUSH_TEXT = {"installed": "new", "already": "had", "newer_installed": "newer"}


def summary_table(results):
    """The table `fare sync` prints at the end: one row per port, narrow enough for 80 columns
    (each reader's failure is printed under it, in full). Pushes: `new` installed, `had` the
    reader had that version, `newer` the reader has a newer one."""
    from rich import box
    from rich.table import Table
    ok = sum(1 for r in results if r.ok)
    table = Table(title="depot sync: %d reader port(s), %d ok, %d failed"
                  % (len(results), ok, len(results) - ok), box=box.SIMPLE_HEAD,
                  title_justify="left", collapse_padding=True)
    table.add_column("port", overflow="fold", min_width=7, max_width=24)
    table.add_column("reader", justify="right", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("new", justify="right", no_wrap=True)
    table.add_column("acked", justify="right", no_wrap=True)
    table.add_column("pushed", no_wrap=True)
    table.add_column("clock", no_wrap=True)
    for r in results:
        table.add_row(_port_name(r.port), str(r.reader_id if r.reader_id is not None else "-"),
                      "ok" if r.ok else "FAILED", str(r.records_new),
                      str(r.acked if r.acked is not None else "-"),
                      "\n".join("%s: %s" % (PUSH_KIND.get(k, k), PUSH_TEXT.get(o, o))
                                for k, o in r.pushes) or "-",
                      "set" if r.time_set else "-")
    return table


def summary_notes(results):
    """Lines under the table: each failure and warning once, naming the reader and port
    (a failure several readers share, such as a locked database, is said once)."""
    lines = []
    seen = {}
    for r in results:
        who = ("reader %d on %s" % (r.reader_id, _port_name(r.port)) if r.reader_id is not None
               else _port_name(r.port))
        if not r.ok:
            seen.setdefault((r.status, r.message), []).append(who)
        for w in r.warnings:
            lines.append(("warning", "%s: %s" % (who, w)))
    for (status, message), whos in seen.items():
        lines.append(("FAILED", "%s (%s): %s" % (", ".join(whos), status, message)))
    return lines


def cmd_sync(args):
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    ports = list(args.port or [])
    if args.all:
        ports += [p for p in _find_ports() if p not in ports]
    if not ports:
        raise UserError("no ports: give --port (one or more) or --all (no USB serial ports found)")
    if args.db_wait < 0:
        raise UserError("--db-wait must be 0 or more seconds")
    keys = load_keys(args.keys)
    cfg = depotconfig.for_args(args)
    args.pushes = checked_pushes(args, cfg)
    console = Console(stderr=True)
    said = []

    def waiting(seconds, holder):
        if not said:
            said.append(seconds)
            console.print("waiting for the depot database %s: another writer holds it (%s); "
                          "giving up after %.0f s (--db-wait)" % (args.db, holder, args.db_wait),
                          highlight=False, soft_wrap=True, markup=False)
    # create the schema and check the lock once, before any reader is connected
    db = depotdb.connect(args.db, lock_wait=args.db_wait, on_wait=waiting)
    try:
        db.check_writable()
    finally:
        db.close()
    results = [None] * len(ports)
    with depotdb.WriterNote(args.db), \
            Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                     TextColumn("{task.fields[unit]}"),
                     TextColumn("{task.fields[kbytes]:.1f} KiB in"),
                     TextColumn("{task.fields[status]}"), console=console,
                     disable=args.no_progress) as bar:

        def worker(i, path):
            res = Result(path)
            try:
                task = bar.add_task(_port_name(path), total=None, kbytes=0.0, unit="records",
                                    status="connecting")

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
                    bar.update(task, description="reader %d %s" % (res.reader_id,
                                                                   _port_name(path)))
            except Exception as e:  # noqa: BLE001 -- a bug: still a row in the summary
                res.status = "error"
                res.message = "%s: %s" % (type(e).__name__, e)
            finally:
                results[i] = res

        threads = [threading.Thread(target=worker, args=(i, p), daemon=True)
                   for i, p in enumerate(ports)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    Console().print(summary_table(results))
    for mark, line in summary_notes(results):  # one line each, whatever the width
        console.print("%s %s" % ("[bold red]FAILED[/]" if mark == "FAILED" else
                                 "[yellow]warning[/]", escape(line)), highlight=False,
                      soft_wrap=True)
    return 1 if any(not r.ok for r in results) else 0


def _day_filter(args):
    if args.day is None:
        return None
    try:
        return serviceday.parse_day(args.day)
    except ValueError as e:
        raise UserError("--day: %s" % e) from None


def _day_note(cfg):
    return "days are %s (%s)" % (cfg.day.describe(), "from %s" % cfg.source if cfg.source else
                                 "no depot configuration: set [service_day] in depot.toml, or "
                                 "--time-zone and --day-starts")


def cmd_report(args):
    from rich.console import Console
    from rich.table import Table
    cfg = depotconfig.for_args(args)
    day = _day_filter(args)
    if args.out:
        check_output(args.out, "report file")
    db = depotdb.connect(args.db, readonly=True)
    try:
        rows = db.report(cfg.day, day, line=args.line, reader_id=args.reader)
        incidents = db.incidents()
        health = db.health()
    finally:
        db.close()
    table = Table(title="trips per service day, line and reader")
    for col in ("service day", "line", "reader", "trips", "accepted", "rejected",
                "fares (minor units)"):
        table.add_column(col, justify="left" if col == "service day" else "right")
    for r in rows:
        table.add_row(*[str(x) for x in r])
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    try:
        console = Console(file=out, width=100) if out else Console()
        console.print(table)
        console.print(_day_note(cfg), soft_wrap=True, highlight=False, markup=False)
        if not rows:
            console.print("no trips%s%s%s in %s" % (
                " on service day %s" % day if day else "",
                " on line %d" % args.line if args.line is not None else "",
                " from reader %d" % args.reader if args.reader is not None else "", args.db),
                highlight=False, markup=False)
        if health:
            t = Table(title="readers at their last sync: heap (bytes) and last fault")
            for col in ("reader", "at (UTC)", "free", "largest free block", "lowest free",
                        "fault"):
                t.add_column(col, justify="left" if col in ("at (UTC)", "fault") else "right")
            for rid, at, free, largest, low, _work, fault in health:
                t.add_row(str(rid), time.strftime("%Y-%m-%d %H:%M", time.gmtime(at)),
                          *["-" if v is None else str(v) for v in (free, largest, low)],
                          fault or "-")
            console.print(t)
        if incidents:
            console.print("[bold red]%d incident(s):[/]" % len(incidents))
            for rid, kind, a, b, detail, at in incidents:
                console.print("  reader %s %s %d..%d: %s" % (rid, kind, a, b, detail),
                              highlight=False, markup=False)
    finally:
        if out:
            out.close()
    if args.out:
        print("report written to %s" % args.out)
    return 0


def _csv_value(v):
    return ("true" if v else "false") if isinstance(v, bool) else v


def cmd_export(args):
    cfg = depotconfig.for_args(args)
    day = _day_filter(args)
    if args.out:
        check_output(args.out, "export file")
    db = depotdb.connect(args.db, readonly=True)
    tmp = None
    try:
        if args.out:  # written whole or not at all: a temporary file renamed into place
            tmp = Path(args.out).with_name(".%s.tmp-%d" % (Path(args.out).name, os.getpid()))
            out = open(tmp, "w", newline="", encoding="utf-8")
        else:
            out = sys.stdout
        n = 0
        rows = db.export(cfg.day, day, line=args.line, reader_id=args.reader)
        if args.format == "json":
            out.write('{"time_zone": %s, "service_day_starts": %d, "trips": [' % (
                json.dumps(cfg.day.zone), cfg.day.day_start_hour))
            for row in rows:
                out.write("%s\n %s" % ("," if n else "", json.dumps(row)))
                n += 1
            out.write("\n]}\n")
        else:
            w = csv.DictWriter(out, fieldnames=depotdb.EXPORT_COLUMNS)
            w.writeheader()
            for row in rows:
                w.writerow({k: _csv_value(v) for k, v in row.items()})
                n += 1
        if tmp is not None:
            out.close()
            os.replace(tmp, args.out)
            tmp = None
    finally:
        db.close()
        if tmp is not None:
            out.close()
            tmp.unlink()
    print("%d trips exported%s; %s" % (n, " to %s" % args.out if args.out else "",
                                       _day_note(cfg)),
          file=sys.stdout if args.out else sys.stderr)
    return 0


def add_commands(sub):
    p = sub.add_parser(
        "sync", help="pull trip logs from readers into the depot database, push deny lists, "
                     "keys, configuration and time",
        description="Sync readers over their serial ports, all at once: every trip record comes "
        "home exactly once (stored and committed before the reader is told to delete it), then "
        "the files given are pushed (each checked against the operator key first) and the "
        "clock is set. A summary table follows; the exit status is non-zero if any reader "
        "failed. See docs/sync-protocol.md.")
    p.add_argument("--port", action="append", help="serial port of a reader (repeatable)")
    p.add_argument("--all", action="store_true", help="every USB serial port found")
    p.add_argument("--db", default="depot.sqlite",
                   help="depot database, an SQLite file, created if new (default depot.sqlite)")
    p.add_argument("--db-wait", type=float, default=depotdb.LOCK_WAIT, metavar="SECONDS",
                   help="how long to wait for another program that holds the database's write "
                   "lock before giving up (default %.0f); nothing is lost by giving up"
                   % depotdb.LOCK_WAIT)
    p.add_argument("--keys", required=True,
                   help="per-reader sync secrets: a directory of <reader_id>.key files (fare "
                   "provision's depot-keys) or a JSON file")
    p.add_argument("--push-denylist", metavar="FILE", help="signed full deny list")
    p.add_argument("--push-denylist-delta", metavar="FILE", help="signed deny list delta")
    p.add_argument("--push-keyring", metavar="FILE", help="signed issuer key ring")
    p.add_argument("--push-config", metavar="FILE", help="signed configuration / fare table")
    p.add_argument("--operator-key", action="append", metavar="KEY",
                   help="the operator's public key that pushed files must be signed by: "
                   "operator.json or KID:PUBHEX (default: [operator] key of the depot "
                   "configuration, $FARE_OPERATOR_KEY, or ./issuer/operator.json); repeatable")
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
    p.add_argument("--baud", type=int, default=115200,
                   help="serial speed of the readers' sync port (default 115200)")
    p.add_argument("--timeout", type=float, default=2.0,
                   help="seconds to wait for an answer (default 2)")
    p.add_argument("--retries", type=int, default=5,
                   help="times a request is sent again when no answer comes (default 5)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (for logs and scripts); the summary is printed")
    depotconfig.add_options(p, service_day=False)
    p.set_defaults(func=cmd_sync)

    for name, func, helptext, desc in (
            ("report", cmd_report, "trips per service day, line and reader",
             "Count the trips in the depot database per service day, line and reader (accepted, "
             "rejected, fares in minor currency units), and list the incidents. The database "
             "is only read."),
            ("export", cmd_export, "export trip records (CSV or JSON)",
             "Write the trip records of the depot database as CSV or JSON, one per trip, with "
             "Unix and local ISO 8601 times, the service day, the decision and its reason by "
             "name (docs/exports.md). The database is only read.")):
        p = sub.add_parser(name, help=helptext, description=desc + " Days are the operator's "
                           "service days in its time zone (the depot configuration, or "
                           "--time-zone and --day-starts).")
        p.add_argument("--db", default="depot.sqlite",
                       help="depot database (default depot.sqlite); it must exist")
        p.add_argument("--day", metavar="YYYY-MM-DD", help="only this service day")
        p.add_argument("--line", type=int, help="only this line")
        p.add_argument("--reader", type=int, help="only this reader id")
        depotconfig.add_options(p)
        if name == "export":
            p.add_argument("--format", choices=("csv", "json"), default="csv",
                           help="csv (default) or json")
            p.add_argument("--out", help="file (default: standard output); written whole or "
                           "not at all")
        else:
            p.add_argument("--out", help="also write the report to this text file")
        p.set_defaults(func=func)
