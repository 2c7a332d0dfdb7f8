"""`fare clearing run`: every accepted trip record re-verified, duplicates and the global offline
credit window across readers, the charges of a settlement batch. docs/backoffice.md, "Clearing",
says what is decided and why.

A run has two stages, each a deterministic function of what is committed, so a rerun, or a run
cut anywhere and run again, ends with the same tables:

1. **Verify** (in worker processes, each a share of the credentials): the accepted records of the
   run's days that have no verdict yet are read sorted by credential, their codes checked
   (host_tools/backoffice/codecheck.py: each credential's issuer signature once, each rider
   signature once) and, per chunk of records in one transaction, what the codes say is compared
   with the records' own fields, the key ring and the configuration in force, in SQL: one
   `clearing_rides` row per record with its verdict. A cut loses at most the chunks not committed.
2. **Settle** (one transaction): suspect readers, rides held for them, duplicates, the settlement
   batch and its charges, the credit window's exposure, possible sharing.

The rides that stand are verified straight into the batch the run makes (state 'charge', its
batch number, fixed when the run starts); settling changes only the exceptions.
"""
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from datetime import date

from host_tools.backoffice import codecheck
from host_tools.backoffice.clearing_schema import CLEARING_LOCK
from host_tools.backoffice.pgconn import CentralError, connect, one_line

VERIFY_CHUNK = 5_000      # records per verify transaction
LOCK_WAIT = 10.0          # s to wait for clearing's lock
I64_MAX = (1 << 63) - 1


@dataclass
class Summary:
    through: date = None
    days: list = None             # service days looked at (None: every day up to `through`)
    verified: int = 0             # records given a verdict by this run
    ok: int = 0
    bad: int = 0
    issuer_verifies: int = 0
    rider_verifies: int = 0
    rider_reused: int = 0
    worker_rss_kb: int = 0        # peak resident memory of a verify worker
    worker_cpu: float = 0.0       # CPU seconds of the verify workers, together
    first_row: float = 0.0        # seconds the workers waited for their first record (sum)
    batch_id: str = None
    batch_rides: int = 0
    batch_accounts: int = 0
    batch_amount: int = 0
    suspects: int = 0             # reader-days with records that do not stand, undecided
    held: int = 0                 # rides waiting for an operator's decision
    duplicates: int = 0           # duplicate groups found or grown by this run
    exposure: int = 0             # credentials over their offline limits (updated this run)
    sharing: int = 0              # possible-sharing pairs found by this run
    seconds: dict = field(default_factory=dict)


# -- inputs ----------------------------------------------------------------------------------------

def settings(conn):
    return dict(conn.execute("SELECT key, value FROM clearing_settings").fetchall())


def _check_inputs(conn):
    keys = conn.execute("SELECT count(*) FROM clearing_keys").fetchone()[0]
    cfgs = conn.execute("SELECT count(*) FROM clearing_configs").fetchone()[0]
    if not keys or not cfgs:
        raise CentralError("clearing needs the issuer key ring and the readers' configurations "
                           "first (fare clearing load --keyring FILE --config FILE ...): %s"
                           % ("no key ring" if not keys else "no configuration"))


def default_through(conn):
    """The last service day that has ended (the store's time zone and day start)."""
    return conn.execute("SELECT service_day(extract(epoch FROM now())::bigint) - 1").fetchone()[0]


def _days_to_look_at(conn, through):
    """(service days whose records may lack a verdict, or None for every day; upload batches
    that this run takes in). A batch is taken in once all its days are up to `through`."""
    rows = conn.execute(
        "SELECT b.batch_id, b.days FROM upload_batches b WHERE NOT EXISTS "
        "(SELECT 1 FROM clearing_seen_batches s WHERE s.batch_id = b.batch_id)").fetchall()
    days, taken, every = set(), [], False
    for bid, ds in rows:
        if ds is None:
            every = True
            taken.append(bid)
            continue
        days.update(d for d in ds if d <= through)
        if all(d <= through for d in ds):
            taken.append(bid)
    return (None if every else sorted(days)), taken


# -- stage 1: verify -------------------------------------------------------------------------------

def _share_condition(k, n):
    """Worker k's share of n: by the credential id's last byte (random bytes), so that each
    credential is one worker's."""
    if n <= 1:
        return "true"
    return ("(CASE WHEN length(t.cred_id) = 16 THEN get_byte(t.cred_id, 15) ELSE 0 END) "
            "% {n} = {k}".format(n=int(n), k=int(k)))


def _days_condition(days):
    if days is None:
        return "true"
    return "t.service_day = ANY('{%s}'::date[])" % ",".join(d.isoformat() for d in days)


