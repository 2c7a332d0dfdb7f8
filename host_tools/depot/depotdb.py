"""The depot database: every SQL statement of the depot tools, in one place.

SQLite by default (WAL, synchronous=FULL: a commit is on disk before the reader is told to delete
anything). The SQL is standard (ON CONFLICT ... DO NOTHING/UPDATE works in SQLite >= 3.24 and
PostgreSQL >= 9.5); the few dialect differences (blob type, generated ids, placeholders) are the
`Dialect` below, so a central PostgreSQL can replace SQLite by adding a connect function.

One row per trip record, unique on (reader_id, seq) (the records of a reader's replaced log are
moved to trips_replaced). Accounts and counters are unsigned 64-bit,
beyond SQL's signed BIGINT, so they are stored as decimal text."""
import datetime
import sqlite3
import time
from pathlib import Path


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

TRIP_COLUMNS = ("reader_id", "seq", "time", "day", "decision", "reason", "kind", "account",
                "counter", "cred_id", "fare", "line", "stop")

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

# reports: filters are added as "AND col = ?" in this fixed order
_FILTERS = ("day", "line", "reader_id")
# reports and exports cover every trip, also those of a reader's replaced log: a reset changes
# neither
_EVERY_TRIP = ("(SELECT {cols} FROM trips UNION ALL SELECT {cols} FROM trips_replaced) AS t")
_EXPORT_COLUMNS = ("reader_id, seq, time, day, decision, reason, kind, account, counter, cred_id, "
                   "fare, line, stop")
REPORT = ("SELECT day, line, reader_id, COUNT(*), "
          "SUM(CASE WHEN decision = 1 THEN 1 ELSE 0 END), "
          "SUM(CASE WHEN decision = 1 THEN 0 ELSE 1 END), "
          "SUM(CASE WHEN decision = 1 THEN fare ELSE 0 END) "
          "FROM " + _EVERY_TRIP.format(cols="day, line, reader_id, decision, fare")
          + " WHERE 1 = 1{where} GROUP BY day, line, reader_id ORDER BY day, line, reader_id")
EXPORT = ("SELECT " + _EXPORT_COLUMNS + " FROM " + _EVERY_TRIP.format(cols=_EXPORT_COLUMNS)
          + " WHERE 1 = 1{where} ORDER BY day, line, reader_id, seq")


