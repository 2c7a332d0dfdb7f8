"""`fare sync --upload-to URL`: a night's sync of a real reader (the firmware on MicroPython, over
a pty) straight into the central store, as the depot's own role."""
import contextlib
import io

from backoffice_checks import assert_exactly_once
from host_tools import cli
from ptyrelay import PtyRelay
from sync_mpreader import MpReader

RID = 7101
KEY = bytes(range(32))


def test_sync_then_upload(central_db, tmp_path):
    central_db.add_depot("north", [RID])
    relay = PtyRelay()
    reader = MpReader(tmp_path / "reader", relay.reader_path, RID, KEY)
    reader.start()
    try:
        reader.add(120)
        keys = tmp_path / "keys"
        keys.mkdir()
        (keys / ("%d.key" % RID)).write_text(KEY.hex())
        db = tmp_path / "depot.sqlite"
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = cli.main(["sync", "--db", str(db), "--keys", str(keys), "--no-progress",
                           "--port", relay.connect(), "--upload-to", central_db.depot_url("north")])
        assert rc == 0, out.getvalue()
        assert "new in the central store" in out.getvalue()
        assert central_db.q("SELECT count(*), count(DISTINCT seq), bool_and(keyed) FROM trips") \
            == [(120, 120, True)]
        assert central_db.q("SELECT reader_id, stored_seq, acked_seq FROM reader_states") \
            == [(RID, 120, 120)]
        assert_exactly_once(central_db, [db])
    finally:
        reader.stop()
        relay.close()
