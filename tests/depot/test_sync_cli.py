"""`fare sync` as depot staff see it: a depot database locked by another writer (it says that it
waits and for whom, gives up once with a clear message, and neither loses nor half-commits a
record: what is not committed stays on the reader), and the summary table at 80 columns (the
width when the output is not a terminal), readable with long port names."""
import io
import os
import socket
import sqlite3
import time
import types

from rich.console import Console

from clikit import fare
from sync_bench import NOW, Bench, opkey  # noqa: F401 (opkey: fixture)
from sync_loopback import Link, LoopbackPort
from sync_testreader import KEY, RID
from host_tools.depot import depotdb, readersync


def _opts(**kw):
    return types.SimpleNamespace(**dict(dict(pushes=[], set_time=False, allow_time_backwards=False,
                                              reboot=False, accept_gaps=False, db_wait=1.0,
                                              now=lambda: NOW), **kw))


def _lock(db_path):
    """Another program that holds the database's write lock until it is closed."""
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_locked_database_is_waited_for_then_given_up_and_nothing_is_lost(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=40)
    depotdb.connect(b.db_path).close()
    holder = _lock(b.db_path)
    statuses = []
    started = time.monotonic()
    res = readersync.sync_port("/dev/ttyUSB3", b.keys, b.db_path, _opts(),
                               progress=lambda **kw: statuses.append(kw.get("status")),
                               opener=lambda path, baud: LoopbackPort(b.server, Link(), b.clock))
    assert time.monotonic() - started < 20
    assert res.status == "db_locked" and not res.ok
    assert "is locked by another writer" in res.message
    assert "gave up after waiting 1 s" in res.message and "stay on the reader" in res.message
    assert any(s and s.startswith("waiting for the depot DB lock") for s in statuses)
    assert b.reader.log.ack_seq == 0          # nothing acknowledged: the reader keeps them all
    holder.close()
    db = b.db()
    assert db.seqs(RID) == []
    db.close()
    res = readersync.sync_port("/dev/ttyUSB3", b.keys, b.db_path, _opts(),
                               opener=lambda path, baud: LoopbackPort(b.server, Link(), b.clock))
    assert res.ok, res.message
    assert b.db().seqs(RID) == list(range(1, 41)) and b.reader.log.ack_seq == 40


def test_a_lock_taken_mid_sync_commits_whole_batches_only(tmp_path, opkey):
    """Another writer takes the lock after the first acknowledgement: the sync stops at its next
    commit; the depot holds exactly the records the reader was told to delete, and the next sync
    brings the rest, each record once."""
    b = Bench(tmp_path, opkey, records=120)
    holder = []
    real_ack = b.reader.log.ack

    def ack_then_lock(seq, *a, **kw):
        r = real_ack(seq, *a, **kw)
        if not holder:
            holder.append(_lock(b.db_path))
        return r
    b.reader.log.ack = ack_then_lock
    db = depotdb.connect(b.db_path, lock_wait=1.0)
    res = readersync.Result("loop")
    try:
        readersync.ReaderSync(b.link(), db, res, b.keys, ack_every=1024, now=lambda: NOW).run()
        raise AssertionError("the sync went on under another writer's lock")
    except depotdb.DBLocked as e:
        assert "gave up after waiting" in str(e)
    finally:
        db.close()
    holder[0].close()
    acked = b.reader.log.ack_seq
    db = b.db()
    held = db.seqs(RID)
    assert 0 < acked < 120 and held == list(range(1, len(held) + 1)) and len(held) >= acked
    assert db.reader_state(RID)[0] == len(held)   # the chain head moved with the rows, no further
    db.close()
    b.reader.log.ack = real_ack
    assert b.sync().status == "ok"
    assert b.db().seqs(RID) == list(range(1, 121)) and b.reader.log.ack_seq == 120