# The records to verify, sorted so that one credential's records (and one code's) come together.
SELECT_TODO = """
SELECT t.reader_id, t.seq, t.rec_hash, t.service_day, t.time, t.line, t.fare, t.account,
       t.counter, t.cred_id, t.kind, trip_code(t.record), k.hashes, k.sigs
FROM trips t
LEFT JOIN LATERAL (SELECT array_agg(c.cred_hash) AS hashes, array_agg(c.issuer_sig) AS sigs
                   FROM clearing_credentials c WHERE c.cred_id = t.cred_id) k ON true
WHERE t.decision = 1 AND t.service_day <= '{through}'::date AND {days} AND {share}
  AND NOT EXISTS (SELECT 1 FROM clearing_rides r WHERE r.reader_id = t.reader_id
                  AND r.seq = t.seq AND r.rec_hash = t.rec_hash AND r.service_day = t.service_day)
ORDER BY t.cred_id, t.counter, t.reader_id, t.seq"""
COUNT_TODO = """
SELECT count(*) FROM trips t
WHERE t.decision = 1 AND t.service_day <= '{through}'::date AND {days}
  AND NOT EXISTS (SELECT 1 FROM clearing_rides r WHERE r.reader_id = t.reader_id
                  AND r.seq = t.seq AND r.rec_hash = t.rec_hash AND r.service_day = t.service_day)"""

WORKER_SETUP = """
CREATE TEMP TABLE clr_codes (reader_id bigint, seq bigint, rec_hash bytea, service_day date,
    time bigint, line bigint, fare bigint, account numeric, counter numeric, cred_id bytea,
    kind text, status text, detail text, cred_hash bytea, code_kind text, code_time bigint,
    code_counter numeric, challenge_reader bigint) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE clr_creds (cred_hash bytea PRIMARY KEY, cred_id bytea, key_id bigint, account numeric,
    product bigint, valid_from bigint, valid_until bigint, max_rides bigint, max_amount numeric,
    issuer_sig text) ON COMMIT DELETE ROWS;
-- each configuration and until when it is in force (its successor's creation + the grace)
CREATE TEMP TABLE clr_periods AS
SELECT line, created, CASE WHEN next_created IS NULL THEN 9223372036854775807
                           ELSE next_created + %(grace)s END AS until,
       max_code_age, clock_skew, transfer_window, fares
FROM clearing_config_periods;
CREATE INDEX ON clr_periods (line, created);
ANALYZE clr_periods;
"""
# the record's own fields (from trips), then what its code says
CODE_COLUMNS = ("reader_id", "seq", "rec_hash", "service_day", "time", "line", "fare", "account",
                "counter", "cred_id", "kind", "status", "detail", "cred_hash", "code_kind",
                "code_time", "code_counter", "challenge_reader")
CODE_TYPES = ("int8", "int8", "bytea", "date", "int8", "int8", "int8", "numeric", "numeric",
              "bytea", "text", "text", "text", "bytea", "text", "int8", "numeric", "int8")
READ_TYPES = ("int8", "int8", "bytea", "date", "int8", "int8", "int8", "numeric", "numeric",
              "bytea", "text", "bytea", "bytea[]", "text[]")
CRED_COLUMNS = ("cred_hash", "cred_id", "key_id", "account", "product", "valid_from",
                "valid_until", "max_rides", "max_amount", "issuer_sig")
CRED_TYPES = ("bytea", "bytea", "int8", "numeric", "int8", "int8", "int8", "int8", "numeric",
              "text")

INSERT_CREDS = ("INSERT INTO clearing_credentials SELECT *, %(batch_no)s FROM clr_creds "
                "ON CONFLICT DO NOTHING")