def day_of(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d")


def trip_row(reader_id, rec, raw, received_at):
    """A `trips` row from a decoded trip record (validator.triplog.decode) and its stored bytes."""
    return (reader_id, rec["seq"], rec["time"], day_of(rec["time"]), rec["decision"], rec["reason"],
            rec["kind"], str(rec["account"]), str(rec["counter"]), rec["cred_id"].hex(),
            rec["fare"], rec["line"], rec["stop"], bytes(raw), received_at)


class DepotDB:
    """One connection (one per thread: SQLite connections are not shared between threads)."""

    def __init__(self, conn, dialect=SQLITE):
        self.conn = conn
        self.dialect = dialect
        cur = conn.cursor()
        for stmt in SCHEMA:
            cur.execute(stmt.format(blob=dialect.blob, serial_pk=dialect.serial_pk))
        conn.commit()

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
        cur = self.conn.cursor()
        new = 0
        try:
            for row in rows:
                cur.execute(self._q(INSERT_TRIP), row)
                new += max(cur.rowcount, 0)
            cur.execute(self._q(UPSERT_READER), (reader_id, stored_seq, chain_link, acked_seq))
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return new

    def reset_reader(self, reader_id, genesis, now):
        """The reader's log was replaced (wiped, or another board under the same id): move its
        trips to trips_replaced (kept, and still in reports and exports) and start its chain
        again at `genesis`, in one transaction. Returns how many trips were moved."""
        cur = self.conn.cursor()
        try:
            cur.execute(self._q(REPLACE_TRIPS), (now, reader_id))
            moved = max(cur.rowcount, 0)
            cur.execute(self._q(DELETE_TRIPS), (reader_id,))
            cur.execute(self._q(RESET_READER), (genesis, reader_id))
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return moved

    def set_acked(self, reader_id, seq):
        self._exec(SET_ACKED, (seq, reader_id, seq))
        self.conn.commit()

    def set_reader_info(self, reader_id, info, now, genesis):
        """Record what INFO said; a reader seen for the first time starts at seq 0 with its
        chain at `genesis`."""
        self._exec(SET_READER_INFO, (reader_id, genesis, str(info.get("fw", ""))[:40],
                                     info.get("deny"), info.get("keyring"), info.get("config"),
                                     info.get("time"), now))
        self.conn.commit()

    def add_run(self, reader_id, port, started, finished, status, records_new, bytes_in, message):
        self._exec(INSERT_RUN, (reader_id, port, started, finished, status, records_new, bytes_in,
                                (message or "")[:1000]))
        self.conn.commit()

    def add_incident(self, reader_id, kind, seq_from, seq_to, detail):
        self._exec(INSERT_INCIDENT, (reader_id, kind, seq_from, seq_to, detail[:1000], int(time.time())))
        self.conn.commit()

    # -- the upload to a central store --

    def identity(self):
        """This database's id (made at the first upload): names its incidents centrally."""
        import uuid
        row = self._exec(DEPOT_UUID).fetchone()
        if row is None:
            self._exec(SET_DEPOT_UUID, (str(uuid.uuid4()),))
            self.conn.commit()
            row = self._exec(DEPOT_UUID).fetchone()
        return row[0]

    def upload_marks(self, store):
        """{(source, reader_id): (log, upto)} that central store `store` has confirmed."""
        return {(r[0], r[1]): (r[2], r[3]) for r in self._exec(UPLOAD_MARKS, (store,))}

    def set_upload_marks(self, store, marks, now):
        """Record [(source, reader_id, log, upto)] as confirmed, in one transaction."""
        cur = self.conn.cursor()
        try:
            for source, rid, log, upto in marks:
                cur.execute(self._q(SET_UPLOAD_MARK), (store, source, rid, log, upto, now))
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise

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

    def _where(self, filters):
        where, args = "", []
        for col in _FILTERS:
            v = filters.get(col)
            if v is not None:
                where += " AND %s = ?" % col
                args.append(v)
        return where, args

    def report(self, **filters):
        """Rows (day, line, reader_id, trips, accepted, rejected, fares) per day, line, reader."""
        where, args = self._where(filters)
        return self._exec(REPORT.format(where=where), args).fetchall()

    def export(self, **filters):
        """Trip rows as dicts (TRIP_COLUMNS), ordered by day, line, reader, seq."""
        where, args = self._where(filters)
        return [dict(zip(TRIP_COLUMNS, r)) for r in self._exec(EXPORT.format(where=where), args)]


def open_sqlite(path):
    """The depot database in an SQLite file (created if new)."""
    conn = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return DepotDB(conn, SQLITE)


class NotADepotDB(Exception):
    """A file that is not an existing depot database."""


def open_existing(path):
    """An existing depot database (SQLite), refusing to create one or to open another kind of file."""
    if not Path(path).is_file():
        raise NotADepotDB("%s: no such depot database" % path)
    try:
        uri = Path(path).resolve().as_uri() + "?mode=rw"
        conn = sqlite3.connect(uri, uri=True, timeout=60,
                               check_same_thread=False)
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise NotADepotDB("%s: not a depot database (%s)" % (path, e))
    if not {"trips", "trips_replaced", "incidents", "readers"} <= have:
        conn.close()
        raise NotADepotDB("%s: not a depot database (no trips, trips_replaced, incidents and "
                          "readers tables)" % path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return DepotDB(conn, SQLITE)


def connect(url):
    """`url`: an SQLite file path (or sqlite:///path). PostgreSQL (postgresql://...) would be
    added here with a DB-API driver and the POSTGRES dialect."""
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///"):]
    if url.startswith("postgres"):
        raise SystemExit("PostgreSQL needs a DB-API driver (psycopg) that is not installed here; "
                         "depotdb.POSTGRES holds the dialect")
    return open_sqlite(url)
