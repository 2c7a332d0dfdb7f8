"""The charge file a payment provider takes, and the payment results it sends back
(docs/backoffice.md, "Charge file" and "Payment results").

A charge is one account's amount in one settlement batch; its id, `<batch id>/<account>`, is
stable: the provider quotes it in its results. Both files come as CSV or JSON (by the file's
suffix); accounts are decimal strings in JSON (a u64 does not fit a JSON number everywhere).
Importing results is all or nothing per file (one bad line refuses the file, naming it) and
idempotent: a result already recorded (same charge, time and status) is skipped."""
import csv
import hashlib
import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path

from host_tools.backoffice.pgconn import CentralError, connect

CHARGES_FORMAT = "fare-charges"
RESULTS_FORMAT = "fare-payment-results"
FORMAT_VERSION = 1
CHARGE_COLUMNS = ("charge_id", "batch_id", "account", "rides", "amount", "currency")
RESULT_COLUMNS = ("charge_id", "account", "amount", "status", "reason", "at")
MAX_RESULTS_BYTES = 512 << 20
MAX_REASON = 200
_CHARGE_ID = re.compile(r"\d{8}-\d{1,9}/\d{1,20}")


def _kind(path):
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".json"):
        raise CentralError("%s: the file's name ends in .csv or .json (its format)" % path)
    return suffix[1:]


# -- export ----------------------------------------------------------------------------------------

def batch_charges(url, batch_id=None):
    """(batch dict, currency, [(charge_id, batch_id, account, rides, amount)]) of a settlement
    batch (default: the latest)."""
    with connect(url) as conn:
        if batch_id is None:
            row = conn.execute("SELECT batch_id FROM clearing_batches ORDER BY created_at DESC, "
                               "batch_id DESC LIMIT 1").fetchone()
            if row is None:
                raise CentralError("no settlement batch yet (fare clearing run makes them)")
            batch_id = row[0]
        b = conn.execute("SELECT batch_id, through, rides, accounts, amount FROM clearing_batches "
                         "WHERE batch_id = %s", (batch_id,)).fetchone()
        if b is None:
            raise CentralError("no settlement batch %s" % batch_id)
        currency = conn.execute("SELECT value FROM clearing_settings WHERE key = 'currency'"
                                ).fetchone()[0]
        rows = conn.execute("SELECT charge_id, batch_id, account, rides, amount FROM "
                            "clearing_charges WHERE batch_id = %s ORDER BY account",
                            (batch_id,)).fetchall()
    batch = dict(zip(("batch_id", "through", "rides", "accounts", "amount"), b))
    return batch, currency, [(c, bid, int(a), r, m) for c, bid, a, r, m in rows]


def charges_text(batch, currency, rows, kind):
    """The charge file's text, CSV or JSON."""
    if kind == "csv":
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(CHARGE_COLUMNS)
        for c, bid, account, rides, amount in rows:
            w.writerow((c, bid, account, rides, amount, currency))
        return out.getvalue()
    return json.dumps({
        "format": CHARGES_FORMAT, "version": FORMAT_VERSION, "batch_id": batch["batch_id"],
        "through": batch["through"].isoformat(), "currency": currency, "count": len(rows),
        "total": sum(r[4] for r in rows),
        "charges": [{"charge_id": c, "account": str(account), "rides": rides, "amount": amount}
                    for c, _, account, rides, amount in rows]}, indent=1) + "\n"


def export(url, outs, batch_id=None):
    """Write the batch's charge file to each path of `outs` (.csv or .json); returns the batch."""
    kinds = [_kind(p) for p in outs]
    batch, currency, rows = batch_charges(url, batch_id)
    for path, kind in zip(outs, kinds):
        Path(path).write_text(charges_text(batch, currency, rows, kind))
    batch["currency"] = currency
    batch["charges"] = len(rows)
    return batch


# -- payment results -------------------------------------------------------------------------------

def parse_time(text):
    """Unix seconds from an integer or an ISO 8601 date-time (UTC unless it says otherwise)."""
    if isinstance(text, int) and not isinstance(text, bool) and 0 <= text < 1 << 63:
        return text
    if isinstance(text, str):
        t = text.strip()
        if t.isdigit():
            return int(t)
        try:
            d = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            d = None
        if d is not None:
            if d.tzinfo is None:
                d = d.replace(tzinfo=timezone.utc)
            return int(d.timestamp())
    raise ValueError("not a time (Unix seconds or ISO 8601 such as 2026-11-25T02:00:00Z): %r"
                     % (text,))


