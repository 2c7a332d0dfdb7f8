"""fare upload: every record once, resumable, hostile depot content as incidents."""
import sqlite3
import time

import pytest

import depotgen
from backoffice_checks import assert_exactly_once, central_records
from host_tools import cli
from host_tools.backoffice import stagerows, upload
from host_tools.backoffice.upload import Uploader, UploadError
from host_tools.depot import depotdb
from validator import triplog as tl


@pytest.fixture
def depot(tmp_path):
    path = tmp_path / "depot.sqlite"
    depotgen.make_depot(path, [101, 102, 103], 300)
    return path


def test_every_record_once_decoded_from_its_bytes(central_db, depot):
    central_db.add_depot("north", [101, 102, 103])
    s = Uploader(depot, central_db.url, depot="north", batch_records=250).run()
    assert (s.records, s.new, s.bad, s.batches) == (900, 900, 0, 4)
    assert_exactly_once(central_db, [depot])
    # the columns are what the record's bytes say
    for rid, seq, raw, t, acct, ctr, kind, cred, fare, line, stop, dec, reason, keyed in central_db.q(
            "SELECT reader_id, seq, record, time, account, counter, kind, cred_id, fare, line, stop, "
            "decision, reason, keyed FROM trips WHERE seq %% 37 = 1"):
        rec = tl.decode(bytes(raw))
        assert (rid, seq, t, int(acct), int(ctr), kind, bytes(cred), fare, line, stop, dec, reason,
                keyed) == (rec["reader_id"], rec["seq"], rec["time"], rec["account"], rec["counter"],
                           rec["kind"], rec["cred_id"], rec["fare"], rec["line"], rec["stop"],
                           rec["decision"], rec["reason"], rec["keyed"])
    again = Uploader(depot, central_db.url, depot="north").run()
    assert (again.records, again.batches) == (0, 0)
    batches = central_db.q("SELECT sum(records), sum(new_records) FROM upload_batches")
    assert batches == [(900, 900)]


def test_the_next_night_sends_only_the_new_records(central_db, depot):
    central_db.add_depot("north", [101, 102, 103])
    Uploader(depot, central_db.url, depot="north").run()
    db = sqlite3.connect(str(depot))
    raws = [r[0] for r in db.execute("SELECT raw FROM trips WHERE reader_id = 102 ORDER BY seq")]
    db.close()
    more, _ = depotgen.reader_records(102, 40, day=1, first_seq=301, prev_link=tl.link(
        raws[-1], depotgen.log_key(102)))
    depotgen.add_records(depot, 102, more)
    s = Uploader(depot, central_db.url, depot="north").run()
    assert (s.records, s.new) == (40, 40)
    assert_exactly_once(central_db, [depot])


@pytest.mark.parametrize("connections", [1, 2])
def test_cut_after_the_central_commit_resends_what_was_in_flight(central_db, depot, connections):
    """Cut right after the third batch's commit, before its mark: the rerun sends that batch again
    (and, with two connections, the batch that was in flight beside it), and the merge skips it."""
    central_db.add_depot("north", [101, 102, 103])

    class Cut(Exception):
        pass

    def cut_at_third(step, n=[0]):
        if step == "committed":
            n[0] += 1
            if n[0] == 3:
                raise Cut()
    with pytest.raises(Cut):
        Uploader(depot, central_db.url, depot="north", batch_records=100, hook=cut_at_third,
                 connections=connections).run()
    stored = len(central_records(central_db))
    s = Uploader(depot, central_db.url, depot="north", batch_records=100).run()
    if connections == 1:
        assert stored == 300 and (s.records, s.new, s.skipped) == (700, 600, 100)
    else:  # the batches in flight beside it may have committed too: at most two are sent again
        assert s.new == 900 - stored and 0 < s.skipped <= 200
    assert_exactly_once(central_db, [depot])