def test_sync_says_it_waits_and_for_whom_then_gives_up_once(tmp_path, capsys):
    db = tmp_path / "depot.sqlite"
    depotdb.connect(str(db)).close()
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / ("%d.key" % RID)).write_text(KEY.hex())
    # the holder is another `fare sync` (its note names it), still running
    with open(str(db) + ".writer", "w") as f:
        f.write('{"pid": %d, "host": "%s", "since": %d, "command": "fare sync"}'
                % (os.getppid(), socket.gethostname(), int(time.time())))
    holder = _lock(str(db))
    try:
        rc, out, err = fare(capsys, "sync", "--port", "/dev/ttyUSB0", "--keys", keys, "--db", db,
                            "--db-wait", "1", "--no-progress")
    finally:
        holder.close()
    lines = err.strip().splitlines()
    assert rc == 1 and "Traceback" not in err
    assert len(lines) == 2, err
    assert lines[0].startswith("waiting for the depot database %s" % db)
    assert "fare sync, pid %d on %s" % (os.getppid(), socket.gethostname()) in lines[0]
    assert lines[1].startswith("fare sync: depot database %s is locked by another writer" % db)
    assert "gave up after waiting 1 s" in lines[1]
    # it gave up before talking to any reader: no run to record, nothing written
    con = sqlite3.connect(str(db))
    assert con.execute("SELECT COUNT(*) FROM sync_runs").fetchone()[0] == 0


def _result(port, rid, status="ok", message="", pushes=(), new=0):
    r = readersync.Result(port)
    r.reader_id, r.status, r.message, r.pushes = rid, status, message, list(pushes)
    r.records_new = new
    r.acked = new if status == "ok" else None
    r.stats = {"bytes_in": 1234567}
    r.time_set = NOW if status == "ok" else None
    return r


def test_the_summary_reads_at_80_columns():
    by_id = "/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0"
    locked = ("depot database depot.sqlite is locked by another writer (not a fare sync: "
              "another program): gave up after waiting 30 s; nothing was written, the records "
              "stay on the reader until a sync stores them")
    results = [_result("/dev/ttyUSB%d" % i, 1200 + i, new=412 + i,
                       pushes=[("denylist", "installed"), ("config", "already")])
               for i in range(10, 12)]
    results += [_result(by_id, 1203, "no_answer", "GET_LOGS: no answer after 6 tries"),
                _result("/dev/ttyUSB2", 1204, "db_locked", locked),
                _result("/dev/ttyUSB3", 1205, "db_locked", locked),
                _result("/dev/ttyUSB4", None, "port", "port busy (another program has it open)")]
    results[0].warnings = ["its config does not load (BAD_SIGNATURE)"]
    console = Console(file=io.StringIO(), width=80)
    console.print(readersync.summary_table(results))
    text = console.file.getvalue()
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    assert "…" not in text and "..." not in text
    header = [ln for ln in lines if "reader" in ln and "result" in ln][0]
    for col in ("port", "reader", "result", "new", "acked", "pushed", "clock"):
        assert col in header
    for r in results:  # each port tells its bus apart, on the row of its reader
        if r.port.startswith("/dev/tty"):
            row = [ln for ln in lines if r.port[5:] + " " in ln][0]
            assert str(r.reader_id if r.reader_id is not None else "-") in row
    assert "usb-1a86" in text and "port0" in text
    assert "FAILED" in text and "denylist: new" in text and "config: had" in text
    notes = readersync.summary_notes(results)
    assert ("warning", "reader 1210 on ttyUSB10: its config does not load (BAD_SIGNATURE)") in notes
    failed = [line for mark, line in notes if mark == "FAILED"]
    # each failure once, naming reader and port once; one message shared by two readers once
    assert failed == [
        "reader 1203 on serial/by-id/usb-1a86_USB_Serial-if00-port0 (no_answer): GET_LOGS: no "
        "answer after 6 tries",
        "reader 1204 on ttyUSB2, reader 1205 on ttyUSB3 (db_locked): " + locked,
        "ttyUSB4 (port): port busy (another program has it open)"]
