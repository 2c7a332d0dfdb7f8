"""Full taps through the simulated board: emulator -> firmware on MicroPython -> decision ->
trip record on the flash image -> feedback event; records reach the depot over the serial
protocol; the reader's live data stays within the ESP32's heap."""
import sqlite3

import pytest

from host_tools.sim import simbus, simreader
from host_tools.common.fw import validator  # noqa: F401
from validator import triplog

T = 1795471200


@pytest.fixture
def bus(tmp_path):
    b = simbus.SimBus(tmp_path, T, reader_id=4242,
                      config={"line": 5, "fares": {"5": {"adult": 180}}})
    b.world.add_issuer(1, T - 86400, T + 365 * 86400)
    b.world.add_rider("qr", 1)
    b.world.add_rider("nfc", 2)
    b.start()
    yield b
    b.close()


def feedback_after(bus, seq_event):
    hist = bus.reader.history
    i = hist.index(seq_event)
    return [e for e in hist[:i] if e.get("ev") == "feedback"][-1]


def test_qr_and_nfc_taps_end_to_end(bus):
    assert bus.sync(push_denylist=False).ok            # the depot sets the clock
    bus.world.deny()                                    # an empty deny list, pushed
    assert bus.sync(push_denylist=True).ok
    bus.at(T + 60)
    qr = bus.tap_qr(bus.world.riders["qr"])
    assert (qr.accepted, qr.reason, qr.fare, qr.seq) == (True, "OK", 180, 1)
    fb = feedback_after(bus, qr.event)
    assert fb["pattern"] == "accept" and "1.80" in fb["lines"]

    bus.at(T + 70)
    nfc = bus.tap_nfc(bus.world.riders["nfc"])
    assert (nfc.accepted, nfc.reason, nfc.fare, nfc.seq) == (True, "OK", 180, 2)

    bus.at(T + 80)
    bad = bus.show_qr("FV1:NOT A CODE")
    assert (bad.accepted, bad.reason, bad.seq) == (False, "MALFORMED", 3)
    assert feedback_after(bus, bad.event)["pattern"] == "reject"

    res = bus.sync()
    assert res.ok and res.records_new == 3
    rows = sqlite3.connect(bus.db_path).execute(
        "SELECT seq, kind, decision, reason, fare, account, raw FROM trips ORDER BY seq").fetchall()
    # accounts are stored as text: u64 does not fit a signed SQL integer
    assert [r[:6] for r in rows] == [(1, "qr", 1, 0, 180, "1"), (2, "nfc", 1, 0, 180, "2"),
                                     (3, "qr", 0, 10, 0, "0")]
    # Accepted records keep the signed token, so the back office can verify the charge again.
    code = bus.world.riders["qr"].last_code
    recs = [triplog.decode(bytes(r[6])) for r in rows]  # the depot keeps each record as stored
    assert recs[0]["raw"] == tokenformat_bytes(code)
    assert len(recs[1]["raw"]) > 200   # the NFC transcript: credential, answer, challenge
    assert recs[2]["raw"] == b""
    info = bus.info()
    assert info["ack"] == 3 and info["log_last"] == 3
    assert info["heap"]["work"] < simreader.ESP32_HEAP


def tokenformat_bytes(code):
    from validator import base45, tokens
    return bytes(base45.decode(code[len(tokens.QR_PREFIX):]))


def test_power_cut_mid_route_keeps_every_record(bus):
    bus.world.deny()
    assert bus.sync(push_denylist=True).ok
    seqs = []
    for i in range(6):
        bus.at(T + 700 * (i + 1))
        o = bus.tap_qr(bus.world.riders["qr" if i % 2 else "nfc"])
        seqs.append(o.seq)
        if i == 2:
            bus.power_cut()
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert bus.sync().records_new == 6
    db = sqlite3.connect(bus.db_path)
    assert [r[0] for r in db.execute("SELECT seq FROM trips ORDER BY seq")] == seqs


def test_a_crash_in_the_loop_reboots_into_a_recovered_reader(bus):
    bus.world.deny()
    assert bus.sync(push_denylist=True).ok
    bus.at(T + 100)
    assert bus.tap_qr(bus.world.riders["qr"]).seq == 1
    bus.reader.proc.stdin.write(b'{"cmd": "fault", "what": "crash"}\n')
    bus.reader.proc.stdin.flush()
    crash = bus.reader.wait_event("crash")
    assert "crash injected" in crash["error"]
    ready = bus.reader.wait_event("ready")      # the same process, rebooted from its flash
    assert ready["log_last"] == 1
    bus.at(T + 800)
    again = bus.tap_qr(bus.world.riders["qr"])
    assert (again.reason, again.seq) == ("OK", 2)


def test_nearly_full_log_raises_a_service_warning_before_refusing(tmp_path):
    b = simbus.SimBus(tmp_path, T, reader_id=77, log_blocks=4,
                      config={"line": 5, "rules": {"passback_window": 0},
                              "fares": {"5": {"adult": 100}}})
    b.world.add_issuer(1, T - 86400, T + 365 * 86400)
    rider = b.world.add_rider("r", 9, max_rides=100, max_amount=100000)
    b.start()
    try:
        b.world.deny()
        assert b.sync(push_denylist=True).ok
        states = []
        for i in range(22):   # the 16 KiB log holds 22 such rides (scenarios/log-full.toml)
            b.at(T + 60 * (i + 1))
            assert b.tap_qr(rider).reason == "OK"
            states.append(b.info()["log_state"])
        assert "nearly_full" in states and states[0] == "ok"
        b.at(T + 60 * 30)
        assert b.tap_qr(rider).reason == "LOG_FULL"
        # the housekeeping task raised the warning while rides were still accepted
        warning = [e for e in b.reader.history if e.get("ev") == "service"]
        if not warning:
            warning = [b.reader.wait_event("service")]
        assert warning[0]["warning"] == "LOG_NEARLY_FULL"
    finally:
        b.close()


def test_a_board_that_is_not_provisioned_stays_up_out_of_service(tmp_path):
    """No identity on the flash: rebooting would not help, so the reader does not crash into a
    reboot loop; it says why, shows out of service and still answers the bench."""
    empty = tmp_path / "provision"
    empty.mkdir()
    r = simreader.SimReader(tmp_path / "r", provision_dir=empty)
    r._spawn()
    try:
        ev = r.wait_event("service")
        assert ev["warning"] == "NOT_SET_UP" and "not provisioned" in ev["error"]
        info = r.command("info", "info")
        assert info["status"] == "NOT_SET_UP" and info["reader_id"] is None
        shown = [e for e in r.history if e.get("ev") == "feedback"]
        assert shown and shown[-1]["pattern"] == "service"
        r.stop()
        assert r.proc.returncode == 0 and r.boots == 1 and r.faults == []
    finally:
        r.power_cut()
