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

    def set_reader_health(self, reader_id, info, now):
        """Record INFO's heap health and last fault (docs/sync-protocol.md, INFO)."""
        heap = info.get("heap") if isinstance(info.get("heap"), dict) else {}

        def num(k):
            v = heap.get(k)
            return v if isinstance(v, int) and not isinstance(v, bool) else None
        fault = info.get("fault")
        if isinstance(fault, dict):
            fault = "%s: %s" % (fault.get("where"), fault.get("error"))
        self._exec(UPSERT_HEALTH, (reader_id, now, num("free"), num("largest"), num("low"),
                                   num("work"), str(fault)[:200] if fault else None))
        self.conn.commit()

    def health(self):
        """Rows (reader_id, at, free, largest, low, work, fault) of each reader's last sync."""
        return self._exec(HEALTH).fetchall()

    def add_run(self, reader_id, port, started, finished, status, records_new, bytes_in, message):
        self._exec(INSERT_RUN, (reader_id, port, started, finished, status, records_new, bytes_in,
                                (message or "")[:1000]))
        self.conn.commit()

    def add_incident(self, reader_id, kind, seq_from, seq_to, detail):
        self._exec(INSERT_INCIDENT, (reader_id, kind, seq_from, seq_to, detail[:1000], int(time.time())))
        self.conn.commit()

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


def connect(url):
    """`url`: an SQLite file path (or sqlite:///path). PostgreSQL (postgresql://...) would be
    added here with a DB-API driver and the POSTGRES dialect."""
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///"):]
    if url.startswith("postgres"):
        raise SystemExit("PostgreSQL needs a DB-API driver (psycopg) that is not installed here; "
                         "depotdb.POSTGRES holds the dialect")
    return open_sqlite(url)
