"""An install that fails on the reader's side (no heap, a flash error) leaves the reader as it was,
says why, and the depot's next push of the same file installs it without a reboot (issue 14,
finding 2: a key ring file renamed into place before it loaded, INFO on the old version, riders of
the new key refused, every retry failing with OSError(2) until a reboot).

The simulated reader runs the real firmware; the bench makes one function of the install run out
of heap, or meet a flash error, once (at the point named). Checked: the sync status
(OUT_OF_MEMORY / FLASH_ERROR) in the depot's result and its database, INFO's version and fault
(also in `fare report`), the taps, and the retry, which resumes the staged upload instead of
sending the file again."""
import sqlite3

import pytest

from host_tools.issuing import denylist_build
from host_tools.sim import simbus
from host_tools.common.fw import validator  # noqa: F401
from validator import denylist as fw_denylist

T = 1795471200
DAY = 86400
CONFIG = {"line": 5, "fares": {"5": {"adult": 180}}, "rules": {"passback_window": "0s"}}


def _accounts(accounts):
    return {(fw_denylist.TAG_ACCOUNT, fw_denylist.account_bytes(a)): 0 for a in accounts}


@pytest.fixture
def bus(tmp_path):
    b = simbus.SimBus(tmp_path, T, reader_id=5101, config=CONFIG)
    w = b.world
    w.add_issuer(1, T - DAY, T + 365 * DAY)
    w.add_issuer(2, T - DAY, T + 365 * DAY, in_ring=False)
    b.alice = w.add_rider("alice", 11, max_rides=100)
    b.carol = w.add_rider("carol", 13, key_id=2, max_rides=100)
    b.start()
    w.deny(accounts=range(10 ** 9, 10 ** 9 + 5000))
    assert b.sync(push_denylist=True).ok
    yield b
    b.close()


def _next(bus, kind):
    """(push kind, file, INFO field, version the file brings, check after it installed)."""
    w = bus.world
    if kind == "keyring":
        w.key_entries[2] = w.issuers[2].entry(T - DAY, T + 365 * DAY)
        data = w.keyring_file()
        return "keyring", data, "keyring_version", w.keyring_version, \
            lambda: bus.tap_qr(bus.carol).reason == "OK"
    if kind == "config":
        data = w.config_file(dict(CONFIG, fares={"5": {"adult": 250}}))
        return "config", data, "config_version", w.config_version, \
            lambda: bus.tap_qr(bus.alice).fare == 250
    if kind == "denylist":
        w.deny(accounts=[11])
        return "denylist", w.deny_data, "deny_version", w.deny_version, \
            lambda: bus.tap_qr(bus.alice).reason == "DENIED_ACCOUNT"
    data, _, _ = denylist_build.build_delta(w.deny_data, w.deny_version + 1, w.operator_key,
                                            w.operator_kid, add=_accounts([11]),
                                            remove=_accounts([10 ** 9]), created=bus.now)
    return "denylist_delta", data, "deny_version", w.deny_version + 1, \
        lambda: bus.tap_qr(bus.alice).reason == "DENIED_ACCOUNT"


def _fault(module, name, error="MemoryError"):
    return {"what": "raise", "module": module, "name": name, "error": error}


# (kind, the function the bench makes fail, the status the depot must see)
CASES = [
    ("keyring", _fault("validator.p256", "build_table"), "OUT_OF_MEMORY"),
    ("keyring", _fault("validator.keyring", "_index"), "OUT_OF_MEMORY"),
    ("keyring", _fault("validator.keyring", "_index", "OSError"), "FLASH_ERROR"),
    ("config", _fault("validator.config", "load_stream"), "OUT_OF_MEMORY"),
    ("denylist", _fault("validator.denylist_update", "_check_full"), "OUT_OF_MEMORY"),
    ("denylist_delta", _fault("validator.denylist_update", "_verify_body"), "OUT_OF_MEMORY"),
    ("denylist_delta", _fault("validator.denylist_update", "_zeros", "OSError"), "FLASH_ERROR"),
]


@pytest.mark.parametrize("kind, fault, status", CASES,
                         ids=["%s-%s-%s" % (k, f["name"], st) for k, f, st in CASES])
def test_a_failed_install_changes_nothing_says_why_and_the_next_push_installs(bus, kind, fault,
                                                                             status):
    name, data, field, new, took = _next(bus, kind)
    before = bus.info()[field]
    boots = bus.reader.boots
    if kind == "keyring":
        assert bus.tap_qr(bus.carol).reason == "UNKNOWN_KEY"
    bus.at(bus.now + 60)
    assert bus.sync().ok                     # the logs home: the next sync is only the push
    assert bus.upload(name, data) == "uploaded"   # staged: the fault is for the install
    bus.reader.inject(**fault)
    res = bus.sync(pushes=[(name, data)])
    assert not res.ok and status in res.message, res.message
    info = bus.info()
    assert info[field] == before                       # the old state, in RAM and on flash
    assert info["fault"] and info["fault"]["where"] == "install " + name
    assert status != "OUT_OF_MEMORY" or "MemoryError" in info["fault"]["error"]
    if kind == "keyring":
        assert bus.tap_qr(bus.carol).reason == "UNKNOWN_KEY"
    db = sqlite3.connect(str(bus.db_path))
    assert status in db.execute("SELECT message FROM sync_runs ORDER BY id DESC").fetchone()[0]
    db.close()

    bus.at(bus.now + 60)
    res = bus.sync(pushes=[(name, data)])               # the depot's next try
    assert res.ok, res.message
    if len(data) > 4096:                                # the staged upload resumed, not resent
        assert res.stats["bytes_out"] < len(data) // 2
    assert bus.info()[field] == new
    assert bus.reader.boots == boots                    # no reboot needed
    bus.at(bus.now + 60)
    assert took()
    db = sqlite3.connect(str(bus.db_path))      # what INFO said at the last sync
    free, largest, fault = db.execute("SELECT heap_free, heap_largest, fault FROM reader_health "
                                      "WHERE reader_id = 5101").fetchone()
    db.close()
    assert 0 < largest <= free and fault.startswith("install " + name)


def test_a_fault_after_the_key_ring_is_committed_leaves_it_installed(bus):
    """Past the rename that commits a key ring, a fault while tidying its tables is noted, but the
    install is done: the depot is told OK and the new key serves."""
    name, data, field, new, took = _next(bus, "keyring")
    bus.at(bus.now + 60)
    bus.reader.inject(**_fault("validator.keyring", "KeyRing.remove_stale_tables", "OSError"))
    res = bus.sync(pushes=[(name, data)])
    assert res.ok, res.message
    info = bus.info()
    assert info[field] == new
    assert info["fault"]["where"] == "install keyring (after it was committed)"
    bus.at(bus.now + 60)
    assert took()


def test_fare_report_shows_each_readers_heap_and_last_fault(bus, capsys, monkeypatch):
    from host_tools import cli
    name, data, _, _, _ = _next(bus, "config")
    assert bus.upload(name, data) == "uploaded"
    bus.reader.inject(**_fault("validator.config", "load_stream"))
    assert not bus.sync(pushes=[(name, data)]).ok
    assert bus.sync().ok
    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    assert cli.main(["report", "--db", str(bus.db_path)]) == 0
    out = capsys.readouterr().out
    assert "largest free block" in out and "5101" in out
    assert "install config: MemoryError" in out
