"""The depot database: every SQL statement of the depot tools, in one place.

SQLite by default (WAL, synchronous=FULL: a commit is on disk before the reader is told to delete
anything). The SQL is standard (ON CONFLICT ... DO NOTHING/UPDATE works in SQLite >= 3.24 and
PostgreSQL >= 9.5); the few dialect differences (blob type, generated ids, placeholders) are the
`Dialect` below, so a central PostgreSQL can replace SQLite by adding a connect function.

One row per trip record, unique on (reader_id, seq) (the records of a reader's replaced log are
moved to trips_replaced). Accounts and counters are unsigned 64-bit,
beyond SQL's signed BIGINT, so they are stored as decimal text.

Reports and exports open the database read-only and refuse a file that is not a depot database;
only a sync creates one. A write that finds another writer's lock waits (LOCK_WAIT, saying so
through `on_wait`), then gives up with DBLocked: each transaction is committed whole or not at
all, and a reader is acknowledged only records already committed, so nothing is lost."""
import datetime
import json
import os
import socket
import sqlite3
import time
import urllib.parse
from pathlib import Path

from host_tools.common import serviceday
from host_tools.common.clierrors import UserError
from host_tools.common.fw import validator  # noqa: F401
from validator import reasons

# How long a writer waits in all for another writer's lock before it gives up (fare sync
# --db-wait), and how long one attempt waits inside SQLite before the wait is reported.
LOCK_WAIT = 30.0
LOCK_ATTEMPT = 1.0
# The tables every depot database has: a file without them is not one
DEPOT_TABLES = ("trips", "readers", "sync_runs", "trips_replaced", "incidents")


class NotADepotDB(UserError):
    """The file is missing, is not an SQLite database, or is another application's."""


class DBLocked(UserError):
    """Another writer held the database for longer than the depot waits: nothing was written
    (the transaction was rolled back), so the records are still on the reader."""


class Dialect:
    def __init__(self, name, blob, serial_pk, placeholder):
        self.name = name
        self.blob = blob
        self.serial_pk = serial_pk
        self.placeholder = placeholder


SQLITE = Dialect("sqlite", "BLOB", "INTEGER PRIMARY KEY", "?")
POSTGRES = Dialect("postgres", "BYTEA", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "%s")

