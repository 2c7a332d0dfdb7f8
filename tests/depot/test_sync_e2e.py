"""Depot sync end to end: the reader's firmware (validator.sync, the trip log, the clock) runs on the
MicroPython binary and serves its sync UART on a pty; the depot runs `fare sync` (pyserial through
the pty, SQLite). Between them, tests/ptyrelay.py carries the bytes and can damage them.

The reader process is tests/mp/sync_reader_main.py, reusable by other tests and the benchmark."""
import io
import os
import random
import contextlib

import pytest
import serial

from host_tools import cli
from host_tools.depot import depotdb
from host_tools.common import ecsign, signedfile
from host_tools.depot.readersync import log_key
from ptyrelay import PtyRelay
from sync_mpreader import MpReader
from validator import framing
from validator import signedfile as fmt
from validator import syncproto as P
from validator import triplog as tl

RID = 7001
KEY = bytes(range(32))


@pytest.fixture(scope="module")
def opkey():
    return ecsign.new_key()


class Site:
    """Readers on ptys, a depot database and the depot's key directory."""

    def __init__(self, tmp, opkey):
        self.tmp = tmp
        self.opkey = opkey
        self.db = str(tmp / "depot.sqlite")
        self.keys = tmp / "keys"
        self.keys.mkdir()
        self.readers = []

    def reader(self, rid=RID, key=KEY, records=0):
        relay = PtyRelay()
        r = MpReader(self.tmp / ("reader%d" % rid), relay.reader_path, rid, key,
                     ecsign.public_bytes(self.opkey))
        r.relay = relay
        r.rid = rid
        self.readers.append(r)
        r.start()
        if records:
            r.add(records)
        (self.keys / ("%d.key" % rid)).write_text(key.hex())
        return r

    def file(self, kind, version, size=700):
        path = self.tmp / ("%s-%d.fvs" % (kind, version))
        path.write_bytes(signedfile.seal(kind, version, os.urandom(size), self.opkey, 1))
        return str(path)

    def sync(self, *ports, extra=()):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = cli.main(["sync", "--db", self.db, "--keys", str(self.keys), "--no-progress",
                           "--timeout", "1.0", "--retries", "4", "--operator-key",
                           "1:" + ecsign.public_bytes(self.opkey).hex()]
                          + [a for p in ports for a in ("--port", p)] + list(extra))
        return rc, out.getvalue()

    def depot(self):
        return depotdb.connect(self.db)

    def close(self):
        for r in self.readers:
            r.stop()
            r.relay.close()


@pytest.fixture
def site(tmp_path, opkey):
    s = Site(tmp_path, opkey)
    yield s
    s.close()


def test_sync_several_hundred_records_push_files_set_time(site):
    r = site.reader(records=400)
    files = ["--push-denylist", site.file(fmt.DENYLIST, 5, 20000),
             "--push-keyring", site.file(fmt.KEYRING, 2),
             "--push-config", site.file(fmt.CONFIG, 9, 6000), "--set-time"]
    rc, out = site.sync(r.relay.connect(), extra=files)
    assert rc == 0, out
    st = r.state()
    assert (st["first"], st["last"], st["ack"]) == (401, 400, 400)
    assert (st["deny"], st["keyring"], st["config"]) == (5, 2, 9)
    assert sorted(map(tuple, st["installs"])) == [("config", 9), ("denylist", 5), ("keyring", 2)]
    assert st["time"] is not None and abs(st["time"] - __import__("time").time()) < 120
    assert st["fault"] is None and st["sync"]["auth_fail"] == 0
    db = site.depot()
    assert db.seqs(RID) == list(range(1, 401))
    raws = [row[0] for row in db.conn.execute("SELECT raw FROM trips ORDER BY seq")]
    # the reader's chain is keyed under its sync secret, as the application's is
    assert tl.verify_chain(tl.genesis(RID), raws, log_key(KEY), prev_seq=0)[1] == 400
    assert db.reader_state(RID)[0] == 400
    db.close()
    # taps of the next day; the files are already there; then reboot the reader
    r.add(60)
    rc, out = site.sync(r.relay.connect(), extra=files + ["--reboot"])
    assert rc == 0, out
    assert r.expect_reboot() == 0  # the state before the reboot: nothing installed twice
    assert site.depot().seqs(RID) == list(range(1, 461))


