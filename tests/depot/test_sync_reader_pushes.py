"""The depot's pushes reach the real reader (validator.app on the MicroPython binary, sync UART
on a pty, the depot tool through pyserial) and take effect on the next taps: a full deny list
and a delta, a key ring with a new issuer key, a fare table; the clock is set; the records of
the taps come home. Checked on both sides: the reader's INFO and decisions, the depot database."""
import sqlite3

from host_tools.issuing import denylist_build
from host_tools.sim import simbus
from host_tools.common.fw import validator  # noqa: F401
from validator import denylist as fw_denylist, reasons

T = 1795471200
DAY = 86400


def test_pushed_files_take_effect_on_the_reader(tmp_path):
    bus = simbus.SimBus(tmp_path, T, reader_id=3101,
                        config={"line": 5, "fares": {"5": {"adult": 180}},
                                "rules": {"passback_window": "10m"}})
    w = bus.world
    w.add_issuer(1, T - DAY, T + 365 * DAY)
    w.add_issuer(2, T - DAY, T + 365 * DAY, in_ring=False)  # a key the reader does not have yet
    alice = w.add_rider("alice", 11)
    bob = w.add_rider("bob", 12)
    carol = w.add_rider("carol", 13, key_id=2)
    dave = w.add_rider("dave", 14)
    bus.start()
    try:
        w.deny()  # the morning's list: nobody blocked yet
        first = bus.sync(push_denylist=True)
        assert first.ok, first.message
        assert bus.tap_qr(alice).reason == "OK"
        assert bus.tap_qr(carol).reason == "UNKNOWN_KEY"

        # The depot's evening: bob is blocked, issuer key 2 joins the ring, the fare goes up.
        bus.at(T + 3600)
        w.key_entries[2] = w.issuers[2].entry(T - DAY, T + 365 * DAY)
        w.deny(riders=["bob"])
        res = bus.sync(push_denylist=True, push_keyring=True,
                       push_config={"line": 5, "fares": {"5": {"adult": 250}},
                                    "rules": {"passback_window": "10m"}})
        assert res.ok, res.message
        assert [kind for kind, _ in res.pushes] == ["denylist", "keyring", "config"]
        assert res.time_set is not None
        info = bus.info()
        assert (info["deny_version"], info["keyring_version"], info["config_version"]) == \
            (w.deny_version, w.keyring_version, w.config_version)
        assert info["time"] == T + 3600

        bus.at(T + 3700)
        carol_tap = bus.tap_qr(carol)
        assert (carol_tap.reason, carol_tap.fare) == ("OK", 250)   # the new key and the new fare
        assert bus.tap_qr(bob).reason == "DENIED_CREDENTIAL"
        assert bus.tap_qr(alice).reason == "OK"                   # an hour later: no pass-back

        # A delta on top of the installed list: dave's account is added.
        delta, _, report = denylist_build.build_delta(
            w.deny_data, w.deny_version + 1, w.operator_key, w.operator_kid,
            add={(fw_denylist.TAG_ACCOUNT, fw_denylist.account_bytes(14)): 0}, created=T + 3800)
        assert report["adds"] == 1
        bus.at(T + 3800)
        res = bus.sync(pushes=[("denylist_delta", delta)])
        assert res.ok, res.message
        assert bus.info()["deny_version"] == w.deny_version + 1
        assert bus.tap_qr(dave).reason == "DENIED_ACCOUNT"
        assert bus.tap_qr(w.add_rider("erin", 15)).reason == "OK"  # everyone else still rides

        final = bus.sync()
        assert final.ok, final.message
    finally:
        bus.close()

    # the depot side: every decision that made a record, once, with the reader's own reasons
    db = sqlite3.connect(str(bus.db_path))
    rows = db.execute("SELECT seq, reason FROM trips WHERE reader_id = 3101 ORDER BY seq").fetchall()
    db.close()
    names = [reasons.name(r[1]) for r in rows]
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert names.count("OK") == 4 and "DENIED_CREDENTIAL" in names and "DENIED_ACCOUNT" in names
    assert "UNKNOWN_KEY" in names