# One trip record (trips; trips_replaced keeps the same columns for a replaced reader's log)
TRIP_COLUMNS_SQL = """        reader_id   BIGINT NOT NULL,
        seq         BIGINT NOT NULL,
        time        BIGINT NOT NULL,
        day         CHAR(10) NOT NULL,
        decision    SMALLINT NOT NULL,
        reason      SMALLINT NOT NULL,
        kind        VARCHAR(8) NOT NULL,
        account     VARCHAR(20) NOT NULL,
        counter     VARCHAR(20) NOT NULL,
        cred_id     VARCHAR(32) NOT NULL,
        fare        BIGINT NOT NULL,
        line        BIGINT NOT NULL,
        stop        BIGINT NOT NULL,
        raw         {blob} NOT NULL,
        received_at BIGINT NOT NULL"""

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS trips (
""" + TRIP_COLUMNS_SQL + """,
        PRIMARY KEY (reader_id, seq)
    )""",
    "CREATE INDEX IF NOT EXISTS trips_day_line ON trips (day, line, reader_id)",
    "CREATE INDEX IF NOT EXISTS trips_time ON trips (time)",
    """CREATE TABLE IF NOT EXISTS readers (
        reader_id    BIGINT PRIMARY KEY,
        stored_seq   BIGINT NOT NULL,
        chain_link   {blob} NOT NULL,
        acked_seq    BIGINT NOT NULL,
        firmware     VARCHAR(40),
        deny_version BIGINT, keyring_version BIGINT, config_version BIGINT,
        reader_time  BIGINT,
        last_sync    BIGINT
    )""",
    """CREATE TABLE IF NOT EXISTS sync_runs (
        id           {serial_pk},
        reader_id    BIGINT,
        port         VARCHAR(200) NOT NULL,
        started      BIGINT NOT NULL,
        finished     BIGINT NOT NULL,
        status       VARCHAR(20) NOT NULL,
        records_new  BIGINT NOT NULL,
        bytes_in     BIGINT NOT NULL,
        message      VARCHAR(1000)
    )""",
    # the records of a reader's earlier log, put aside when the operator accepted that the reader
    # was wiped or replaced under the same id (fare sync --accept-reset): its new log numbers its
    # records from 1 again
    """CREATE TABLE IF NOT EXISTS trips_replaced (
        reset_at    BIGINT NOT NULL,
""" + TRIP_COLUMNS_SQL + """
    )""",
    # what the reader's INFO said of its heap and its last fault, at its last sync
    """CREATE TABLE IF NOT EXISTS reader_health (
        reader_id    BIGINT PRIMARY KEY,
        at           BIGINT NOT NULL,
        heap_free    BIGINT, heap_largest BIGINT, heap_low BIGINT, heap_work BIGINT,
        fault        VARCHAR(200)
    )""",
    """CREATE TABLE IF NOT EXISTS incidents (
        id         {serial_pk},
        reader_id  BIGINT NOT NULL,
        kind       VARCHAR(20) NOT NULL,
        seq_from   BIGINT NOT NULL,
        seq_to     BIGINT NOT NULL,
        detail     VARCHAR(1000),
        at         BIGINT NOT NULL
    )""",
    # The upload to a central store (fare upload, host_tools/backoffice/upload.py): this
    # database's own id, and what each central store (by its id) has confirmed, per source:
    # trips per reader (log = the reader's resets when read, upto = seq), trips_replaced and
    # incidents (upto = rowid / id). Written only after the central store committed.
    """CREATE TABLE IF NOT EXISTS depot_identity (
        one        SMALLINT PRIMARY KEY CHECK (one = 1),
        uuid       VARCHAR(36) NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS upload_marks (
        store      VARCHAR(36) NOT NULL,
        source     VARCHAR(12) NOT NULL,
        reader_id  BIGINT NOT NULL,
        log        BIGINT NOT NULL,
        upto       BIGINT NOT NULL,
        at         BIGINT NOT NULL,
        PRIMARY KEY (store, source, reader_id)
    )""",
]

# What `fare export` writes per trip, in this order (docs/exports.md)
EXPORT_COLUMNS = ("reader_id", "seq", "time", "time_local", "service_day", "accepted", "reason",
                  "reason_name", "kind", "account", "counter", "cred_id", "fare_minor_units",
                  "line", "stop")

INSERT_TRIP = ("INSERT INTO trips (reader_id, seq, time, day, decision, reason, kind, account, "
               "counter, cred_id, fare, line, stop, raw, received_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (reader_id, seq) DO NOTHING")
READER_STATE = "SELECT stored_seq, chain_link, acked_seq FROM readers WHERE reader_id = ?"
UPSERT_READER = ("INSERT INTO readers (reader_id, stored_seq, chain_link, acked_seq) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (reader_id) DO UPDATE SET stored_seq = excluded.stored_seq, "
                 "chain_link = excluded.chain_link")
SET_ACKED = "UPDATE readers SET acked_seq = ? WHERE reader_id = ? AND acked_seq < ?"
SET_READER_INFO = ("INSERT INTO readers (reader_id, stored_seq, chain_link, acked_seq, firmware, "
                   "deny_version, keyring_version, config_version, reader_time, last_sync) "
                   "VALUES (?, 0, ?, 0, ?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT (reader_id) DO UPDATE SET firmware = excluded.firmware, "
                   "deny_version = excluded.deny_version, keyring_version = excluded.keyring_version, "
                   "config_version = excluded.config_version, reader_time = excluded.reader_time, "
                   "last_sync = excluded.last_sync")
UPSERT_HEALTH = ("INSERT INTO reader_health (reader_id, at, heap_free, heap_largest, heap_low, "
                 "heap_work, fault) VALUES (?, ?, ?, ?, ?, ?, ?) "
                 "ON CONFLICT (reader_id) DO UPDATE SET at = excluded.at, "
                 "heap_free = excluded.heap_free, heap_largest = excluded.heap_largest, "
                 "heap_low = excluded.heap_low, heap_work = excluded.heap_work, "
                 "fault = excluded.fault")
HEALTH = ("SELECT reader_id, at, heap_free, heap_largest, heap_low, heap_work, fault "
          "FROM reader_health ORDER BY reader_id")
INSERT_RUN = ("INSERT INTO sync_runs (reader_id, port, started, finished, status, records_new, "
              "bytes_in, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_INCIDENT = ("INSERT INTO incidents (reader_id, kind, seq_from, seq_to, detail, at) "
                   "VALUES (?, ?, ?, ?, ?, ?)")
_ALL_COLUMNS = ("reader_id, seq, time, day, decision, reason, kind, account, counter, cred_id, fare, "
                "line, stop, raw, received_at")
REPLACE_TRIPS = ("INSERT INTO trips_replaced (reset_at, %s) SELECT ?, %s FROM trips WHERE reader_id = ?"
                 % (_ALL_COLUMNS, _ALL_COLUMNS))
DELETE_TRIPS = "DELETE FROM trips WHERE reader_id = ?"
RESET_READER = "UPDATE readers SET stored_seq = 0, chain_link = ?, acked_seq = 0 WHERE reader_id = ?"
COUNT_TRIPS = "SELECT COUNT(*) FROM trips WHERE reader_id = ?"
SEQS = "SELECT seq FROM trips WHERE reader_id = ? ORDER BY seq"
INCIDENTS = "SELECT reader_id, kind, seq_from, seq_to, detail, at FROM incidents ORDER BY id"

# the upload (SQLite only: trips_replaced has no key of its own, its rowid orders it; neither it
# nor incidents ever has a row deleted, so rowid and id only grow)
DEPOT_UUID = "SELECT uuid FROM depot_identity WHERE one = 1"
SET_DEPOT_UUID = "INSERT INTO depot_identity (one, uuid) VALUES (1, ?) ON CONFLICT (one) DO NOTHING"
UPLOAD_MARKS = "SELECT source, reader_id, log, upto FROM upload_marks WHERE store = ?"
# a mark only moves forward (two uploads of one depot at once may confirm out of order)
SET_UPLOAD_MARK = ("INSERT INTO upload_marks (store, source, reader_id, log, upto, at) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (store, source, reader_id) DO UPDATE SET "
                   "log = excluded.log, upto = excluded.upto, at = excluded.at "
                   "WHERE excluded.log > upload_marks.log OR (excluded.log = upload_marks.log "
                   "AND excluded.upto > upload_marks.upto)")
READER_RESETS = "SELECT reader_id, COUNT(DISTINCT reset_at) FROM trips_replaced GROUP BY reader_id"
TRIP_READERS = "SELECT DISTINCT reader_id FROM trips ORDER BY reader_id"
COUNT_TRIPS_AFTER = "SELECT COUNT(*), COALESCE(SUM(LENGTH(raw)), 0) FROM trips WHERE reader_id = ? AND seq > ?"
TRIPS_AFTER = ("SELECT reader_id, seq, raw, received_at FROM trips WHERE reader_id = ? AND seq > ? "
               "ORDER BY seq LIMIT ?")
COUNT_REPLACED_AFTER = "SELECT COUNT(*), COALESCE(SUM(LENGTH(raw)), 0) FROM trips_replaced WHERE rowid > ?"
REPLACED_AFTER = ("SELECT rowid, reader_id, seq, raw, received_at FROM trips_replaced WHERE rowid > ? "
                  "ORDER BY rowid LIMIT ?")
COUNT_INCIDENTS_AFTER = "SELECT COUNT(*) FROM incidents WHERE id > ?"
INCIDENTS_AFTER = ("SELECT id, reader_id, kind, seq_from, seq_to, detail, at FROM incidents "
                   "WHERE id > ? ORDER BY id LIMIT ?")
READER_STATES = ("SELECT reader_id, stored_seq, chain_link, acked_seq, firmware, deny_version, "
                 "keyring_version, config_version, reader_time, last_sync FROM readers "
                 "ORDER BY reader_id")

# Reports and exports cover every trip, also those of a reader's replaced log (a reset changes
# neither). Days are the operator's service days (host_tools.common.serviceday), which SQL cannot
# compute for a time zone with summer time: the query selects by time range, the day is worked
# out per row.
_EVERY_TRIP = ("(SELECT {cols} FROM trips UNION ALL SELECT {cols} FROM trips_replaced) AS t")
_EXPORT_COLUMNS = ("reader_id, seq, time, decision, reason, kind, account, counter, cred_id, "
                   "fare, line, stop")
_FILTERS = ("line", "reader_id")
TRIPS = ("SELECT " + _EXPORT_COLUMNS + " FROM " + _EVERY_TRIP.format(cols=_EXPORT_COLUMNS)
         + " WHERE 1 = 1{where} ORDER BY time, reader_id, seq")


def day_of(t):
    """The stored `day` column: the UTC calendar day of `t` (reports and exports do not use it:
    they work out the operator's service day from `time`)."""
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d")


def trip_row(reader_id, rec, raw, received_at):
    """A `trips` row from a decoded trip record (validator.triplog.decode) and its stored bytes."""
    return (reader_id, rec["seq"], rec["time"], day_of(rec["time"]), rec["decision"], rec["reason"],
            rec["kind"], str(rec["account"]), str(rec["counter"]), rec["cred_id"].hex(),
            rec["fare"], rec["line"], rec["stop"], bytes(raw), received_at)


class DepotDB:
    """One connection (one per thread: SQLite connections are not shared between threads)."""

    def __init__(self, conn, dialect=SQLITE, create=True, path=None, lock_wait=LOCK_WAIT,
                 on_wait=None):
        """`create`: make the tables that are missing (a reader of the database never does).
        `lock_wait`: seconds a write waits in all for another writer's lock, then DBLocked;
        `on_wait(seconds waited, holder text)` is called while it waits."""
        self.conn = conn
        self.dialect = dialect
        self.path = path
        self.lock_wait = lock_wait
        self.on_wait = on_wait
        if create:
            def schema(cur):
                for stmt in SCHEMA:
                    cur.execute(stmt.format(blob=dialect.blob, serial_pk=dialect.serial_pk))
            self._write(schema)

    def _write(self, work):
        """Run `work(cursor)` as one committed transaction. While another writer holds the
        lock, roll back and try again until `lock_wait` seconds have passed (reporting the wait
        through `on_wait`), then raise DBLocked: a transaction is committed whole or not at all."""
        started = time.monotonic()
        while True:
            cur = self.conn.cursor()
            try:
                result = work(cur)
                self.conn.commit()
                return result
            except sqlite3.OperationalError as e:
                self.conn.rollback()
                if not _is_locked(e):
                    raise
                waited = time.monotonic() - started
                holder = lock_holder(self.path)
                if self.on_wait is not None:
                    self.on_wait(waited, holder)
                if waited >= self.lock_wait:
                    raise DBLocked("depot database %s is locked by another writer (%s): gave up "
                                   "after waiting %g s; nothing was written, the records stay "
                                   "on the reader until a sync stores them"
                                   % (self.path or "", holder, self.lock_wait)) from None
                time.sleep(0.05)  # a stale snapshot fails at once: do not spin
            except BaseException:
                self.conn.rollback()
                raise

    def _q(self, sql):
        return sql if self.dialect.placeholder == "?" else sql.replace("?", self.dialect.placeholder)

    def _exec(self, sql, args=()):
        cur = self.conn.cursor()
        cur.execute(self._q(sql), args)
        return cur

    def close(self):
        self.conn.close()

    # -- sync --

    def reader_state(self, reader_id):
        """(stored_seq, chain_link, acked_seq) or None for a reader never synced."""
        row = self._exec(READER_STATE, (reader_id,)).fetchone()
        return None if row is None else (row[0], bytes(row[1]), row[2])

    def store_batch(self, reader_id, rows, stored_seq, chain_link, acked_seq):
        """Insert trip rows and move the reader's chain state, in one transaction, committed
        (durable) when this returns. Returns how many rows were new."""
        def work(cur):
            new = 0
            for row in rows:
                cur.execute(self._q(INSERT_TRIP), row)
                new += max(cur.rowcount, 0)
            cur.execute(self._q(UPSERT_READER), (reader_id, stored_seq, chain_link, acked_seq))
            return new
        return self._write(work)

    def reset_reader(self, reader_id, genesis, now):
        """The reader's log was replaced (wiped, or another board under the same id): move its
        trips to trips_replaced (kept, and still in reports and exports) and start its chain
        again at `genesis`, in one transaction. Returns how many trips were moved."""
        def work(cur):
            cur.execute(self._q(REPLACE_TRIPS), (now, reader_id))
            moved = max(cur.rowcount, 0)
            cur.execute(self._q(DELETE_TRIPS), (reader_id,))
            cur.execute(self._q(RESET_READER), (genesis, reader_id))
            return moved
        return self._write(work)

    def check_writable(self):
        """Take the write lock once and let it go: waits (on_wait) while another writer holds
        it, DBLocked after lock_wait. A sync calls it before it talks to any reader."""
        self._write(lambda cur: cur.execute("BEGIN IMMEDIATE"))

    def _write1(self, sql, args):
        self._write(lambda cur: cur.execute(self._q(sql), args))

    def set_acked(self, reader_id, seq):
        self._write1(SET_ACKED, (seq, reader_id, seq))

    def set_reader_info(self, reader_id, info, now, genesis):
        """Record what INFO said; a reader seen for the first time starts at seq 0 with its
        chain at `genesis`."""
        self._write1(SET_READER_INFO, (reader_id, genesis, str(info.get("fw", ""))[:40],
                                       info.get("deny"), info.get("keyring"), info.get("config"),
                                       info.get("time"), now))

    def set_reader_health(self, reader_id, info, now):
        """Record INFO's heap health and last fault (docs/sync-protocol.md, INFO)."""
        heap = info.get("heap") if isinstance(info.get("heap"), dict) else {}

        def num(k):
            v = heap.get(k)
            return v if isinstance(v, int) and not isinstance(v, bool) else None
        fault = info.get("fault")
        if isinstance(fault, dict):
            fault = "%s: %s" % (fault.get("where"), fault.get("error"))
        self._write1(UPSERT_HEALTH, (reader_id, now, num("free"), num("largest"), num("low"),
                                     num("work"), str(fault)[:200] if fault else None))

    def health(self):
        """Rows (reader_id, at, free, largest, low, work, fault) of each reader's last sync
        (none from a database that no sync of this version has written yet)."""
        try:
            return self._exec(HEALTH).fetchall()
        except sqlite3.OperationalError:
            return []

    def add_run(self, reader_id, port, started, finished, status, records_new, bytes_in, message):
        self._write1(INSERT_RUN, (reader_id, port, started, finished, status, records_new,
                                  bytes_in, (message or "")[:1000]))

    def add_incident(self, reader_id, kind, seq_from, seq_to, detail):
        self._write1(INSERT_INCIDENT, (reader_id, kind, seq_from, seq_to, detail[:1000],
                                       int(time.time())))

    # -- the upload to a central store --

    def identity(self):
        """This database's id (made at the first upload): names its incidents centrally."""
        import uuid
        row = self._exec(DEPOT_UUID).fetchone()
        if row is None:
            new = str(uuid.uuid4())
            self._write(lambda cur: cur.execute(self._q(SET_DEPOT_UUID), (new,)))
            row = self._exec(DEPOT_UUID).fetchone()
        return row[0]

    def upload_marks(self, store):
        """{(source, reader_id): (log, upto)} that central store `store` has confirmed."""
        return {(r[0], r[1]): (r[2], r[3]) for r in self._exec(UPLOAD_MARKS, (store,))}

    def set_upload_marks(self, store, marks, now):
        """Record [(source, reader_id, log, upto)] as confirmed, in one transaction."""
        def work(cur):
            for source, rid, log, upto in marks:
                cur.execute(self._q(SET_UPLOAD_MARK), (store, source, rid, log, upto, now))
        self._write(work)

    def begin_read(self):
        """One snapshot for the reads that follow, until end_read (SQLite: a read transaction)."""
        self.conn.execute("BEGIN")

    def end_read(self):
        self.conn.rollback()

    def reader_resets(self):
        return dict(self._exec(READER_RESETS).fetchall())

    def trip_readers(self):
        return [r[0] for r in self._exec(TRIP_READERS)]

    def count_trips_after(self, reader_id, seq):
        """(records, bytes) of a reader's trips after seq."""
        return self._exec(COUNT_TRIPS_AFTER, (reader_id, seq)).fetchone()

    def trips_after(self, reader_id, seq, limit):
        return self._exec(TRIPS_AFTER, (reader_id, seq, limit)).fetchall()

    def count_replaced_after(self, rowid):
        return self._exec(COUNT_REPLACED_AFTER, (rowid,)).fetchone()

    def replaced_after(self, rowid, limit):
        return self._exec(REPLACED_AFTER, (rowid, limit)).fetchall()

    def count_incidents_after(self, id_):
        return self._exec(COUNT_INCIDENTS_AFTER, (id_,)).fetchone()[0]

    def incidents_after(self, id_, limit):
        return self._exec(INCIDENTS_AFTER, (id_, limit)).fetchall()

    def reader_states(self):
        return self._exec(READER_STATES).fetchall()

    # -- queries --

    def count(self, reader_id):
        return self._exec(COUNT_TRIPS, (reader_id,)).fetchone()[0]

    def seqs(self, reader_id):
        return [r[0] for r in self._exec(SEQS, (reader_id,))]

    def incidents(self):
        return self._exec(INCIDENTS).fetchall()

    def _trips(self, day=None, service_day=None, **filters):
        """Trip rows (tuples in _EXPORT_COLUMNS order) by time; `day` (a date): only the
        service day `day` of `service_day` (a serviceday.ServiceDay)."""
        where, args = "", []
        for col in _FILTERS:
            v = filters.get(col)
            if v is not None:
                where += " AND %s = ?" % col
                args.append(v)
        if day is not None:
            start, end = service_day.bounds(day)
            where += " AND time >= ? AND time < ?"
            args += [start, end]
        return self._exec(TRIPS.format(where=where), args)

    def report(self, service_day=None, day=None, line=None, reader_id=None):
        """Rows (service day 'YYYY-MM-DD', line, reader_id, trips, accepted, rejected, fares of
        the accepted, minor units) per service day, line and reader, in that order."""
        service_day = service_day or serviceday.ServiceDay()
        groups = {}
        for r in self._trips(day, service_day, line=line, reader_id=reader_id):
            key = (service_day.day(r[2]).isoformat(), r[10], r[0])
            g = groups.setdefault(key, [0, 0, 0, 0])
            g[0] += 1
            if r[3] == 1:
                g[1] += 1
                g[3] += r[9]
            else:
                g[2] += 1
        return [k + tuple(v) for k, v in sorted(groups.items())]

    def export(self, service_day=None, day=None, line=None, reader_id=None):
        """Trip records as dicts (EXPORT_COLUMNS, docs/exports.md), ordered by time, then
        reader and record number; a generator (an export streams). `service_day`: a
        serviceday.ServiceDay (default: UTC calendar days)."""
        service_day = service_day or serviceday.ServiceDay()
        for (rid, seq, t, decision, reason, kind, account, counter, cred_id, fare, ln,
             stop) in self._trips(day, service_day, line=line, reader_id=reader_id):
            yield {"reader_id": rid, "seq": seq, "time": t, "time_local": service_day.iso(t),
                   "service_day": service_day.day(t).isoformat(), "accepted": decision == 1,
                   "reason": reason, "reason_name": reasons.name(reason), "kind": kind,
                   "account": account, "counter": counter, "cred_id": cred_id,
                   "fare_minor_units": fare, "line": ln, "stop": stop}


def _is_locked(e):
    text = str(e).lower()
    return "locked" in text or "busy" in text


def _tables(conn, path):
    """The table names in an SQLite file; NotADepotDB if it is no SQLite database at all."""
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        conn.close()
        if _is_locked(e):
            raise DBLocked("depot database %s is locked by another program (%s)"
                           % (path, lock_holder(path))) from None
        raise NotADepotDB("%s is not a depot database (not an SQLite file: %s); check --db"
                          % (path, e)) from None


def open_sqlite(path, readonly=False, lock_wait=LOCK_WAIT, on_wait=None):
    """The depot database in an SQLite file. A writer (fare sync) creates it if new; a file
    that is not an SQLite database, or another application's database, is refused
    (NotADepotDB). `readonly` (reports, exports) opens only an existing depot database and
    changes nothing in it."""
    p = Path(path)
    if p.is_dir():
        raise NotADepotDB("%s is a folder, not a depot database; check --db" % p)
    if readonly:
        if not p.exists():
            raise NotADepotDB("no depot database at %s (`fare sync --db %s` creates it); check "
                              "--db" % (p, p))
        uri = "file:%s?mode=ro" % urllib.parse.quote(str(p.resolve()))
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=LOCK_ATTEMPT, check_same_thread=False)
        except sqlite3.OperationalError as e:
            raise NotADepotDB("cannot open depot database %s: %s" % (p, e)) from None
    else:
        if p.exists() and not os.access(p, os.W_OK):
            raise NotADepotDB("depot database %s is read-only: fare sync must write to it" % p)
        try:
            conn = sqlite3.connect(str(p), timeout=LOCK_ATTEMPT, check_same_thread=False)
        except sqlite3.OperationalError as e:
            raise NotADepotDB("cannot open or create depot database %s: %s" % (p, e)) from None
    tables = _tables(conn, p)
    missing = [t for t in DEPOT_TABLES if t not in tables]
    if missing and (readonly or tables):
        conn.close()
        if tables and "trips" not in tables:
            raise NotADepotDB("%s is not a depot database (it has tables %s, none of the depot's); "
                              "check --db" % (p, ", ".join(sorted(tables)[:5])))
        if tables:
            raise NotADepotDB("%s is not a depot database of this version (missing tables: %s)"
                              % (p, ", ".join(missing)))
        raise NotADepotDB("%s is an empty SQLite database, not a depot database (fare sync "
                          "makes one); check --db" % p)
    if not readonly:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as e:
            conn.close()
            if _is_locked(e):
                raise DBLocked("depot database %s is locked by another program (%s)"
                               % (p, lock_holder(p))) from None
            raise
        conn.execute("PRAGMA synchronous=FULL")
    return DepotDB(conn, SQLITE, create=not readonly, path=str(p), lock_wait=lock_wait,
                   on_wait=on_wait)


def open_existing(path, lock_wait=LOCK_WAIT):
    """An existing depot database, opened for writing (fare upload records its marks in it),
    never created: a missing file, or one that is not a depot database, is NotADepotDB."""
    open_sqlite(path, readonly=True).close()  # refuses what is not a depot database
    return open_sqlite(path, lock_wait=lock_wait)


def connect(url, readonly=False, lock_wait=LOCK_WAIT, on_wait=None):
    """`url`: an SQLite file path (or sqlite:///path). PostgreSQL (postgresql://...) would be
    added here with a DB-API driver and the POSTGRES dialect. `readonly`: for reports and
    exports (see open_sqlite)."""
    url = str(url)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///"):]
    if url.startswith("postgres"):
        raise UserError("PostgreSQL needs a DB-API driver (psycopg) that is not installed here; "
                        "depotdb.POSTGRES holds the dialect")
    return open_sqlite(url, readonly, lock_wait, on_wait)


# -- who holds the lock ----------------------------------------------------------------------------
# SQLite does not say who holds a lock. `fare sync` leaves a note next to the database while it
# runs, so that a second one can say who it waits for.

def _note_path(path):
    return Path(str(path) + ".writer")


def lock_holder(path):
    """Who is writing to the database at `path`, as far as is known."""
    if path is None:
        return "holder unknown"
    try:
        note = json.loads(_note_path(path).read_text())
        pid, host = int(note["pid"]), str(note["host"])
        since = time.strftime("%H:%M:%S", time.localtime(note["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return "not a fare sync: another program"
    if host == socket.gethostname():
        if pid == os.getpid():
            return "another sync of this run"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "not a fare sync: another program"
        except PermissionError:
            pass
    return "%s, pid %d on %s, since %s" % (note.get("command", "fare sync"), pid, host, since)


class WriterNote:
    """`with WriterNote(db_path):` while a sync writes, so that others can name the holder."""

    def __init__(self, path, command="fare sync"):
        self.path = _note_path(path)
        self.command = command
        self.written = False

    def __enter__(self):
        try:
            self.path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                             "since": int(time.time()), "command": self.command}))
            self.written = True
        except OSError:
            pass  # only a courtesy to the next writer
        return self

    def __exit__(self, *exc):
        if self.written:
            try:
                self.path.unlink()
            except OSError:
                pass