# The verdict of each staged record: what its code says against its own fields, the key ring and
# the configuration of its line in force at the ride (the first check that fails names it).
INSERT_RIDES = """
WITH ins AS (
INSERT INTO clearing_rides (reader_id, seq, rec_hash, service_day, time, line, fare, account,
    counter, cred_id, cred_hash, product, verdict, detail, state, batch_no)
SELECT t.reader_id, t.seq, t.rec_hash, t.service_day, t.time, t.line, t.fare, t.account,
       t.counter, t.cred_id, t.cred_hash, c.product, v.x[1], v.x[2],
       CASE WHEN v.x[1] = 'ok' THEN 'charge' ELSE 'bad' END, %(batch_no)s
FROM clr_codes t
LEFT JOIN clr_creds c ON c.cred_hash = t.cred_hash
LEFT JOIN clearing_keys k ON k.key_id = c.key_id
LEFT JOIN LATERAL (
    SELECT count(*) AS n,
           bool_or(cred_ok) AS cred_ok, bool_or(cred_ok AND time_ok) AS time_ok,
           bool_or(cred_ok AND time_ok AND fare_ok) AS all_ok, min(want) AS want
    FROM (SELECT t.time + p.clock_skew >= c.valid_from AS cred_ok,
                 (t.code_kind = 'nfc' OR (t.time - t.code_time <= p.max_code_age
                                          AND t.code_time - t.time <= p.clock_skew)) AS time_ok,
                 (p.fares ->> c.product::text)::bigint AS want,
                 ((p.fares ->> c.product::text)::bigint = t.fare
                  OR (t.fare = 0 AND p.transfer_window > 0
                      AND (p.fares ->> c.product::text)::bigint > 0
                      AND EXISTS (SELECT 1 FROM trips q
                                  WHERE q.reader_id = t.reader_id AND q.decision = 1
                                    AND q.service_day BETWEEN
                                        t.service_day - (1 + p.transfer_window / 86400)::integer
                                        AND t.service_day
                                    AND q.account = t.account AND q.fare > 0
                                    AND q.time BETWEEN t.time - p.transfer_window AND t.time)))
                 AS fare_ok
          FROM clr_periods p
          WHERE p.line = t.line AND p.created <= t.time AND t.time < p.until) o
) f ON true
CROSS JOIN LATERAL (SELECT CASE
    WHEN t.status <> 'ok' THEN ARRAY[t.status, t.detail]
    WHEN k.key_id IS NULL THEN ARRAY['unknown_key', format('issuer key %%s is not in the key ring',
                                                         c.key_id)]
    WHEN t.time < k.valid_from OR t.time > k.valid_until THEN ARRAY['key_not_valid',
        format('issuer key %%s is valid from %%s to %%s, the ride is at %%s', k.key_id,
               k.valid_from, k.valid_until, t.time)]
    WHEN k.retired_at IS NOT NULL AND t.time > k.retired_at + %(grace)s THEN ARRAY['key_not_valid',
        format('issuer key %%s was retired at %%s, the ride is at %%s', k.key_id, k.retired_at,
               t.time)]
    WHEN t.kind <> t.code_kind THEN ARRAY['kind_mismatch',
        format('the record says %%s, the code is %%s', t.kind, t.code_kind)]
    WHEN t.cred_id <> c.cred_id THEN ARRAY['credential_mismatch',
        format('the record says credential %%s, the code has %%s', encode(t.cred_id, 'hex'),
               encode(c.cred_id, 'hex'))]
    WHEN t.account <> c.account THEN ARRAY['account_mismatch',
        format('the record says account %%s, the credential %%s', t.account, c.account)]
    WHEN t.counter <> t.code_counter THEN ARRAY['counter_mismatch',
        format('the record says counter %%s, the code %%s', t.counter, t.code_counter)]
    WHEN t.code_kind = 'nfc' AND t.challenge_reader <> t.reader_id THEN ARRAY['nfc_other_reader',
        format('the NFC answer is to reader %%s''s challenge, the record is reader %%s''s',
               t.challenge_reader, t.reader_id)]
    WHEN t.code_kind = 'nfc' AND t.code_time <> t.time THEN ARRAY['time_mismatch',
        format('the NFC challenge was at %%s, the record says %%s', t.code_time, t.time)]
    WHEN t.time > c.valid_until THEN ARRAY['credential_not_valid',
        format('the credential is valid until %%s, the ride is at %%s', c.valid_until, t.time)]
    WHEN COALESCE(f.n, 0) = 0 THEN ARRAY['no_config',
        format('no configuration of line %%s in force at %%s', t.line, t.time)]
    WHEN NOT f.cred_ok THEN ARRAY['credential_not_valid',
        format('the credential is valid from %%s, the ride is at %%s', c.valid_from, t.time)]
    WHEN NOT f.time_ok THEN ARRAY['time_mismatch',
        format('the code was made at %%s, the ride is at %%s', t.code_time, t.time)]
    WHEN NOT f.all_ok THEN ARRAY['fare_mismatch',
        format('fare %%s, line %%s product %%s costs %%s', t.fare, t.line, c.product,
               COALESCE(f.want::text, 'nothing (no fare)'))]
    ELSE ARRAY['ok', NULL] END AS x) v
ON CONFLICT DO NOTHING
RETURNING verdict)
SELECT count(*) FILTER (WHERE verdict = 'ok') FROM ins"""


def _code_row(key, r):
    c = r.cred
    return key + (r.status, r.detail, c.cred_hash if c else None, r.kind, r.time, r.counter,
                  r.challenge_reader)


