"""`fare upload`: a depot database's trip records and incidents into the central store, exactly once.

Each batch of records is sent in one central transaction: COPY into a temporary staging table,
partitions for its service days made if missing, one INSERT ... SELECT into `trips` (a record is
identified by reader, seq and the hash of its bytes; if the store holds any record of the batch
already, the batch is sent again with ON CONFLICT DO NOTHING, which skips them), its incidents,
its `upload_batches` row, COMMIT. Only then does the depot database record the batch as
confirmed (`upload_marks`). A cut anywhere (this process killed, the network or the server gone)
loses nothing and stores nothing twice: before the commit nothing is stored; after it, at most the
batches in flight (two) are sent again by the next run, and the merge skips their records.
Records are read from the depot's bytes, not its columns: the central columns are decoded from
each stored record, and a record that does not decode or names another reader becomes an incident.
docs/backoffice.md explains the protocol."""
import queue
import threading
import time
from dataclasses import dataclass, field

from host_tools.backoffice.pgconn import CentralError, connect, one_line
from host_tools.backoffice.stagerows import COPY_HEADER, COPY_TRAILER, bad_row, encode_row
from host_tools.depot import depotdb

BATCH_RECORDS = 20_000   # records per central transaction
BATCH_BYTES = 16 << 20   # and at most this many record bytes
CONNECTIONS = 2          # batches in flight at once (each on its own connection)

STAGE_COLUMNS = ("reader_id", "seq", "rec_hash", "time", "decision", "reason", "kind", "account",
                 "counter", "cred_id", "fare", "line", "stop", "keyed", "received_at", "record")
# service_day (part of the key, and the partition key) is computed by the server as the rows
# arrive: no client decides it
CREATE_STAGE = """CREATE TEMP TABLE IF NOT EXISTS fare_stage (
    reader_id bigint, seq bigint, rec_hash bytea, time bigint, decision smallint, reason smallint,
    kind text, account bigint, counter bigint, cred_id bytea, fare bigint, line bigint,
    stop bigint, keyed boolean, received_at bigint, record bytea,
    service_day date GENERATED ALWAYS AS (service_day(time)) STORED
) ON COMMIT DELETE ROWS"""
COPY_STAGE = "COPY fare_stage (%s) FROM STDIN (FORMAT BINARY)" % ", ".join(STAGE_COLUMNS)
ENSURE_DAYS = "SELECT ensure_trip_days(array_agg(DISTINCT service_day)) FROM fare_stage"
# The merge: one INSERT of the whole staged batch. The unique key of `trips` decides: if any
# record of the batch is there already (the batch was committed before a cut and is sent again,
# or another upload holding the same records got there first), the INSERT fails, the batch is
# rolled back and sent again as MERGE_RACING, which skips such records (and waits for an upload
# that is inserting them at that moment). Rows go in the order the batch was sent, key order
# (Batch.payload; a plain INSERT ... SELECT runs serially, so the staging table's order holds):
# two uploads holding some of the same records insert them in the same order and one waits for
# the other, never both for each other.
MERGE = """INSERT INTO trips (service_day, depot_id, reader_id, seq, batch_id, time, fare, line,
    stop, received_at, decision, reason, keyed, kind, account, counter, cred_id, rec_hash, record)
SELECT s.service_day, %(depot)s, s.reader_id, s.seq, %(batch)s, s.time, s.fare, s.line,
    s.stop, s.received_at, s.decision, s.reason, s.keyed, s.kind, u64_of(s.account),
    u64_of(s.counter), s.cred_id, s.rec_hash, s.record
FROM fare_stage s"""
MERGE_RACING = MERGE + "\nON CONFLICT DO NOTHING"
NEXT_BATCH = "SELECT nextval(pg_get_serial_sequence('upload_batches', 'batch_id'))"
INSERT_BATCH = ("INSERT INTO upload_batches (batch_id, depot_id, source, records, new_records, "
                "incidents, bytes) VALUES (%s, %s, %s, %s, %s, %s, %s)")