def test_hostile_depot_rows_become_incidents_and_block_nothing(central_db, depot):
    central_db.add_depot("north", [101, 102, 103])
    db = sqlite3.connect(str(depot))
    other = db.execute("SELECT raw FROM trips WHERE reader_id = 101 AND seq = 5").fetchone()[0]
    good = db.execute("SELECT raw FROM trips WHERE reader_id = 102 AND seq = 7").fetchone()[0]
    flipped = bytearray(good)
    flipped[40] ^= 1
    db.execute("UPDATE trips SET raw = ? WHERE reader_id = 102 AND seq = 7", (bytes(flipped),))
    db.execute("UPDATE trips SET raw = ? WHERE reader_id = 102 AND seq = 8", (other,))
    db.execute("UPDATE trips SET raw = 'not bytes at all', received_at = 'x' "
               "WHERE reader_id = 103 AND seq = 9")
    db.execute("UPDATE trips SET raw = ? WHERE reader_id = 103 AND seq = 10", (b"\x00" * 5000,))
    db.execute("INSERT INTO trips SELECT 'evil', seq, time, day, decision, reason, kind, account, "
               "counter, cred_id, fare, line, stop, raw, received_at FROM trips "
               "WHERE reader_id = 101 AND seq <= 3")
    db.commit()
    db.close()
    s = Uploader(depot, central_db.url, depot="north", batch_records=128).run()
    assert (s.records, s.bad) == (896, 4)
    assert s.held == {"evil": 3}  # a reader id that is no number is never registered: held
    kinds = central_db.q("SELECT reader_id, seq_from, kind, detail, length(record) FROM incidents "
                         "WHERE kind = 'bad_record' ORDER BY reader_id, seq_from")
    assert [k[:3] for k in kinds] == [(102, 7, "bad_record"), (102, 8, "bad_record"),
                                      (103, 9, "bad_record"), (103, 10, "bad_record")]
    assert "checksum" in kinds[0][3] and "reader 101's seq 5" in kinds[1][3]
    assert kinds[3][4] == tl.MAX_RECORD  # bounded
    assert len(central_records(central_db)) == 896
    again = Uploader(depot, central_db.url, depot="north").run()
    assert again.records == 0
    assert central_db.q("SELECT count(*) FROM incidents WHERE kind = 'bad_record'") == [(4,)]
    assert central_db.q("SELECT reader_id, kind FROM incidents WHERE kind <> 'bad_record'") == [
        (None, "reader_not_registered")]


def test_readers_not_registered_are_held_until_they_are(central_db, depot, capsys):
    central_db.add_depot("north", [101, 102])
    rc = cli.main(["upload", "--from", str(depot), "--to", central_db.url, "--depot", "north",
                   "--no-progress"])
    out = capsys.readouterr()
    assert rc == 1 and "reader 103 (300 records)" in out.err
    assert len(central_records(central_db)) == 600
    assert central_db.q("SELECT reader_id, kind FROM incidents") == [(103, "reader_not_registered")]
    cli.main(["upload", "--from", str(depot), "--to", central_db.url, "--depot", "north",
              "--no-progress"])
    assert central_db.q("SELECT count(*) FROM incidents") == [(1,)]  # noted once
    cli.main(["central", "add-readers", "north", "103", "--db", central_db.url])
    capsys.readouterr()
    assert cli.main(["upload", "--from", str(depot), "--to", central_db.url, "--depot", "north",
                     "--no-progress"]) == 0
    assert "records sent" in capsys.readouterr().out
    assert_exactly_once(central_db, [depot])


def test_depot_incidents_and_a_replaced_log_go_up_once(central_db, depot):
    """A reader wiped and synced again (--accept-reset): its two logs number from 1 both; the
    central key (reader, seq, hash of the record) keeps both, and the depot's incidents go up."""
    central_db.add_depot("north", [101, 102, 103])
    Uploader(depot, central_db.url, depot="north").run()
    db = depotdb.open_sqlite(depot)
    db.add_incident(101, "reset", 1, 300, "the reader's record 300 is not the one the depot holds")
    db.reset_reader(101, tl.genesis(101), depotgen.DAY0 + 86400)
    db.add_incident(101, "reset_accepted", 1, 300, "accepted by the operator")
    db.close()
    new_log, _ = depotgen.reader_records(101, 50, day=1, seed=99)
    depotgen.add_records(depot, 101, new_log)
    s = Uploader(depot, central_db.url, depot="north").run()
    # the replaced log's 300 records are sent again (their old marks named the old log) and skipped
    assert (s.records, s.new, s.depot_incidents) == (350, 50, 2)
    assert_exactly_once(central_db, [depot])
    assert central_db.q("SELECT count(*) FROM trips WHERE reader_id = 101 AND seq = 1") == [(2,)]
    assert sorted(central_db.q("SELECT kind FROM incidents")) == [("reset",), ("reset_accepted",)]
    assert Uploader(depot, central_db.url, depot="north").run().records == 0