def verify_share(url, k, n, days, through, grace, batch_no, report=None, hook=None,
                 chunk=VERIFY_CHUNK):
    """Verify share k of n of the records to verify (worker process or in-process); the rides
    that stand go to batch `batch_no`. `report`: called with the number of records done after
    each committed chunk. Returns stats."""
    cpu0 = time.process_time()
    rconn = connect(url)
    wconn = connect(url)
    try:
        keys = dict(rconn.execute("SELECT key_id, public_key FROM clearing_keys").fetchall())
        checker = codecheck.Checker(keys)
        wconn.execute(WORKER_SETUP.replace("%(grace)s", str(int(grace))))
        # one sort of this share's records, in this backend: the cores are the verifiers'
        rconn.execute("SET work_mem = '128MB'")
        rconn.execute("SET max_parallel_workers_per_gather = 0")
        q = SELECT_TODO.format(through=through.isoformat(), days=_days_condition(days),
                               share=_share_condition(k, n))
        stats = {"verified": 0, "ok": 0}
        t0 = time.perf_counter()
        codes, creds = [], {}
        with rconn.cursor().copy("COPY (%s) TO STDOUT (FORMAT BINARY)" % q) as cp:
            cp.set_types(READ_TYPES)
            last_key = None
            for row in cp.rows():
                if "first_row_s" not in stats:
                    stats["first_row_s"] = time.perf_counter() - t0
                key = row[:4]
                if key == last_key:
                    continue
                last_key = key
                code, hashes, sigs = row[11:]
                known = dict(zip(hashes, sigs)) if hashes else None
                r = checker.check(code, known)
                codes.append(_code_row(row[:11], r))
                if r.cred is not None:
                    creds[r.cred.cred_hash] = r.cred
                if len(codes) >= chunk:
                    stats["ok"] += _commit_chunk(wconn, codes, creds, grace, batch_no)
                    stats["verified"] += len(codes)
                    if report:
                        report(len(codes))
                    codes, creds = [], {}
                    if hook:
                        hook("verify-chunk")
        if codes:
            stats["ok"] += _commit_chunk(wconn, codes, creds, grace, batch_no)
            stats["verified"] += len(codes)
            if report:
                report(len(codes))
            if hook:
                hook("verify-chunk")
        import resource
        stats.update(issuer_verifies=checker.issuer_verifies,
                     rider_verifies=checker.rider_verifies, rider_reused=checker.rider_reused,
                     rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                     cpu_s=time.process_time() - cpu0)
        stats.setdefault("first_row_s", 0.0)
        return stats
    finally:
        rconn.close()
        wconn.close()


def _commit_chunk(conn, codes, creds, grace, batch_no):
    """Stage one chunk's codes and credentials and insert their verdicts; returns how many
    records stand (verdict ok)."""
    with conn.transaction():
        cur = conn.cursor()
        with cur.copy("COPY clr_creds (%s) FROM STDIN (FORMAT BINARY)" % ", ".join(CRED_COLUMNS)
                      ) as cp:
            cp.set_types(CRED_TYPES)
            for c in creds.values():
                cp.write_row(c.row())
        with cur.copy("COPY clr_codes (%s) FROM STDIN (FORMAT BINARY)" % ", ".join(CODE_COLUMNS)
                      ) as cp:
            cp.set_types(CODE_TYPES)
            for row in codes:
                cp.write_row(row)
        cur.execute(INSERT_CREDS, {"batch_no": batch_no})
        return cur.execute(INSERT_RIDES, {"grace": int(grace), "batch_no": batch_no}).fetchone()[0]


def _worker(url, k, n, days, through, grace, batch_no, q, chunk):
    """A verify worker process: reports progress on queue `q`, then its stats (or its error)."""
    try:
        stats = verify_share(url, k, n, days, through, grace, batch_no,
                             report=lambda m: q.put(("progress", m)), chunk=chunk)
        q.put(("done", stats))
    except CentralError as e:
        q.put(("error", str(e)))
    except Exception as e:  # the main process turns it into a one-line error
        q.put(("error", "%s: %s" % (type(e).__name__, one_line(e))))


def _verify(url, days, through, grace, batch_no, workers, progress, hook, chunk):
    """Stage 1 with `workers` processes (0: in this process). Returns merged stats."""
    total = {"verified": 0, "ok": 0, "issuer_verifies": 0, "rider_verifies": 0, "rider_reused": 0,
             "rss_kb": 0, "cpu_s": 0.0, "first_row_s": 0.0}
    if workers <= 0:
        stats = verify_share(url, 0, 1, days, through, grace, batch_no,
                             report=lambda m: progress(advance=m), hook=hook, chunk=chunk)
        for k in total:
            total[k] += stats[k]
        total["rss_kb"] = stats["rss_kb"]
        return total
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, k, workers, days, through, grace, batch_no,
                                               q, chunk),
                         daemon=True) for k in range(workers)]
    for p in procs:
        p.start()
    done, error = 0, None
    try:
        while done < workers:
            try:
                what, value = q.get(timeout=1.0)
            except Exception:  # queue.Empty: is everyone still alive?
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise CentralError("a verify worker died (exit %s); run again to go on"
                                       % [p.exitcode for p in procs])
                continue
            if what == "progress":
                progress(advance=value)
            elif what == "done":
                done += 1
                for k in total:
                    total[k] += value[k]
                total["rss_kb"] = max(total["rss_kb"] - value["rss_kb"], value["rss_kb"])
            else:
                error = value
                done += 1
        if error:
            raise CentralError("verify failed: %s (what was committed stays; run again to go on)"
                               % error)
        return total
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()


