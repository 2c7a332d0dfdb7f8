"""Synthetic depot databases, fast: real trip records (validator.triplog.encode, keyed chains) in
the depot's own schema (host_tools.depot.depotdb), as `fare sync` would have stored them, without
running readers. Used by the back-office tests and bench/bench_central.py.

A day of one bus: taps from 06:00 to 23:00 local time (UTC+8), one line per bus, 95 % accepted,
80 % QR; the raw ride code or NFC transcript is random bytes of a realistic length (mean record
375 bytes, as the trip-log workload), so clearing could not verify them; upload does not try."""
import hashlib
import random
import struct

from host_tools.common.fw import validator  # noqa: F401
from host_tools.depot import depotdb
from validator import triplog as tl
from validator.hmac256 import Hmac

DAY0 = 1795449600    # 2026-11-24 00:00 at UTC+8 (Asia/Shanghai)
MEAN_RAW = 375 - (tl.REC_FIXED + tl.CRC_SIZE + tl.CRED_SIZE)  # 288: records of 375 bytes on average


def log_key(reader_id):
    return hashlib.sha256(b"depotgen key %d" % reader_id).digest()


def reader_records(reader_id, n, day=0, first_seq=1, prev_link=None, seed=0, line=None,
                   fields_out=None):
    """n stored records of one reader's keyed log, seq first_seq.., on service day `day` (days
    after 2026-11-24). Returns (records, link after the last); `fields_out`, a list, gets each
    record's fields (as decode would give them)."""
    rnd = random.Random("%d/%d/%d" % (seed, reader_id, first_seq))
    mac = Hmac(log_key(reader_id))
    link = tl.genesis(reader_id) if prev_link is None else prev_link
    line = line if line is not None else 1 + reader_id % 40
    start = DAY0 + day * 86400 + 6 * 3600
    span = 17 * 3600
    out = []
    for i in range(n):
        accepted = rnd.random() < 0.95
        raw_len = max(0, min(tl.MAX_RAW, int(rnd.gauss(MEAN_RAW, 40))))
        rec = {
            "time": start + (span * i) // max(n, 1) + rnd.randrange(0, 30),
            "decision": 1 if accepted else 0,
            "reason": 0 if accepted else rnd.choice((3, 5, 9, 11)),
            "kind": "qr" if rnd.random() < 0.8 else "nfc",
            "account": rnd.getrandbits(rnd.choice((20, 40, 64))),
            "counter": rnd.getrandbits(16),
            "fare": rnd.choice((0, 150, 200, 250)) if accepted else 0,
            "line": line,
            "stop": rnd.randrange(1, 60),
            "cred_id": rnd.randbytes(16),
            "raw": rnd.randbytes(raw_len),
        }
        raw = tl.encode(rec, first_seq + i, reader_id, link, key=mac)
        link = tl.link(raw, mac)
        out.append(raw)
        if fields_out is not None:
            rec["seq"] = first_seq + i
            fields_out.append(rec)
    return out, link


def trip_rows(reader_id, records, received_at):
    """Depot `trips` rows for stored records (as readersync stores them)."""
    return [depotdb.trip_row(reader_id, tl.decode(raw), raw, received_at) for raw in records]


def make_depot(path, readers, per_reader, day=0, seed=0):
    """A depot database at `path` holding `per_reader` records of each reader id in `readers`,
    synced (stored and acknowledged) at the end of the day. Returns the records {rid: [bytes]}."""
    db = depotdb.open_sqlite(path)
    db.conn.execute("PRAGMA synchronous=OFF")
    received = DAY0 + day * 86400 + 23 * 3600 + 1800
    out = {}
    for rid in readers:
        fields = []
        recs, link = reader_records(rid, per_reader, day=day, seed=seed, fields_out=fields)
        db.conn.executemany(depotdb.INSERT_TRIP, [depotdb.trip_row(rid, f, raw, received)
                                                  for f, raw in zip(fields, recs)])
        db.conn.execute(depotdb.UPSERT_READER, (rid, per_reader, link, per_reader))
        db.conn.execute(depotdb.SET_ACKED, (per_reader, rid, per_reader))
        db.conn.commit()
        out[rid] = recs
    db.close()
    return out


def add_records(path, reader_id, records, received_at=None):
    """Append stored records of a reader to an existing depot database (its next night)."""
    db = depotdb.open_sqlite(path)
    received = received_at or DAY0 + 86400
    db.conn.executemany(depotdb.INSERT_TRIP, trip_rows(reader_id, records, received))
    db.conn.commit()
    db.close()


def seq_of(raw):
    return struct.unpack_from(">I", raw, 4)[0]