INSERT_INCIDENT = ("INSERT INTO incidents (dedupe_key, depot_id, batch_id, reader_id, kind, "
                   "seq_from, seq_to, detail, at, record) "
                   "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
INSERT_STATE = ("INSERT INTO reader_states (depot_id, reader_id, last_sync, stored_seq, chain_link, "
                "acked_seq, firmware, deny_version, keyring_version, config_version, reader_time, "
                "batch_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING")


class UploadError(CentralError):
    """The upload stopped; what was confirmed before stays confirmed, a rerun goes on from there."""


@dataclass
class Batch:
    rows: list = field(default_factory=list)       # staging rows of good records (binary COPY)
    incidents: list = field(default_factory=list)  # INSERT_INCIDENT rows without depot/batch id
    marks: list = field(default_factory=list)      # (source, reader_id, log, upto) once committed
    records: int = 0                               # depot rows covered (good and bad)
    nbytes: int = 0

    def payload(self):
        """The COPY data of the good records, in key order: two uploads that hold some of the
        same records insert them in the same order (see MERGE)."""
        if self._payload is None:
            self.rows.sort()  # a row starts with its reader and seq (big-endian, non-negative)
            self._payload = b"".join([COPY_HEADER] + self.rows + [COPY_TRAILER])
        return self._payload

    _payload: bytes = None


@dataclass
class Summary:
    depot: str = ""
    batches: int = 0
    records: int = 0        # depot records sent (good ones)
    new: int = 0            # of which the central store did not have yet
    bad: int = 0            # depot rows that became incidents
    depot_incidents: int = 0
    held: dict = field(default_factory=dict)  # reader_id -> records held back (not registered)
    nbytes: int = 0
    seconds: float = 0.0

    @property
    def skipped(self):
        return self.records - self.new

    @property
    def rate(self):
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self):
        return self.nbytes / 1e6 / self.seconds if self.seconds else 0.0


class Plan:
    """What the depot database holds that the central store has not confirmed, read as batches."""

    def __init__(self, db, store, registered, batch_records=BATCH_RECORDS, batch_bytes=BATCH_BYTES,
                 now=time.time):
        self.db = db
        self.store = store
        self.registered = registered
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
        self.now = now
        marks = db.upload_marks(store)
        self.incident_mark = marks.get(("incidents", 0), (0, 0))[1]
        self.replaced_mark = marks.get(("replaced", 0), (0, 0))[1]
        resets = db.reader_resets()
        self.readers = []   # (reader_id, log, upto) of registered readers
        self.held = {}
        self.records = self.nbytes = 0
        n, b = db.count_replaced_after(self.replaced_mark)
        self.records += n
        self.nbytes += b
        for rid in db.trip_readers():
            log = resets.get(rid, 0)
            mlog, upto = marks.get(("trips", rid), (log, 0))
            upto = upto if mlog == log else 0  # a new log of the reader starts again at 0
            n, b = db.count_trips_after(rid, upto)
            if not n:
                continue
            if rid not in registered:
                self.held[rid] = n
                continue
            self.readers.append((rid, log, upto))
            self.records += n
            self.nbytes += b
        self.depot_incidents = db.count_incidents_after(self.incident_mark)

    def batches(self):
        """Batches in order: depot incidents, records of replaced logs, each reader's records."""
        now = int(self.now())
        b = Batch()
        mark = self.incident_mark
        while True:
            rows = self.db.incidents_after(mark, self.batch_records)
            if not rows:
                break
            for row in rows:
                b.incidents.append(_depot_incident(row, self.depot_uuid))
                mark = row[0]
            b.marks.append(("incidents", 0, 0, mark))
        rowid = self.replaced_mark
        while True:
            rows = self.db.replaced_after(rowid, self.batch_records - b.records)
            if not rows:
                break
            for rowid, rid, seq, raw, received in rows:
                if rid not in self.registered and isinstance(rid, int):
                    # a replaced log of a reader that is not this depot's: an incident, since
                    # its rows cannot wait for a mark of their own
                    b.incidents.append(bad_row("reader not registered to this depot", rid, seq, raw, now))
                else:
                    self._add(b, rid, seq, raw, received, now)
            b.marks = [m for m in b.marks if m[0] != "replaced"] + [("replaced", 0, 0, rowid)]
            if self._full(b):
                yield b
                b = Batch()
        for rid, log, upto in self.readers:
            while True:
                rows = self.db.trips_after(rid, upto, self.batch_records - b.records)
                if not rows:
                    break
                for _, seq, raw, received in rows:
                    self._add(b, rid, seq, raw, received, now)
                    upto = seq
                b.marks = [m for m in b.marks if (m[0], m[1]) != ("trips", rid)]
                b.marks.append(("trips", rid, log, upto))
                if self._full(b):
                    yield b
                    b = Batch()
        if b.records or b.incidents or b.marks:
            yield b

    def _add(self, b, rid, seq, raw, received, now):
        row, bad = encode_row(rid, seq, raw, received, now)
        if row is not None:
            b.rows.append(row)
            b.nbytes += len(raw)
        else:
            b.incidents.append(bad)
        b.records += 1

    def _full(self, b):
        return b.records >= self.batch_records or b.nbytes >= self.batch_bytes