# -- stage 2: settle -------------------------------------------------------------------------------
# A ride that stands is verified into this run's batch (state 'charge', batch_no G); settling
# takes out of it what must not be charged now (held, void, duplicates) and then makes the batch
# of what is left: no statement touches every ride of the batch.

SUSPECTS = """
INSERT INTO clearing_suspects (reader_id, service_day, bad_records, verdicts, evidence)
SELECT reader_id, service_day, sum(n)::integer, jsonb_object_agg(verdict, n),
       (SELECT jsonb_agg(e) FROM (
            SELECT jsonb_build_object('seq', b.seq, 'verdict', b.verdict, 'detail', b.detail) e
            FROM clearing_rides b
            WHERE b.state = 'bad' AND b.reader_id = g.reader_id AND b.service_day = g.service_day
            ORDER BY b.seq, b.rec_hash LIMIT 20) ev)
FROM (SELECT reader_id, service_day, verdict, count(*) AS n FROM clearing_rides
      WHERE state = 'bad' AND service_day <= %(through)s
      GROUP BY reader_id, service_day, verdict) g
GROUP BY reader_id, service_day
ON CONFLICT (reader_id, service_day) DO UPDATE
SET bad_records = excluded.bad_records, verdicts = excluded.verdicts, evidence = excluded.evidence,
    -- more evidence than the operator saw reopens the case
    decision = NULL, decided_by = NULL, decided_at = NULL,
    note = COALESCE(clearing_suspects.note || ' / ', '') || 'reopened: more records'
WHERE clearing_suspects.bad_records <> excluded.bad_records"""

# rides of this batch verified after a day was past `through` (a run cut and run again with an
# earlier day) wait for the next batch
POSTPONE = """
UPDATE clearing_rides SET batch_no = %(batch_no)s + 1
WHERE batch_no = %(batch_no)s AND state = 'charge' AND service_day > %(through)s"""
# this batch's rides of a suspect reader-day wait for the decision (or are void by it)
HOLD = """
UPDATE clearing_rides r SET state = CASE WHEN s.decision = 'void' THEN 'void' ELSE 'held' END
FROM clearing_suspects s
WHERE (s.decision IS NULL OR s.decision = 'void') AND r.reader_id = s.reader_id
  AND r.service_day = s.service_day AND r.state = 'charge' AND r.batch_no = %(batch_no)s"""
# held rides whose reader-day was decided: into this batch, or void
RELEASE = """
UPDATE clearing_rides r SET state = CASE s.decision WHEN 'charge' THEN 'charge' ELSE 'void' END,
    batch_no = %(batch_no)s
FROM clearing_suspects s
WHERE s.decision IS NOT NULL AND r.state = 'held' AND r.reader_id = s.reader_id
  AND r.service_day = s.service_day"""

# Duplicates: the ride codes (credential and counter) of this batch accepted more than once, with
# every record of each; the one kept (charged) is the one charged in an earlier batch, else the
# first of this batch, else the first held one. Held rides count: a code shown on two suspect
# readers is listed now, while the operator decides, not only once the rides are released.
DUP_GROUPS = """
CREATE TEMP TABLE clr_dup ON COMMIT DROP AS
WITH g AS (
    SELECT DISTINCT p.cred_hash, p.counter FROM clearing_rides p
    WHERE p.batch_no = %(batch_no)s AND p.state IN ('charge', 'held')
      AND EXISTS (SELECT 1 FROM clearing_rides o
                  WHERE o.cred_hash = p.cred_hash AND o.counter = p.counter AND o.verdict = 'ok'
                    AND (o.reader_id, o.service_day, o.seq, o.rec_hash)
                        <> (p.reader_id, p.service_day, p.seq, p.rec_hash)))
SELECT r.reader_id, r.seq, r.rec_hash, r.service_day, r.cred_hash, r.counter, r.cred_id,
       r.account, r.time, r.state, r.batch_no,
       row_number() OVER (PARTITION BY r.cred_hash, r.counter ORDER BY
           CASE WHEN r.state = 'charge' AND r.batch_no < %(batch_no)s THEN 0
                WHEN r.state = 'charge' THEN 1 WHEN r.state = 'held' THEN 2 ELSE 3 END,
           r.time, r.reader_id, r.seq, r.rec_hash) AS rank
FROM clearing_rides r JOIN g ON g.cred_hash = r.cred_hash AND g.counter = r.counter
WHERE r.verdict = 'ok'"""
DUP_RECORD = """
INSERT INTO clearing_duplicates (cred_hash, counter, cred_id, account, records, readers, rides,
                                 kept_reader, kept_seq)
SELECT cred_hash, counter, (array_agg(cred_id))[1], (array_agg(account))[1], count(*),
       count(DISTINCT reader_id),
       jsonb_agg(jsonb_build_object('reader', reader_id, 'seq', seq, 'time', time,
                                    'day', service_day) ORDER BY time, reader_id, seq),
       (array_agg(reader_id ORDER BY rank))[1], (array_agg(seq ORDER BY rank))[1]
FROM clr_dup GROUP BY cred_hash, counter
ON CONFLICT (cred_hash, counter) DO UPDATE
SET records = excluded.records, readers = excluded.readers, rides = excluded.rides,
    kept_reader = excluded.kept_reader, kept_seq = excluded.kept_seq"""
