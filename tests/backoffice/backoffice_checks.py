"""Checks shared by the back-office tests: the central store holds a depot's records exactly once,
and the depot's bookkeeping agrees."""
import hashlib
import sqlite3


def depot_records(path):
    """{(reader_id, seq, rec_hash)} of every record a depot database holds (both logs)."""
    c = sqlite3.connect(str(path))
    try:
        rows = c.execute("SELECT reader_id, seq, raw FROM trips UNION ALL "
                         "SELECT reader_id, seq, raw FROM trips_replaced").fetchall()
    finally:
        c.close()
    return {(r, s, hashlib.sha256(raw).digest()[:16]) for r, s, raw in rows}


def central_records(db, depot=None):
    rows = db.q("SELECT reader_id, seq, rec_hash FROM trips" +
                ("" if depot is None else " WHERE depot_id = (SELECT depot_id FROM depots "
                                          "WHERE name = '%s')" % depot))
    return [(r, s, bytes(h)) for r, s, h in rows]


def assert_exactly_once(db, paths):
    """Every record of the depot databases in the central store exactly once, nothing else, and
    each depot database's marks say all of it is confirmed."""
    want = set()
    for p in paths:
        want |= depot_records(p)
    got = central_records(db)
    assert len(got) == len(set(got)), "a record is stored twice"
    assert set(got) == want
    store = db.cfg["store_id"]
    for p in paths:
        c = sqlite3.connect(str(p))
        try:
            marks = dict(((s, r), u) for s, r, u in c.execute(
                "SELECT source, reader_id, upto FROM upload_marks WHERE store = ?", (store,)))
            tops = c.execute("SELECT reader_id, MAX(seq) FROM trips GROUP BY reader_id").fetchall()
        finally:
            c.close()
        for rid, top in tops:
            assert marks.get(("trips", rid)) == top, "reader %d: depot marks disagree" % rid