def _depot_incident(row, depot_uuid):
    id_, rid, kind, a, z, detail, at = row

    def num(v):
        return v if isinstance(v, int) and not isinstance(v, bool) and -(1 << 63) <= v < 1 << 63 else None
    return ("depot/%s/%s" % (depot_uuid, id_), num(rid), str(kind)[:40], num(a), num(z),
            str(detail)[:1000], num(at) or 0, None)


class Uploader:
    """One upload of one depot database into one central store."""

    def __init__(self, depot_path, url, depot=None, batch_records=BATCH_RECORDS,
                 batch_bytes=BATCH_BYTES, connections=CONNECTIONS, progress=None, hook=None,
                 now=time.time):
        self.depot_path = str(depot_path)
        self.url = url
        self.depot_name = depot
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
        self.connections = max(1, connections)
        self.progress = progress or (lambda **kw: None)
        self.hook = hook or (lambda step: None)   # tests cut the upload at each step
        self.now = now

    def run(self):
        t0 = time.perf_counter()
        try:
            reader_db = depotdb.open_existing(self.depot_path)
            mark_db = depotdb.open_existing(self.depot_path)
        except depotdb.NotADepotDB as e:
            raise UploadError(str(e).replace("check --db", "check --from"))
        conns = []
        try:
            depot_uuid = mark_db.identity()
            for _ in range(self.connections):
                conns.append(connect(self.url))
            return self._run(conns, reader_db, mark_db, depot_uuid, t0)
        finally:
            for c in conns:
                c.close()
            reader_db.close()
            mark_db.close()

    def _whoami(self, conn):
        import psycopg
        try:
            store = dict(conn.execute("SELECT key, value FROM settings").fetchall())["store_id"]
            mine = conn.execute("SELECT depot_id, name FROM depots WHERE role_name = current_user"
                                ).fetchone()
            if self.depot_name is not None:
                named = conn.execute("SELECT depot_id, name FROM depots WHERE name = %s",
                                     (self.depot_name,)).fetchone()
                if named is None:
                    raise UploadError("no depot %s in the central store (fare central add-depot)"
                                      % self.depot_name)
                if mine is not None and mine != named:
                    raise UploadError("connected as depot %s's role, not %s's" % (mine[1], named[1]))
                mine = named
            if mine is None:
                raise UploadError("connected as %s, which is no depot's role: connect as the "
                                  "depot's role, or name the depot (--depot)" % conn.info.user)
            registered = {r[0] for r in conn.execute(
                "SELECT reader_id FROM readers WHERE depot_id = %s", (mine[0],))}
        except (psycopg.errors.UndefinedTable, KeyError):
            raise UploadError("%s is not a central store: run fare central init first"
                              % conn.info.dbname)
        return store, mine[0], mine[1], registered

    def _run(self, conns, reader_db, mark_db, depot_uuid, t0):
        """Batches go to the connections in turn, each in a thread of its own (the server works
        on one batch while the next is staged on the other connection). Commits may complete out
        of order; the depot's marks are written strictly in batch order, for the batches whose
        earlier batches are all committed: a mark never covers a batch that is not committed, and
        at most len(conns) batches are ever committed and not marked."""
        store, depot_id, depot_name, registered = self._whoami(conns[0])
        for c in conns:
            c.execute(CREATE_STAGE)
        plan = Plan(reader_db, store, registered, self.batch_records, self.batch_bytes, self.now)
        plan.depot_uuid = depot_uuid
        s = Summary(depot=depot_name, held=dict(plan.held), depot_incidents=0)
        self.progress(total=plan.records, completed=0, nbytes=0)
        free = queue.Queue()
        for c in conns:
            free.put(c)
        done = queue.Queue()
        state = {"inflight": 0, "next": 0, "pending": {}, "failed": None}

        def send(i, b, conn):
            try:
                out = (i, b, self._send(conn, b, depot_id, depot_uuid), None)
            except BaseException as e:  # noqa: BLE001 -- the main thread raises it
                out = (i, b, None, e)
            free.put(conn)  # free before done: the main thread finds it free when it hears
            done.put(out)

        def settle(block):
            """Take the batches that finished (waiting for one if `block`)."""
            while state["inflight"]:
                try:
                    i, b, new, err = done.get(block=block)
                except queue.Empty:
                    return
                block = False
                state["inflight"] -= 1
                if err is not None:
                    if state["failed"] is None:
                        state["failed"] = (i, err)
                    continue
                self.hook("committed")
                state["pending"][i] = (b, new)
                while state["next"] in state["pending"] and (
                        state["failed"] is None or state["next"] < state["failed"][0]):
                    b, new = state["pending"].pop(state["next"])
                    mark_db.set_upload_marks(store, b.marks, int(self.now()))
                    self.hook("marked")
                    _account(s, b, new)
                    s.seconds = time.perf_counter() - t0
                    self.progress(advance=b.records, nbytes=s.nbytes)
                    state["next"] += 1

        feed = _Prefetch(plan.batches())
        try:
            for i, b in enumerate(feed):
                # a window of len(conns) batches from the first one not yet marked: at a cut, at
                # most that many are committed without their mark (and sent again)
                while state["failed"] is None and (free.empty() or i - state["next"] >= len(conns)):
                    settle(block=True)  # (something is in flight whenever this waits)
                settle(block=False)
                if state["failed"] is not None:
                    break
                self.hook("read")
                state["inflight"] += 1
                threading.Thread(target=send, args=(i, b, free.get()), daemon=True).start()
            while state["inflight"]:
                settle(block=True)
            if state["failed"] is not None:
                i, err = state["failed"]
                raise _as_upload_error(err, i + 1)
            try:
                self._finish(conns[0], reader_db, depot_id, depot_uuid, registered, s)
            except BaseException as e:
                raise _as_upload_error(e, s.batches + 1)
        finally:
            while state["inflight"]:  # leaving early (an error, a signal): wait, mark nothing more
                done.get()
                state["inflight"] -= 1
            feed.close()
        s.seconds = time.perf_counter() - t0
        return s

    def _send(self, conn, b, depot_id, depot_uuid):
        """One batch in one transaction; returns how many records were new centrally."""
        import psycopg
        try:
            return self._send_once(conn, b, depot_id, depot_uuid, MERGE)
        except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
            # some of these records are there already (see MERGE; rows go in key order, so a
            # deadlock is not expected; if one were, it is retried the same way)
            return self._send_once(conn, b, depot_id, depot_uuid, MERGE_RACING)

    def _send_once(self, conn, b, depot_id, depot_uuid, merge):
        with conn.transaction():
            batch_id = conn.execute(NEXT_BATCH).fetchone()[0]
            new = 0
            cur = conn.cursor()
            if b.rows:
                with cur.copy(COPY_STAGE) as cp:
                    cp.write(b.payload())
                self.hook("copied")
                cur.execute(ENSURE_DAYS)
                cur.execute(merge, {"depot": depot_id, "batch": batch_id})
                new = cur.rowcount
                self.hook("merged")
            if b.incidents:
                cur.executemany(INSERT_INCIDENT, [
                    (k, depot_id, batch_id, rid, kind, a, z, detail, at, rec)
                    for k, rid, kind, a, z, detail, at, rec in b.incidents])
            cur.execute(INSERT_BATCH, (batch_id, depot_id, depot_uuid, b.records, new,
                                       len(b.incidents), b.nbytes))
            self.hook("batch")
        return new

    def _finish(self, conn, reader_db, depot_id, depot_uuid, registered, s):
        """The depot's view of its readers (chain heads, versions), and a held reader noted once."""
        now = int(self.now())
        states = [r for r in reader_db.reader_states() if r[0] in registered
                  and isinstance(r[2], bytes) and all(isinstance(v, int) for v in (r[1], r[3]))]
        with conn.transaction():
            batch_id = conn.execute(NEXT_BATCH).fetchone()[0]
            cur = conn.cursor()
            cur.executemany(INSERT_STATE, [
                (depot_id, r[0], r[9] or 0, r[1], r[2], r[3], None if r[4] is None else str(r[4])[:40],
                 r[5], r[6], r[7], r[8], batch_id) for r in states])
            cur.executemany(INSERT_INCIDENT, [
                ("unregistered/%s/%s" % (depot_id, rid), depot_id, batch_id, _int_or_none(rid),
                 "reader_not_registered", None, None,
                 "the depot holds records of reader %s, which is not registered to it: "
                 "they are held until it is (fare central add-readers)" % rid, now, None)
                for rid in s.held])
            cur.execute(INSERT_BATCH, (batch_id, depot_id, depot_uuid, 0, 0, len(s.held), 0))