DUP_MARK = """
UPDATE clearing_rides r SET state = 'duplicate' FROM clr_dup d
WHERE d.rank > 1 AND d.state = 'charge' AND d.batch_no = %(batch_no)s
  AND r.reader_id = d.reader_id AND r.service_day = d.service_day AND r.seq = d.seq
  AND r.rec_hash = d.rec_hash"""

CHARGES = """
INSERT INTO clearing_charges (charge_id, batch_id, account, rides, amount)
SELECT %(batch)s || '/' || account, %(batch)s, account, count(*), sum(fare)
FROM clearing_rides WHERE batch_no = %(batch_no)s AND state = 'charge'
GROUP BY account HAVING sum(fare) > 0"""
BATCH_TOTALS = """
UPDATE clearing_batches SET
    rides = (SELECT count(*) FROM clearing_rides WHERE batch_no = %(batch_no)s AND state = 'charge'),
    accounts = (SELECT count(*) FROM clearing_charges WHERE batch_id = %(batch)s),
    amount = (SELECT COALESCE(sum(amount), 0) FROM clearing_charges WHERE batch_id = %(batch)s)
WHERE batch_no = %(batch_no)s"""

# The global offline credit window: each credential of this run's rides, its rides across every reader
# in time order; a ride past max_rides, or that takes the amount past max_amount, is exposure.
# (Rides counted: those that stand, not duplicates, not voided.) A credential first seen by this
# run has all its rides in this batch; only the others need their earlier rides looked up.
# Only credentials over a limit are kept.
EXPOSURE = """
WITH mine AS (
    SELECT r.cred_hash, count(*) AS n, sum(r.fare) AS amount FROM clearing_rides r
    WHERE r.batch_no = %(batch_no)s AND r.state IN ('charge', 'held') GROUP BY r.cred_hash),
tot AS (
    SELECT m.cred_hash, m.n, m.amount FROM mine m JOIN clearing_credentials c USING (cred_hash)
    WHERE c.first_batch = %(batch_no)s
    UNION ALL
    SELECT r.cred_hash, count(*), sum(r.fare) FROM clearing_rides r
    JOIN (SELECT m.cred_hash FROM mine m JOIN clearing_credentials c USING (cred_hash)
          WHERE c.first_batch <> %(batch_no)s) o USING (cred_hash)
    WHERE r.state IN ('charge', 'held') GROUP BY r.cred_hash),
cand AS (
    SELECT t.cred_hash FROM tot t JOIN clearing_credentials c USING (cred_hash)
    WHERE t.n > c.max_rides OR t.amount > c.max_amount),
w AS (
    SELECT r.cred_hash, r.fare, r.reader_id,
           row_number() OVER o AS k, sum(r.fare) OVER o AS cum
    FROM clearing_rides r JOIN cand USING (cred_hash)
    WHERE r.state IN ('charge', 'held')
    WINDOW o AS (PARTITION BY r.cred_hash ORDER BY r.time, r.reader_id, r.seq, r.rec_hash))
INSERT INTO clearing_exposure (cred_hash, cred_id, account, max_rides, max_amount, rides, amount,
                               readers, over_rides, over_amount)
SELECT w.cred_hash, c.cred_id, c.account, c.max_rides, c.max_amount, count(*), sum(w.fare),
       count(DISTINCT w.reader_id),
       count(*) FILTER (WHERE w.k > c.max_rides OR w.cum > c.max_amount),
       COALESCE(sum(w.fare) FILTER (WHERE w.k > c.max_rides OR w.cum > c.max_amount), 0)
FROM w JOIN clearing_credentials c USING (cred_hash)
GROUP BY w.cred_hash, c.cred_id, c.account, c.max_rides, c.max_amount
ON CONFLICT (cred_hash) DO UPDATE
SET rides = excluded.rides, amount = excluded.amount, readers = excluded.readers,
    over_rides = excluded.over_rides, over_amount = excluded.over_amount"""