def test_wrong_key_and_unauthenticated_commands_change_nothing(site, tmp_path):
    r = site.reader(records=30)
    (site.keys / ("%d.key" % RID)).write_text(bytes(32).hex())  # the depot holds a wrong secret
    rc, out = site.sync(r.relay.connect(), extra=["--push-config", site.file(fmt.CONFIG, 3),
                                                   "--set-time"])
    assert rc == 1 and "bad authentication" in out
    before = r.state()
    # a laptop that speaks the protocol but has no secret: every command that changes the reader
    # is refused, through the real UART
    port = serial.Serial(r.relay.connect(), timeout=0.2)
    dec = framing.FrameDecoder()

    def ask(rid, cmd, args, tag=None):
        payload = P.encode_message(P.REQUEST, [rid, cmd, args])
        if tag is not None:
            payload[0] |= P.TAGGED
            payload += tag
        port.write(framing.encode(payload))
        for _ in range(50):
            for p in dec.feed(port.read(4096)):
                item = P.decode_item(P.split_message(p)[1], 4096)
                if item and item[0] == rid:
                    return item[1], item[2]
        raise AssertionError("no answer")

    attacks = [(P.ACK, {"seq": 30}), (P.PUT, {"kind": "config", "ver": 9, "size": 900, "sha": bytes(32)}),
               (P.COMMIT, {"kind": "config", "ver": 9, "sha": bytes(32)}),
               (P.SET_TIME, {"t": 2000000000, "back": True}), (P.REBOOT, {})]
    for i, (cmd, args) in enumerate(attacks):
        # the depot's failed attempt left a session open on the reader; no tag is no tag
        assert ask(100 + i, cmd, args)[0] == P.BAD_MAC
    status, info = ask(200, P.INFO, {"hn": os.urandom(16)})
    assert status == P.OK and info["id"] == RID
    assert ask(201, P.GET_LOGS, {"from": 1, "max": 500})[0] == P.OK  # reading is open
    for i, (cmd, args) in enumerate(attacks):
        assert ask(300 + i, cmd, args)[0] == P.BAD_MAC
        assert ask(400 + i, cmd, args, os.urandom(32))[0] == P.BAD_MAC
    port.close()
    after = r.state()
    for k in ("first", "last", "ack", "free", "deny", "keyring", "config", "time", "floor", "installs"):
        assert after[k] == before[k], k
    assert after["sync"]["auth_fail"] >= 3 * len(attacks)
    assert site.depot().count(RID) == 0


def test_three_readers_synced_concurrently_by_one_command(site):
    readers = [site.reader(rid=8000 + i, key=bytes([i + 1]) * 32, records=150 + 50 * i)
               for i in range(3)]
    ports = [r.relay.connect() for r in readers]
    dead = PtyRelay()  # a fourth port where no reader answers
    try:
        rc, out = site.sync(*ports, dead.connect(), extra=["--push-config", site.file(fmt.CONFIG, 4),
                                                           "--set-time"])
    finally:
        dead.close()
    assert rc == 1, out  # one port failed: the command says so...
    assert "no answer" in out
    db = site.depot()
    for i, r in enumerate(readers):  # ...and the three readers are synced all the same
        n = 150 + 50 * i
        assert db.seqs(8000 + i) == list(range(1, n + 1))
        st = r.state()
        assert st["ack"] == n and st["config"] == 4 and st["time"] is not None
    runs = db.conn.execute("SELECT port, status, started, finished FROM sync_runs").fetchall()
    assert len(runs) == 4 and sorted(r[1] for r in runs) == ["no_answer", "ok", "ok", "ok"]
    ok = [r for r in runs if r[1] == "ok"]
    # concurrently: every reader's sync began before any of them ended
    assert max(r[2] for r in ok) <= min(r[3] for r in ok)
    db.close()


FAULT_KINDS = ("drop", "flip", "dup", "close")
SAMPLE = 24


def test_link_faults_sampled_over_ptys(site):
    """A sample of the in-process fault sweep (test_sync_faults.py) on the real binary and ptys:
    per case, new taps, a sync through a cable with one fault, then a clean sync."""
    r = site.reader(records=0)
    rng = random.Random(5)
    cases = [(k, d, f, w) for k in FAULT_KINDS for d in ("up", "down") for f in (0, 1, 2, 4)
             for w in ("end", 1, 12)]  # requests are short: 12 is inside every frame
    cases = rng.sample(cases, SAMPLE)
    cfg_version = 1
    total = 0
    cut = 0
    for kind, direction, frame, where in cases:
        total = r.add(40)
        cfg_version += 1
        fault = (kind, ("frame", frame, where))
        host = r.relay.connect(*((fault, None) if direction == "up" else (None, fault)))
        push = ["--push-config", site.file(fmt.CONFIG, cfg_version)]
        rc, out = site.sync(host, extra=push)
        wire = r.relay.link
        stream = wire.up if direction == "up" else wire.down
        assert stream.fired, (kind, direction, frame, where)
        if rc:
            cut += 1
            assert kind == "close", out
        rc, out = site.sync(r.relay.connect(), extra=push)
        assert rc == 0, out
        st = r.state()
        assert st["ack"] == total and st["config"] == cfg_version
        assert site.depot().seqs(RID) == list(range(1, total + 1)), (kind, direction, frame, where)
    st = r.state()
    assert st["fault"] is None
    assert sorted(i[1] for i in st["installs"]) == list(range(2, cfg_version + 1))  # each once
    print("%d sampled fault cases over ptys, %d first syncs cut short, %d frames damaged on the "
          "reader side" % (len(cases), cut, st["frames_bad"]))


def test_clear_messages_for_a_busy_port_and_a_missing_one(site):
    (site.keys / ("%d.key" % RID)).write_text(KEY.hex())
    relay = PtyRelay()
    try:
        path = relay.connect()
        held = serial.Serial(path, exclusive=True)  # another program has the port
        try:
            rc, out = site.sync(path, "/dev/does-not-exist")
        finally:
            held.close()
    finally:
        relay.close()
    assert rc == 1
    assert "port busy" in out and "cannot open the port" in out
    runs = site.depot().conn.execute("SELECT status FROM sync_runs").fetchall()
    assert sorted(r[0] for r in runs) == ["port", "port"]