def _int_or_none(v):
    return v if type(v) is int and -(1 << 63) <= v < 1 << 63 else None


def _account(s, b, new):
    s.batches += 1
    s.records += len(b.rows)
    s.new += new
    s.nbytes += b.nbytes
    s.bad += sum(1 for i in b.incidents if i[2] == "bad_record")
    s.depot_incidents += sum(1 for i in b.incidents if i[0].startswith("depot/"))


def _as_upload_error(e, batch):
    import psycopg
    if isinstance(e, psycopg.Error):
        return UploadError(_why(e, batch))
    return e


def _why(e, batch):
    import psycopg
    if isinstance(e, psycopg.errors.DiskFull):
        what = "the central store is out of disk space"
    elif isinstance(e, psycopg.errors.InsufficientPrivilege):
        what = "the central store refused it"
    elif isinstance(e, psycopg.OperationalError):
        what = "the connection to the central store was lost"
    else:
        what = "the central store refused batch %d" % batch
    return ("%s (%s); batches before %d are confirmed, rerun fare upload to go on"
            % (what, one_line(e), batch))


class _Prefetch:
    """Reads and encodes the next batch in a thread while the central store merges this one."""

    _END = object()

    def __init__(self, batches):
        self.q = queue.Queue(maxsize=1)
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, args=(batches,), daemon=True)
        self.t.start()

    def _run(self, batches):
        try:
            for b in batches:
                b.payload()  # built here, while the central store works on the batch before
                while not self.stop.is_set():
                    try:
                        self.q.put(b, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self.stop.is_set():
                    return
            self.q.put(self._END)
        except BaseException as e:  # noqa: BLE001 -- handed to the consumer
            self.q.put(e)

    def __iter__(self):
        while True:
            item = self.q.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        self.stop.set()
        try:
            while True:
                self.q.get_nowait()
        except queue.Empty:
            pass
        self.t.join(timeout=5)