# Possible sharing: one account's rides on two readers within the window (different codes: the
# same code twice is a duplicate), one of them this run's. Pairs are stored earlier ride first.
SHARING = """
INSERT INTO clearing_sharing (account, reader_a, seq_a, hash_a, time_a, reader_b, seq_b, hash_b,
                              time_b)
SELECT DISTINCT x.account, a.reader_id, a.seq, a.rec_hash, a.time, b.reader_id, b.seq,
       b.rec_hash, b.time
FROM clearing_rides x
JOIN clearing_rides o ON o.account = x.account
     AND o.time BETWEEN x.time - %(window)s AND x.time + %(window)s
     AND o.reader_id <> x.reader_id AND o.state IN ('charge', 'held')
     AND (o.cred_hash, o.counter) IS DISTINCT FROM (x.cred_hash, x.counter)
CROSS JOIN LATERAL (SELECT (x.time, x.reader_id, x.seq) < (o.time, o.reader_id, o.seq) AS first) f
CROSS JOIN LATERAL (SELECT CASE WHEN f.first THEN x.reader_id ELSE o.reader_id END AS reader_id,
                           CASE WHEN f.first THEN x.seq ELSE o.seq END AS seq,
                           CASE WHEN f.first THEN x.rec_hash ELSE o.rec_hash END AS rec_hash,
                           CASE WHEN f.first THEN x.time ELSE o.time END AS time) a
CROSS JOIN LATERAL (SELECT CASE WHEN f.first THEN o.reader_id ELSE x.reader_id END AS reader_id,
                           CASE WHEN f.first THEN o.seq ELSE x.seq END AS seq,
                           CASE WHEN f.first THEN o.rec_hash ELSE x.rec_hash END AS rec_hash,
                           CASE WHEN f.first THEN o.time ELSE x.time END AS time) b
WHERE x.batch_no = %(batch_no)s AND x.state IN ('charge', 'held')
ON CONFLICT DO NOTHING"""


def _render(sql, p):
    """The statement with its values written in (dates, integers and batch ids we make): settle's
    statements include CREATE TABLE AS, which takes no bind parameters."""
    def lit(v):
        if isinstance(v, date):
            return "'%s'::date" % v.isoformat()
        if isinstance(v, int):
            return str(v)
        assert isinstance(v, str) and all(ch.isalnum() or ch in "-/" for ch in v)
        return "'%s'" % v
    return sql % {k: lit(v) for k, v in p.items()}


def settle(conn, through, batch_no, taken, cfg, s, hook=None):
    """Stage 2, in one transaction (see the module's docstring)."""
    p = {"through": through, "window": int(cfg["sharing_window"]), "batch_no": batch_no}

    def step(name, sql):
        t0 = time.perf_counter()
        cur = conn.execute(_render(sql, p))
        s.seconds[name] = s.seconds.get(name, 0.0) + time.perf_counter() - t0
        if hook:
            hook("settle-" + name)
        return cur.rowcount

    with conn.transaction():
        step("suspects", SUSPECTS)
        step("hold", POSTPONE)
        step("hold", HOLD)
        step("hold", RELEASE)
        step("duplicates", DUP_GROUPS)
        s.duplicates = step("duplicates", DUP_RECORD)
        step("duplicates", DUP_MARK)
        left = conn.execute("SELECT count(*) FROM clearing_rides WHERE batch_no = %s AND "
                            "state = 'charge'", (batch_no,)).fetchone()[0]
        if left:
            n = conn.execute("SELECT count(*) FROM clearing_batches WHERE through = %s",
                             (through,)).fetchone()[0]
            s.batch_id = "%s-%d" % (through.strftime("%Y%m%d"), n + 1)
            p["batch"] = s.batch_id
            conn.execute("INSERT INTO clearing_batches (batch_no, batch_id, through, rides, "
                         "accounts, amount) VALUES (%s, %s, %s, 0, 0, 0)",
                         (batch_no, s.batch_id, through))
            step("charges", CHARGES)
            step("charges", BATCH_TOTALS)
            s.batch_rides, s.batch_accounts, s.batch_amount = conn.execute(
                "SELECT rides, accounts, amount FROM clearing_batches WHERE batch_no = %s",
                (batch_no,)).fetchone()
        else:
            # No batch this time, so the next run takes this batch number again: the rides
            # POSTPONE moved to the next number come back to it (else they would wait until a
            # later run made a batch of this number first).
            conn.execute("UPDATE clearing_rides SET batch_no = %s WHERE batch_no = %s AND "
                         "state = 'charge'", (batch_no, batch_no + 1))
        s.exposure = step("exposure", EXPOSURE)
        s.sharing = step("sharing", SHARING)
        if taken:
            conn.execute("INSERT INTO clearing_seen_batches SELECT unnest(%s::bigint[]) "
                         "ON CONFLICT DO NOTHING", (taken,))
        s.suspects, s.held = conn.execute(
            "SELECT (SELECT count(*) FROM clearing_suspects WHERE decision IS NULL), "
            "(SELECT count(*) FROM clearing_rides WHERE state = 'held')").fetchone()
        if hook:
            hook("settle-commit")


