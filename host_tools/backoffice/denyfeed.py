"""Clearing's feedback to the readers: the next deny list (`fare denylist build --from-central`).

The list is the set of ids clearing flags now, plus any ids of a source file (the operator's own
entries):
- an account with a charge whose latest payment result is a failure older than the grace period
  (an account whose charges are paid is not flagged, so it leaves the list);
- a credential with at least `duplicates` ride codes accepted more than once (screenshots),
  until the credential expires;
- a suspect credential: one inside an accepted record whose issuer signature does not verify,
  whose key the issuer never had, or whose key was not valid at the ride (a forged credential a
  reader let through), until it expires.
The full list is signed with the operator key and, against the last version built here (or a
base file given), so is the delta; the version, the full list's bytes (the base of the next
delta) and why each id is on it go into the store. What comes on and goes off, and why, is
returned for the report."""
import hashlib
import json
import time
from dataclasses import dataclass, field

from host_tools.backoffice.charges import CHARGE_STATUS
from host_tools.backoffice import clearing
from host_tools.backoffice.pgconn import CentralError, connect
from host_tools.common import signedfile
from host_tools.common.fw import validator  # noqa: F401
from host_tools.issuing import denylist_build as dlb
from validator import denylist as fw
from validator import signedfile as sf

ACCOUNT, CREDENTIAL = "account", "credential"
_TAG = {ACCOUNT: fw.TAG_ACCOUNT, CREDENTIAL: fw.TAG_CREDENTIAL}
SUSPECT_VERDICTS = ("unknown_key", "bad_issuer_sig", "key_not_valid")

UNPAID = """
WITH st AS (%s)
SELECT c.account, count(*), sum(c.amount), min(st.at),
       string_agg(c.charge_id || ' (' || st.reason || ')', ', ' ORDER BY c.charge_id)
FROM clearing_charges c JOIN st ON st.charge_id = c.charge_id
WHERE st.status = 'failed' AND st.at <= %%(cutoff)s
GROUP BY c.account ORDER BY c.account""" % CHARGE_STATUS
DUPLICATED = """
SELECT cr.cred_id, cr.valid_until, cr.account, count(*), sum(d.readers)
FROM clearing_duplicates d JOIN clearing_credentials cr ON cr.cred_hash = d.cred_hash
WHERE cr.valid_until > %(now)s
GROUP BY cr.cred_hash, cr.cred_id, cr.valid_until, cr.account
HAVING count(*) >= %(duplicates)s ORDER BY cr.cred_id"""
SUSPECT = """
SELECT cr.cred_id, cr.valid_until, cr.account,
       string_agg(DISTINCT r.verdict, ', ' ORDER BY r.verdict), count(*)
FROM clearing_rides r JOIN clearing_credentials cr ON cr.cred_hash = r.cred_hash
WHERE r.state = 'bad' AND r.verdict IN ('unknown_key', 'bad_issuer_sig', 'key_not_valid')
  AND cr.valid_until > %(now)s
GROUP BY cr.cred_hash, cr.cred_id, cr.valid_until, cr.account ORDER BY cr.cred_id"""


@dataclass
class Built:
    version: int
    full: bytes
    delta: bytes = None
    base_version: int = None
    entries: int = 0
    added: list = field(default_factory=list)     # (kind, id, reason, detail)
    removed: list = field(default_factory=list)   # (kind, id, why)
    kept: int = 0
    report: dict = field(default_factory=dict)
    fp_rate: float = 0.0


def _id_text(kind, b):
    return str(int.from_bytes(b, "big")) if kind == ACCOUNT else b.hex()


def flagged(conn, now, payment_grace, duplicates):
    """{(kind, id text): (expiry, reason, detail)} of what clearing flags at `now`."""
    out = {}
    p = {"now": now, "cutoff": now - payment_grace, "duplicates": duplicates}
    for account, n, amount, first, charges in conn.execute(UNPAID, p):
        out[(ACCOUNT, str(int(account)))] = (0, "payment_failed", "%d charge(s), %s unpaid: %s"
                                             % (n, amount, charges[:300]))
    for cid, until, account, n, readers in conn.execute(DUPLICATED, p):
        out[(CREDENTIAL, bytes(cid).hex())] = (until, "duplicates", "account %s: %d ride code(s) "
                                               "accepted more than once" % (account, n))
    for cid, until, account, verdicts, n in conn.execute(SUSPECT, p):
        key = (CREDENTIAL, bytes(cid).hex())
        if key not in out:
            out[key] = (until, "suspect_credential", "account %s: %d accepted ride(s): %s"
                        % (account, n, verdicts))
    return out


def _entries(rows):
    """Deny-list builder entries {(tag, id bytes): expiry} from {(kind, id text): (expiry, ...)}."""
    return {dlb.parse_id(kind, ident): v[0] for (kind, ident), v in rows.items()}