def _result(item):
    """(charge_id, account, amount, status, reason, at) of one result; ValueError says why not."""
    cid = item.get("charge_id")
    if not isinstance(cid, str) or not _CHARGE_ID.fullmatch(cid):
        raise ValueError("charge_id %r is not a charge id (batch/account)" % (cid,))
    try:
        account = int(str(item.get("account")))
        amount = int(str(item.get("amount")))
    except ValueError:
        raise ValueError("account and amount are integers") from None
    if not (0 <= account < 1 << 64 and 0 <= amount < 1 << 63):
        raise ValueError("account or amount out of range")
    status = item.get("status")
    if status not in ("paid", "failed"):
        raise ValueError("status is paid or failed, not %r" % (status,))
    reason = item.get("reason") or ""
    if not isinstance(reason, str) or len(reason) > MAX_REASON or "\n" in reason:
        raise ValueError("reason is one line of at most %d characters" % MAX_REASON)
    if status == "failed" and not reason.strip():
        raise ValueError("a failed payment needs a reason")
    return cid, account, amount, status, reason.strip(), parse_time(item.get("at"))


def read_results(path):
    """[(charge_id, account, amount, status, reason, at)] of a payment results file; CentralError
    naming the first line (CSV) or item (JSON) that is not a result."""
    kind = _kind(path)
    p = Path(path)
    try:
        if p.stat().st_size > MAX_RESULTS_BYTES:
            raise CentralError("%s: larger than %d MB: not a payment results file"
                               % (path, MAX_RESULTS_BYTES >> 20))
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CentralError("%s is not a text file (UTF-8)" % path) from None
    out = []
    if kind == "csv":
        rows = csv.DictReader(io.StringIO(text))
        if rows.fieldnames is None or not set(RESULT_COLUMNS) <= set(rows.fieldnames):
            raise CentralError("%s: the first line must name the columns %s"
                               % (path, ",".join(RESULT_COLUMNS)))
        for n, row in enumerate(rows, 2):
            try:
                out.append(_result(row))
            except ValueError as e:
                raise CentralError("%s:%d: %s" % (path, n, e)) from None
        return out
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise CentralError("%s is not JSON: %s" % (path, e)) from None
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT \
            or doc.get("version") != FORMAT_VERSION or not isinstance(doc.get("results"), list):
        raise CentralError('%s: not a payment results file ({"format": "%s", "version": %d, '
                           '"results": [...]})' % (path, RESULTS_FORMAT, FORMAT_VERSION))
    for n, item in enumerate(doc["results"]):
        try:
            if not isinstance(item, dict):
                raise ValueError("not an object")
            out.append(_result(item))
        except ValueError as e:
            raise CentralError("%s: results[%d]: %s" % (path, n, e)) from None
    return out


STAGE = """CREATE TEMP TABLE clr_results (n integer, charge_id text, account numeric,
    amount bigint, status text, reason text, at bigint) ON COMMIT DROP"""
MISMATCH = """
SELECT r.n, r.charge_id, c.charge_id IS NULL, c.account, c.amount, r.account, r.amount
FROM clr_results r LEFT JOIN clearing_charges c ON c.charge_id = r.charge_id
WHERE c.charge_id IS NULL OR c.account <> r.account OR c.amount <> r.amount
ORDER BY r.n LIMIT 1"""
INSERT = """
INSERT INTO clearing_payments (charge_id, status, at, reason, file_sha256)
SELECT DISTINCT ON (charge_id, at, status) charge_id, status, at, reason, %s FROM clr_results
ORDER BY charge_id, at, status, n
ON CONFLICT DO NOTHING"""


def import_results(url, path):
    """Record a payment results file. Returns {results, new, already, paid, failed}."""
    results = read_results(path)
    digest = hashlib.sha256(Path(path).read_bytes()).digest()
    with connect(url) as conn, conn.transaction():
        conn.execute(STAGE)
        with conn.cursor().copy("COPY clr_results FROM STDIN") as cp:
            for n, r in enumerate(results):
                cp.write_row((n,) + r)
        bad = conn.execute(MISMATCH).fetchone()
        if bad is not None:
            n, cid, missing, acc, amt, racc, ramt = bad
            raise CentralError("%s: result %d: %s" % (
                path, n + 1, "no charge %s (export-charges names every charge)" % cid if missing
                else "charge %s is account %s, amount %s, not account %s, amount %s"
                % (cid, acc, amt, racc, ramt)))
        new = conn.execute(INSERT, (digest,)).rowcount
    return {"results": len(results), "new": new, "already": len(results) - new,
            "paid": sum(1 for r in results if r[3] == "paid"),
            "failed": sum(1 for r in results if r[3] == "failed")}


# The standing of each charge: its latest result (paid wins a tie), or none yet.
CHARGE_STATUS = """
SELECT DISTINCT ON (charge_id) charge_id, status, at, reason
FROM clearing_payments ORDER BY charge_id, at DESC, status = 'paid' DESC"""