# -- the run ---------------------------------------------------------------------------------------

def run(url, through=None, workers=None, progress=None, hook=None, chunk=VERIFY_CHUNK):
    """One clearing run up to service day `through` (default: the last day that has ended).
    `workers`: verify processes (default: the machine's cores; 0: in this process).
    `progress(total=, advance=, step=)`: called as it goes. Returns a Summary."""
    progress = progress or (lambda **kw: None)
    workers = (os.cpu_count() or 1) if workers is None else workers
    s = Summary()
    conn = connect(url)
    try:
        lock(conn)
        _check_inputs(conn)
        cfg = settings(conn)
        through = through if through is not None else default_through(conn)
        s.through = through
        run_id = conn.execute("INSERT INTO clearing_runs (through) VALUES (%s) RETURNING run_id",
                              (through,)).fetchone()[0]
        days, taken = _days_to_look_at(conn, through)
        # the batch this run makes: its rides are tagged with its number as they are verified
        batch_no = conn.execute("SELECT COALESCE(max(batch_no), 0) + 1 FROM clearing_batches"
                                ).fetchone()[0]
        s.days = days
        t0 = time.perf_counter()
        todo = 0 if days == [] else conn.execute(
            COUNT_TODO.format(through=through.isoformat(), days=_days_condition(days))
        ).fetchone()[0]
        progress(total=todo, step="verify")
        if todo:
            v = _verify(url, days, through, int(cfg["update_grace"]), batch_no, workers, progress,
                        hook, chunk)
            s.verified, s.ok = v["verified"], v["ok"]
            s.bad = s.verified - s.ok
            s.issuer_verifies = v["issuer_verifies"]
            s.rider_verifies, s.rider_reused = v["rider_verifies"], v["rider_reused"]
            s.worker_rss_kb = v["rss_kb"]
            s.worker_cpu, s.first_row = v["cpu_s"], v["first_row_s"]
        s.seconds["verify"] = time.perf_counter() - t0
        progress(step="settle")
        t0 = time.perf_counter()
        settle(conn, through, batch_no, taken, cfg, s, hook)
        s.seconds["settle"] = time.perf_counter() - t0
        conn.execute("UPDATE clearing_runs SET finished_at = now(), status = 'done', verified = %s, "
                     "batch_id = %s WHERE run_id = %s", (s.verified, s.batch_id, run_id))
        return s
    finally:
        try:
            conn.execute("SELECT pg_advisory_unlock_all()")
        except Exception:
            pass  # the connection is gone: so is the lock
        conn.close()


def lock(conn, wait=LOCK_WAIT):
    """Take clearing's session lock: one run (or deny-list build) at a time. A run that was just
    cut may hold it a moment longer (its server process ends after the client went away)."""
    deadline = time.monotonic() + wait
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (CLEARING_LOCK,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise CentralError("another clearing run (or deny-list build) is going on; run again "
                               "when it has finished")
        time.sleep(0.2)


def parse_day(text):
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise CentralError("a service day is YYYY-MM-DD, not %r" % (text,)) from None


def decide(url, reader_id, day, decision, by=None, note=None):
    """An operator's decision on a suspect reader's service day: 'charge' (its rides that stand
    are charged at the next run) or 'void' (none of its rides is charged). Returns the rides it
    covers that wait, stand or not."""
    if decision not in ("charge", "void"):
        raise CentralError("a decision is charge or void, not %r" % decision)
    with connect(url) as conn, conn.transaction():
        cur = conn.execute("UPDATE clearing_suspects SET decision = %s, decided_by = "
                           "COALESCE(%s, current_user), note = %s, decided_at = now() "
                           "WHERE reader_id = %s AND service_day = %s",
                           (decision, by, note, reader_id, day))
        if not cur.rowcount:
            raise CentralError("reader %d is not suspect on %s (fare clearing report lists the "
                               "suspect readers)" % (reader_id, day))
        return conn.execute("SELECT count(*) FROM clearing_rides WHERE reader_id = %s AND "
                            "service_day = %s AND state IN ('held', 'bad')",
                            (reader_id, day)).fetchone()[0]