def build(url, signing_key, key_id, version=None, now=None, payment_grace=86400, duplicates=1,
          source=None, base_data=None, publish=None, salt=None, width=None, known_good=None):
    """Build, sign and record the next list. `source`: {(tag, id bytes): expiry} of the
    operator's own entries; `base_data`: the full list the readers have, if not the last one
    built here; `publish(built)`: writes the files, inside the transaction that records the
    version (a list whose files could not be written is not the base of the next delta);
    `salt`, `width`: a new layout for the full list (then no delta: the readers take the full
    list); `known_good`: [(tag, id bytes)] in good standing, as `denylist_build.build_list`
    takes them (a full list draws salts until none is a false positive, a delta reports how many
    are). Returns a Built."""
    now = int(time.time()) if now is None else now
    if duplicates < 1:
        raise CentralError("--duplicates is at least 1")
    with connect(url) as conn, conn.transaction():
        clearing.lock(conn)
        last = conn.execute("SELECT version, file FROM denylist_versions ORDER BY version DESC "
                            "LIMIT 1").fetchone()
        rows = flagged(conn, now, payment_grace, duplicates)
        for (tag, b), exp in (source or {}).items():
            kind = dlb.TAG_NAMES[tag]
            key = (kind, _id_text(kind, b))
            if key not in rows:
                rows[key] = (exp, "source", "the operator's source file")
        base = base_data if base_data is not None else (bytes(last[1]) if last else None)
        base_version = base_model = None
        if base is not None:
            try:
                h, base_model = dlb.read_list(base)
            except ValueError as e:
                raise CentralError("the base deny list is not a full list: %s" % e) from None
            base_version = h.version
        top = max([v for v in (base_version, last[0] if last else None) if v is not None],
                  default=0)
        version = top + 1 if version is None else version
        if version <= top:
            raise CentralError("version %d is not newer than the last one (%d)" % (version, top))
        entries = _entries(rows)
        out = Built(version, b"", base_version=base_version)
        if base is not None and salt is None and width is None:
            try:
                out.delta, model, out.report = dlb.build_delta(base, version, signing_key, key_id,
                                                               entries=entries, created=now,
                                                               known_good=known_good)
                out.full = signedfile.seal(sf.DENYLIST, version, model.encode(), signing_key,
                                           key_id, now)
            except dlb.BucketOverflow:
                out.delta = None   # the base's layout cannot hold the new set: a full list only
        if not out.full:
            try:
                out.full, model, out.report = dlb.build_list(entries, version, signing_key,
                                                             key_id, now, salt, width, known_good)
            except ValueError as e:
                raise CentralError("cannot build the list: %s" % e) from None
        out.entries = model.count
        out.fp_rate = model.fp_rate()
        prev = {}
        if last is not None and (base_data is None or base_version == last[0]):
            prev = {(k, i): (r, e) for k, i, r, e in conn.execute(
                "SELECT kind, id, reason, expiry FROM denylist_entries WHERE version = %s",
                (last[0],))}
        if prev or base is None or (last is not None and base_version == last[0]):
            on_base = prev.__contains__
            gone = sorted(key for key in prev if key not in rows)
            out.removed = [(k, i, _why_gone(conn, k, i, prev[(k, i)], now)) for k, i in gone]
        else:
            # a base list not built here: what it holds is known only by asking it (its ids
            # are hashed), so what left it is known only as a number
            on_base = lambda key: base_model.denied(*dlb.parse_id(*key), now)  # noqa: E731
            n = out.report.get("removes", 0)
            out.removed = [("?", "?", "%d entr%s of the base list v%d (not built from this "
                            "store: its ids are hashed)" % (n, "y" if n == 1 else "ies",
                                                            base_version))] if n else []
        out.added = sorted((k, i, v[1], v[2]) for (k, i), v in rows.items() if not on_base((k, i)))
        out.kept = len(rows) - len(out.added)
        conn.execute(
            "INSERT INTO denylist_versions (version, created, file, sha256, entries, added, "
            "removed, settings) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (version, now, out.full, hashlib.sha256(out.full).digest(), len(rows),
             len(out.added), len(out.removed),
             json.dumps({"payment_grace": payment_grace, "duplicates": duplicates,
                         "base_version": base_version})))
        with conn.cursor().copy("COPY denylist_entries (version, kind, id, reason, detail, "
                                "expiry) FROM STDIN") as cp:
            for (k, i), (exp, reason, detail) in sorted(rows.items()):
                cp.write_row((version, k, i, reason, detail, exp))
        if publish is not None:
            publish(out)
        conn.execute("SELECT pg_advisory_unlock_all()")
    return out


def _why_gone(conn, kind, ident, was, now):
    reason, expiry = was
    if reason == "source":
        return "not in the source file any more"
    if kind == ACCOUNT:
        paid = conn.execute(
            "WITH st AS (%s) SELECT count(*) FROM clearing_charges c JOIN st "
            "ON st.charge_id = c.charge_id WHERE c.account = %%s AND st.status = 'paid' "
            "AND EXISTS (SELECT 1 FROM clearing_payments p WHERE p.charge_id = c.charge_id "
            "AND p.status = 'failed')" % CHARGE_STATUS, (int(ident),)).fetchone()[0]
        return "paid (%d charge(s) that had failed)" % paid if paid else "no unpaid charge"
    if expiry and expiry <= now:
        return "the credential expired"
    return "no longer flagged"
