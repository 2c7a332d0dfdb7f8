"""Clearing's reports (`fare clearing report`): each one a title, its columns and its rows, for a
rich table on the terminal or a CSV file. Service days are the operator's (the store's time zone
and day start)."""
from datetime import datetime, timezone

from host_tools.backoffice.charges import CHARGE_STATUS
from host_tools.backoffice.pgconn import connect
from host_tools.common.fw import validator  # noqa: F401
from validator import reasons

DAYS = """
SELECT t.service_day, t.line,
       count(DISTINCT t.account) FILTER (WHERE t.decision = 1),
       count(*) FILTER (WHERE t.decision = 1),
       COALESCE(sum(t.fare) FILTER (WHERE t.decision = 1), 0),
       count(*) FILTER (WHERE t.decision = 0)
FROM trips t WHERE t.service_day BETWEEN %(first)s AND %(last)s
GROUP BY 1, 2 ORDER BY 1, 2"""
CLEARED = """
SELECT r.service_day, r.line,
       COALESCE(sum(r.fare) FILTER (WHERE r.state = 'charge' AND b.batch_no IS NOT NULL), 0),
       count(*) FILTER (WHERE r.state = 'duplicate'),
       count(*) FILTER (WHERE r.state IN ('bad', 'held', 'void')),
       count(*) FILTER (WHERE r.state = 'charge' AND b.batch_no IS NULL)
FROM clearing_rides r LEFT JOIN clearing_batches b ON b.batch_no = r.batch_no
WHERE r.service_day BETWEEN %(first)s AND %(last)s GROUP BY 1, 2"""
REFUSALS = """
SELECT service_day, line, reason, count(*) FROM trips
WHERE decision = 0 AND service_day BETWEEN %(first)s AND %(last)s
GROUP BY 1, 2, 3 ORDER BY 1, 2, 4 DESC, 3"""
EXPOSURE = """
SELECT account, encode(cred_id, 'hex'), max_rides, max_amount, rides, amount, readers,
       over_rides, over_amount
FROM clearing_exposure WHERE over_rides > 0 ORDER BY over_amount DESC, account, cred_id"""
EXPOSURE_ACCOUNTS = """
SELECT account, count(*), sum(over_rides), sum(over_amount) FROM clearing_exposure
WHERE over_rides > 0 GROUP BY account ORDER BY 4 DESC, 1"""
DUPLICATES = """
SELECT account, encode(cred_id, 'hex'), counter, records, readers,
       (SELECT string_agg((e->>'reader') || '/' || (e->>'seq'), ' ' ORDER BY n)
        FROM jsonb_array_elements(rides) WITH ORDINALITY AS x(e, n)),
       kept_reader || '/' || kept_seq
FROM clearing_duplicates ORDER BY account, cred_id, counter"""
SHARING = """
SELECT account, reader_a, seq_a, time_a, reader_b, seq_b, time_b, time_b - time_a
FROM clearing_sharing ORDER BY account, time_a"""
SUSPECTS = """
SELECT reader_id, service_day, bad_records,
       (SELECT string_agg(k || ' ' || v, ', ' ORDER BY k) FROM jsonb_each_text(verdicts) AS x(k, v)),
       COALESCE(decision, 'waiting'), evidence->0->>'detail'
FROM clearing_suspects ORDER BY decision IS NOT NULL, service_day, reader_id"""
UNPAID = """
WITH st AS (%s)
SELECT c.account, count(*), sum(c.amount), min(st.at),
       string_agg(c.charge_id || ': ' || st.reason, ', ' ORDER BY c.charge_id)
FROM clearing_charges c JOIN st ON st.charge_id = c.charge_id
WHERE st.status = 'failed' GROUP BY c.account ORDER BY 3 DESC, 1""" % CHARGE_STATUS


def _utc(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def default_days(conn):
    """(first, last) service day of the latest settlement batch, or of the latest trips."""
    row = conn.execute("SELECT max(through) FROM clearing_batches").fetchone()
    # (decision = 1: the accepted rides' index answers it, not a scan of every partition)
    last = row[0] if row and row[0] else conn.execute(
        "SELECT max(service_day) FROM trips WHERE decision = 1").fetchone()[0]
    return last, last


def reports(url, first=None, last=None):
    """[(name, title, columns, rows)] for the service days first..last (default: the day of the
    latest settlement batch)."""
    out = []
    with connect(url) as conn:
        if first is None and last is None:
            first, last = default_days(conn)
        first = first or last
        last = last or first
        p = {"first": first, "last": last}
        cleared = {(d, ln): rest for d, ln, *rest in conn.execute(CLEARED, p)}
        rows = []
        for day, line, riders, accepted, revenue, refused in conn.execute(DAYS, p):
            charged, dup, held, pending = cleared.get((day, line), (0, 0, 0, 0))
            rows.append((day, line, riders, accepted, revenue, charged, dup, held, pending,
                         refused))
        out.append(("days", "Service days %s to %s, per line" % (first, last),
                    ("service day", "line", "riders", "accepted", "revenue", "charged",
                     "duplicates", "not charged (suspect)", "not cleared yet", "refused"), rows))
        out.append(("refusals", "Refusals by reason", ("service day", "line", "reason", "taps"),
                    [(d, ln, reasons.name(r), n) for d, ln, r, n in conn.execute(REFUSALS, p)]))
        out.append(("exposure", "Exposure: rides past the credential's offline limits, across "
                    "all readers (every cleared day)",
                    ("account", "credential", "max rides", "max amount", "rides", "amount",
                     "readers", "rides over", "amount over"),
                    [(int(a),) + tuple(r) for a, *r in conn.execute(EXPOSURE)]))
        out.append(("exposure_accounts", "Exposure per account (every cleared day)",
                    ("account", "credentials", "rides over", "amount over"),
                    [(int(a),) + tuple(r) for a, *r in conn.execute(EXPOSURE_ACCOUNTS)]))
        out.append(("duplicates", "Duplicates: one ride code accepted more than once (charged "
                    "once; every cleared day)",
                    ("account", "credential", "counter", "records", "readers",
                     "records (reader/seq)", "charged"),
                    [(int(a), c, int(n)) + tuple(r) for a, c, n, *r in conn.execute(DUPLICATES)]))
        out.append(("sharing", "Possible sharing: one account on two readers within the window "
                    "(every cleared day)",
                    ("account", "reader", "seq", "time (UTC)", "then reader", "seq",
                     "time (UTC)", "seconds apart"),
                    [(int(a), ra, sa, _utc(ta), rb, sb, _utc(tb), gap)
                     for a, ra, sa, ta, rb, sb, tb, gap in conn.execute(SHARING)]))
        out.append(("suspects", "Suspect readers: records that do not stand; the day's rides "
                    "wait for a decision (fare clearing decide)",
                    ("reader", "service day", "records", "verdicts", "decision",
                     "first evidence"), conn.execute(SUSPECTS).fetchall()))
        out.append(("unpaid", "Unpaid accounts now: charges whose latest payment result failed",
                    ("account", "charges", "amount", "first failure (UTC)", "charges and reasons"),
                    [(int(a), n, amt, _utc(at), why)
                     for a, n, amt, at, why in conn.execute(UNPAID)]))
    return out