def test_two_depots_holding_the_same_records_store_them_once(central_db, tmp_path):
    """A bus that moved depots before its reader got the first depot's ACK: both depots hold its
    records; the store holds them once, and each depot's upload is confirmed."""
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    depotgen.make_depot(a, [201], 100)
    depotgen.make_depot(b, [201, 202], 100)
    central_db.add_depot("north", [201])
    central_db.add_depot("south", [202])
    Uploader(a, central_db.url, depot="north").run()
    from host_tools.backoffice import central
    central.add_readers(central_db.url, "south", [201], move=True)
    s = Uploader(b, central_db.url, depot="south").run()
    assert (s.records, s.new) == (200, 100)
    assert_exactly_once(central_db, [a, b])


def test_wrong_inputs_are_one_line_errors(central_db, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello" * 100)
    for path, why in ((tmp_path / "missing.sqlite", "no depot database at"),
                      (text, "not a depot database")):
        assert cli.main(["upload", "--from", str(path), "--to", central_db.url, "--no-progress"]) == 1
        assert why in capsys.readouterr().err
    empty = tmp_path / "other.sqlite"
    sqlite3.connect(str(empty)).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(UploadError, match="not a depot database"):
        Uploader(empty, central_db.url).run()
    depot = tmp_path / "depot.sqlite"
    depotgen.make_depot(depot, [1], 3)
    with pytest.raises(UploadError, match="no depot's role"):
        Uploader(depot, central_db.url).run()
    with pytest.raises(UploadError, match="no depot east"):
        Uploader(depot, central_db.url, depot="east").run()
    with pytest.raises(UploadError, match="not a central store"):
        Uploader(depot, central_db.server.url, depot="east").run()


def test_fields_agree_with_the_firmware_decoder():
    """stagerows.fields (the fast path) accepts and refuses exactly what triplog.decode does."""
    import random
    rnd = random.Random(5)
    recs, _ = depotgen.reader_records(9, 40)
    recs.append(tl.encode({"time": 1, "decision": 0, "reason": 3, "kind": "", "raw": b""}, 1, 9,
                          tl.genesis(9)))
    for raw in recs:
        for _ in range(30):
            b = bytearray(raw)
            what = rnd.random()
            if what < 0.4:
                b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
            elif what < 0.6:
                b = b[:rnd.randrange(len(b))]
            elif what < 0.7:
                b += bytes(rnd.randrange(1, 4))
            try:
                want = tl.decode(bytes(b))
            except tl.RecordError:
                want = None
            try:
                h = stagerows.fields(bytes(b))
            except tl.RecordError:
                h = None
            assert (want is None) == (h is None)
            if want is not None:
                assert (h[3], h[4], h[5], h[10], h[11], h[12]) == (
                    want["seq"], want["reader_id"], want["time"], want["account"],
                    want["counter"], want["fare"])


def test_two_uploads_of_the_same_records_at_the_same_moment(central_db, depot, monkeypatch):
    """Upload B inserts records that upload A has inserted but not committed: B waits for A,
    its insert is refused by the unique key when A commits, and B sends the batch again with
    ON CONFLICT DO NOTHING, which skips them. Neither fails, nothing is stored twice."""
    import threading
    central_db.add_depot("north", [101, 102, 103])
    a_merged, b_started = threading.Event(), threading.Event()
    merges = []
    real = Uploader._send_once

    def send_once(self, conn, b, depot_id, depot_uuid, merge):
        merges.append(merge)
        return real(self, conn, b, depot_id, depot_uuid, merge)
    monkeypatch.setattr(Uploader, "_send_once", send_once)
    central_db.q("SELECT ensure_trip_days(ARRAY['2026-11-24'::date])")  # B must not wait on it

    def hold_a(step):
        if step == "merged" and not a_merged.is_set():
            a_merged.set()
            b_started.wait(10)
            # until B is blocked on A's uncommitted rows (however slow this machine is)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not central_db.q(
                    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event = 'transactionid'"):
                time.sleep(0.01)
    out = {}
    ta = threading.Thread(target=lambda: out.setdefault("a", Uploader(
        depot, central_db.url, depot="north", batch_records=900, connections=1,
        hook=hold_a).run()))
    ta.start()
    assert a_merged.wait(20)
    tb = threading.Thread(target=lambda: out.setdefault("b", Uploader(
        depot, central_db.url, depot="north", batch_records=900, connections=1).run()))
    tb.start()
    b_started.set()
    ta.join(30)
    tb.join(30)
    assert out["a"].new == 900 and out["b"].new == 0 and out["b"].skipped == 900
    assert merges.count(upload.MERGE_RACING) == 1  # B's second try
    assert_exactly_once(central_db, [depot])
