"""Depot sync on CPython: the framing, the HMAC, the reader's message logic (validator.sync, pure
logic with the real trip log on a simulated flash) and the depot side (synclink, depot, depotdb)
wired together in process. The same protocol over ptys with the reader on MicroPython is in
test_sync_e2e.py, link faults in test_sync_faults.py."""
import csv
import hashlib
import hmac
import io
import json
import os
import types

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_bench import NOW, Bench, flashdev, open_session, opkey, req, seal  # noqa: F401 (opkey: fixture)
from host_tools import cli
from host_tools.depot import readersync, depotdb, synclink
from host_tools.common import ecsign
from host_tools.common.clierrors import UserError
from sync_testreader import KEY, RID, gen, log_key
from sync_loopback import Link, LoopbackPort
from validator import framing, hmac256, sync
from validator import signedfile as fmt
from validator import syncproto as P
from validator import triplog as tl

LOG_KEY = log_key(KEY)  # the test reader's chain is keyed, as the application's is

# -- framing ---------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=1200), min_size=1, max_size=5), st.data())
def test_frames_survive_any_chunking(payloads, data):
    wire = b"".join(framing.encode(p) for p in payloads)
    for p in payloads:
        assert 0 not in framing.cobs_encode(p)
        assert len(framing.encode(p)) <= framing.max_wire_size(len(p))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    dec = framing.FrameDecoder()
    got = []
    prev = 0
    for c in cuts + [len(wire)]:
        got += dec.feed(wire[prev:c])
        prev = c
    assert got == payloads and dec.bad == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(min_size=1, max_size=600))
def test_noise_before_a_frame_is_dropped_and_the_frame_still_arrives(noise, payload):
    dec = framing.FrameDecoder()
    got = dec.feed(noise + framing.encode(payload))
    assert got[-1] == payload
    # noise can only decode as a frame if its CRC checks: never the case for short random noise
    assert all(g == payload for g in got) or len(got) <= 2


def test_damaged_and_oversized_frames_are_counted_and_skipped():
    dec = framing.FrameDecoder(max_payload=100)
    good = framing.encode(b"hello")
    bad = bytearray(framing.encode(b"hello"))
    bad[3] ^= 0x40
    big = framing.encode(bytes(500))
    assert dec.feed(bytes(bad) + big + good) == [b"hello"]
    assert dec.bad == 2 and dec.good == 1
    assert dec.n == 0 and len(dec.buf) == framing.max_wire_size(100) - 2  # one fixed buffer


def test_crc_fallback_matches_binascii():
    for data in (b"", b"123456789", os.urandom(300)):
        assert framing._crc32_py(data) == framing.crc32(data)
    assert framing.crc32(b"123456789") == 0xCBF43926


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=150), st.lists(st.binary(max_size=100), max_size=4))
def test_hmac_matches_the_standard_library(key, parts):
    want = hmac.new(key, b"".join(parts), hashlib.sha256).digest()
    assert hmac256.Hmac(key).tag(*parts) == want == hmac256.hmac_sha256(key, b"".join(parts))
    assert hmac256.equal(want, want) and not hmac256.equal(want, want[:-1] + bytes([want[-1] ^ 1]))


# -- the whole sync in process ---------------------------------------------------------------------

def test_full_sync_pulls_pushes_sets_time_then_second_run_is_a_no_op(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=300)
    pushes = [("denylist", seal(opkey, fmt.DENYLIST, 5)), ("keyring", seal(opkey, fmt.KEYRING, 2)),
              ("config", seal(opkey, fmt.CONFIG, 9, os.urandom(12000)))]
    res = b.sync(pushes=pushes, set_time=True)
    assert res.status == "ok", res.message
    assert res.records_new == 300 and res.acked == 300
    assert res.pushes == [("denylist", "installed"), ("keyring", "installed"), ("config", "installed")]
    assert res.time_set == NOW
    r = b.reader
    assert (r.log.ack_seq, r.log.last_seq) == (300, 300)
    assert (r.version("denylist"), r.version("keyring"), r.version("config")) == (5, 2, 9)
    assert r.clock.now() == NOW
    with open(os.path.join(b.reader.root, "config.fvs"), "rb") as f:
        assert f.read() == pushes[2][1]
    db = b.db()
    assert db.seqs(RID) == list(range(1, 301))
    rows = {row["seq"]: row for row in db.export(reader_id=RID)}
    for s in (1, 150, 300):
        want = gen(s)
        assert rows[s]["fare_minor_units"] == want["fare"]
        assert rows[s]["account"] == str(want["account"])
        assert rows[s]["cred_id"] == want["cred_id"].hex()
    assert db.reader_state(RID)[0] == 300 and db.reader_state(RID)[2] == 300
    db.close()
    # Again: nothing new to pull, every file already there, nothing installed twice.
    res = b.sync(pushes=pushes)
    assert res.status == "ok" and res.records_new == 0
    assert [p[1] for p in res.pushes] == ["already"] * 3
    assert len(r.installs) == 3
    # Taps after the sync come home on the next one; the chain runs across nights.
    r.add_records(25)
    res = b.sync()
    assert res.status == "ok" and res.records_new == 25 and r.log.ack_seq == 325
    assert b.db().seqs(RID) == list(range(1, 326))


def test_the_depot_commits_before_it_acknowledges(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=400)
    seen = []
    real_ack = b.reader.log.ack

    def ack(seq):  # at every ACK the depot's database (another connection) must hold the records
        db = depotdb.connect(b.db_path)
        seen.append((seq, db.count(RID), db.seqs(RID)[-1:]))
        db.close()
        real_ack(seq)
    b.reader.log.ack = ack
    res = b.sync(ack_every=20000)
    assert res.status == "ok"
    assert len(seen) >= 3  # acknowledged batch by batch, not only at the end
    for seq, count, last in seen:
        assert count >= seq and last[0] >= seq


def test_host_refuses_wrong_or_missing_key_and_garbage_answers(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=10)
    with pytest.raises(synclink.LinkError) as e:
        b.link(keys={RID: bytes(32)}).hello()
    assert e.value.kind == "bad_auth"
    with pytest.raises(synclink.LinkError) as e:
        b.link(keys={RID + 1: KEY}).hello()
    assert e.value.kind == "no_key"

    class Mute:  # a port where nothing answers
        timeout = 0.05
        baudrate = 115200

        def __init__(self, answer=b""):
            self.answer = answer
            self.t = 0.0

        def write(self, b):
            return len(b)

        def read(self, n):
            a, self.answer = self.answer, b""
            self.t += 0.05
            return a

    m = Mute()
    with pytest.raises(synclink.LinkError) as e:
        synclink.SyncLink(m, {}.get, timeout=0.2, retries=1, clock=lambda: m.t).hello()
    assert e.value.kind == "no_answer"
    # a device that answers with frames, but not ours (a modem echoing, another protocol)
    rid_reply = framing.encode(b"\x21" + cbor2.dumps([1, "OK", {"proto": 99}]))
    m = Mute(rid_reply)
    with pytest.raises(synclink.LinkError) as e:
        synclink.SyncLink(m, {}.get, timeout=0.2, retries=1, clock=lambda: m.t).hello()
    assert e.value.kind == "wrong_device"
    assert b.reader.log.ack_seq == 0


class Talker:
    """A port whose device answers every write with `answer(bytes written)`."""
    timeout = 0.05
    baudrate = 115200

    def __init__(self, answer):
        self.answer = answer
        self.pending = b""
        self.t = 0.0

    def write(self, b):
        self.pending += self.answer(bytes(b))
        return len(b)

    def read(self, n):
        a, self.pending = self.pending[:n], self.pending[n:]
        if not a:
            self.t += 0.05
        return a


REPL = (b"\r\nMicroPython v1.24.1 on 2024-11-29; ESP32 module with ESP32\r\n"
        b"Type \"help()\" for more information.\r\n>>> ")


@pytest.mark.parametrize("device", ["echo", "repl", "half_frame_then_silence"])
def test_a_device_that_answers_but_not_as_a_reader_is_a_wrong_device(device):
    if device == "echo":  # a loopback plug, or a modem echoing: our own request comes back
        port = Talker(lambda b: b)
    elif device == "repl":  # a board at its MicroPython prompt: banner, echoed garbage, prompt
        port = Talker(lambda b: REPL + b.replace(b"\x00", b"") + b"\r\n>>> ")
    else:  # a reader whose cable is pulled while its answer is on the way: not a wrong device
        answers = [framing.encode(b"\x21" + cbor2.dumps([1, "OK", {"proto": 1}] * 10))[:40]]
        port = Talker(lambda b: answers.pop() if answers else b"")
    with pytest.raises(synclink.LinkError) as e:
        synclink.SyncLink(port, {}.get, timeout=0.2, retries=2, clock=lambda: port.t).hello()
    assert e.value.kind == ("no_answer" if device == "half_frame_then_silence" else "wrong_device")
    assert e.value.kind != "wrong_device" or "not as a fare reader" in str(e.value)


def test_requests_encoded_by_another_cbor_implementation_are_understood(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=5)
    hn = os.urandom(16)
    reply = b.server.handle(bytes([P.REQUEST]) + cbor2.dumps([1, P.INFO, {"hn": hn}]))
    _, body, signed, tag = P.split_message(reply)
    rid, status, info = cbor2.loads(bytes(body))
    assert (rid, status, info["id"], info["last"]) == (1, "OK", RID, 5)
    s = P.Session(KEY, RID, info["nonce"], hn)
    assert s.check(signed, tag)
    body = bytes([P.REQUEST | P.TAGGED]) + cbor2.dumps([2, P.ACK, {"seq": 3}])
    reply = b.server.handle(body + s.tag(body))
    assert cbor2.loads(bytes(P.split_message(reply)[1]))[1] == "OK"
    assert b.reader.log.ack_seq == 3


# -- authentication --------------------------------------------------------------------------------

AUTH_COMMANDS = [
    (P.ACK, {"seq": 5}),
    (P.PUT, {"kind": "config", "ver": 9, "size": 5000, "sha": bytes(32)}),
    (P.CHUNK, {"off": 0, "data": b"x" * 100}),
    (P.COMMIT, {"kind": "config", "ver": 9, "sha": bytes(32)}),
    (P.SET_TIME, {"t": NOW + 999999, "back": True}),
    (P.REBOOT, {}),
]


def test_unauthenticated_commands_are_refused_and_change_nothing(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=20)
    srv, r = b.server, b.reader
    before = r.state()
    for cmd, args in AUTH_COMMANDS:  # before any session
        assert req(srv, 7, cmd, args)[0] == P.NO_SESSION
    s, _ = open_session(srv)
    wrong = P.Session(bytes(32), RID, os.urandom(16), os.urandom(16))
    rid = 10
    for cmd, args in AUTH_COMMANDS:
        rid += 1
        assert req(srv, rid, cmd, args)[0] == P.BAD_MAC  # no tag
        assert req(srv, rid, cmd, args, wrong)[0] == P.BAD_MAC  # a tag under another key
        # a tag of the right key but another session (recorded last night)
        old = P.Session(KEY, RID, os.urandom(16), os.urandom(16))
        assert req(srv, rid, cmd, args, old)[0] == P.BAD_MAC
        # a good tag over other bytes: the tag of one message moved onto another
        good = P.encode_message(P.REQUEST, [rid, cmd, args], s)
        other = P.encode_message(P.REQUEST, [rid, P.ACK, {"seq": 19}], None)
        forged = other + good[-32:]
        forged[0] |= P.TAGGED
        st_ = P.decode_item(P.split_message(srv.handle(bytes(forged)))[1])[1]
        assert st_ == P.BAD_MAC
    assert r.state() == before
    assert srv.counters["auth_fail"] >= 4 * len(AUTH_COMMANDS)
    assert not srv.rebooted and srv._reboot is False


def test_replayed_and_repeated_requests(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=20)
    srv, r = b.server, b.reader
    s, _ = open_session(srv)
    assert req(srv, 5, P.ACK, {"seq": 4}, s)[:2] == (P.OK, {"ack": 4, "free": r.log.free_bytes})
    # the same request again (its answer was lost): the same answer, nothing done twice
    calls = []
    real = r.log.ack
    r.log.ack = lambda seq: calls.append(seq) or real(seq)
    assert req(srv, 5, P.ACK, {"seq": 4}, s)[0] == P.OK and calls == []
    # an older request id, or the same id with other content: refused
    assert req(srv, 4, P.ACK, {"seq": 9}, s)[0] == P.REPLAY
    assert req(srv, 5, P.ACK, {"seq": 9}, s)[0] == P.REPLAY
    assert r.log.ack_seq == 4
    # a new INFO is a new session: the old session's tags are worthless now
    old = s
    s, _ = open_session(srv, rid=6)
    assert req(srv, 7, P.ACK, {"seq": 9}, old)[0] == P.BAD_MAC
    assert req(srv, 7, P.ACK, {"seq": 9}, s)[0] == P.OK and r.log.ack_seq == 9
    # answers are tagged in the session, so the host knows they come from the reader
    reply = srv.handle(P.encode_message(P.REQUEST, [8, P.GET_LOGS, {"from": 1, "max": 1000}]))
    _, _, signed, tag = P.split_message(reply)
    assert s.check(signed, tag)  # an untagged (open) request, a tagged answer


def test_a_repeated_info_keeps_its_session_and_its_replay_state(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=20)
    srv = b.server
    hn = os.urandom(16)
    _, info1, _ = req(srv, 1, P.INFO, {"hn": hn})
    s = P.Session(KEY, RID, info1["nonce"], hn)
    assert info1["hn"] == hn
    assert req(srv, 2, P.ACK, {"seq": 3}, s)[0] == P.OK
    # the INFO again (a retry whose first copy did arrive): same reader nonce, same session...
    _, info2, _ = req(srv, 1, P.INFO, {"hn": hn})
    assert info2["nonce"] == info1["nonce"]
    # ...and the session's request ids are not reset, so its old commands cannot be replayed
    assert req(srv, 2, P.ACK, {"seq": 5}, s)[0] == P.REPLAY
    assert req(srv, 3, P.ACK, {"seq": 5}, s)[0] == P.OK and b.reader.log.ack_seq == 5


def test_a_reader_whose_log_cannot_be_opened_still_answers_info(tmp_path, opkey):
    from validator.app import UnavailableLog  # what the application serves in that case
    b = Bench(tmp_path, opkey)
    b.reader.log = UnavailableLog("trip log belongs to reader 9")
    st_, info, _ = req(b.server, 1, P.INFO, {"hn": os.urandom(16)})
    assert st_ == P.OK and info["log_state"] == "error" and info["alink"] is None
    assert b.sync().status == "ok" and b.server.last_fault is None


def test_ack_bounds_and_get_logs_paging(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=60)
    srv, r = b.server, b.reader
    s, info = open_session(srv)
    assert (info["first"], info["last"], info["ack"]) == (1, 60, 0)
    assert req(srv, 2, P.ACK, {"seq": 61}, s)[:2] == (P.BAD_ARG, {"last": 60})
    st_, res, _ = req(srv, 3, P.GET_LOGS, {"from": 1, "max": 600})
    assert st_ == P.OK and res[0] == 1 and 1 <= len(res[1]) and sum(map(len, res[1])) <= 600
    st_, res, _ = req(srv, 4, P.GET_LOGS, {"from": 1, "max": 100000})
    reply = srv.handle(P.encode_message(P.REQUEST, [4, P.GET_LOGS, {"from": 1, "max": 100000}]))
    assert len(reply) <= srv.max_payload
    assert tl.verify_chain(tl.genesis(RID), res[1], LOG_KEY, prev_seq=0)[1] == len(res[1])
    assert req(srv, 5, P.ACK, {"seq": 30}, s)[0] == P.OK
    st_, res, _ = req(srv, 6, P.GET_LOGS, {"from": 1, "max": 1000})
    assert res[0] == 31  # acknowledged records are gone; the answer says where it starts
    assert req(srv, 7, P.ACK, {"seq": 10}, s)[:2] == (P.OK, {"ack": 30, "free": r.log.free_bytes})
    st_, res, _ = req(srv, 8, P.GET_LOGS, {"from": 61, "max": 1000})
    assert (st_, res) == (P.OK, [61, [], False, 0])


def test_get_logs_streams_several_answers_for_one_request(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=200)
    link = b.link()
    link.hello()
    answers = link.get_logs(1, 1000, frames=5)
    assert len(answers) == 5 and link.stats["frames_out"] == 2  # INFO and one GET_LOGS
    seq = 1
    for first, recs in answers:
        assert first == seq and 0 < sum(map(len, recs)) <= 1000
        seq += len(recs)
    assert tl.verify_chain(tl.genesis(RID), [r for _, rs in answers for r in rs], LOG_KEY,
                           prev_seq=0)[1] == seq - 1
    # the stream ends early at the end of the log
    answers = link.get_logs(190, 4000, frames=16)
    assert answers[-1][0] + len(answers[-1][1]) == 201 and len(answers) < 16
    assert link.get_logs(201, frames=3) == [(201, [])]
    # a new request while a stream is under way ends the stream
    srv = b.server
    srv.handle(P.encode_message(P.REQUEST, [9000, P.GET_LOGS, {"from": 1, "max": 500, "n": 16}]))
    assert srv._stream is not None
    srv.uart.rx += framing.encode(P.encode_message(P.REQUEST, [9001, P.GET_LOGS,
                                                              {"from": 1, "max": 500}]))
    while srv.poll():
        pass
    assert srv._stream is None
    for n in (0, sync.MAX_STREAM + 1):
        assert req(srv, 9002, P.GET_LOGS, {"from": 1, "max": 500, "n": n})[0] == P.MALFORMED


def test_a_request_arriving_in_pieces_during_a_stream_is_answered(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=200)
    srv, u = b.server, b.server.uart
    u.rx += framing.encode(P.encode_message(P.REQUEST, [1, P.GET_LOGS,
                                                        {"from": 1, "max": 1000, "n": 16}]))
    while srv._out_n == 0:  # the request is handled, its first answer framed...
        srv.poll()
    while srv._out_n:       # ...and sent
        srv.poll()
    hn = os.urandom(16)
    info = framing.encode(P.encode_message(P.REQUEST, [2, P.INFO, {"hn": hn}]))
    u.rx += info[:20]       # half of a new request arrives
    srv.poll()
    srv.poll()              # nothing more yet: the stream must not frame its next answer now
    while srv._out_n:
        srv.poll()
    u.rx += info[20:]       # the rest of the request
    while srv.poll():
        pass
    answers = [P.decode_item(P.split_message(p)[1], 4096)
               for p in framing.FrameDecoder(1 << 16).feed(bytes(u.tx))]
    assert srv.decoder.bad == 0
    assert [a[0] for a in answers] == [1, 2]  # the stream's first answer, then the INFO's
    assert answers[1][1] == P.OK and answers[1][2]["hn"] == hn
    assert srv._stream is None


def test_push_refusals(tmp_path, opkey):
    b = Bench(tmp_path, opkey)
    link = b.link()
    link.hello()
    other = ecsign.new_key()
    with pytest.raises(synclink.Refused) as e:
        link.push("config", seal(other, fmt.CONFIG, 3))
    assert e.value.status == P.REFUSED and e.value.reason == fmt.BAD_SIGNATURE
    with pytest.raises(synclink.Refused) as e:
        link.push("config", seal(opkey, fmt.CONFIG, 3, key_id=2))
    assert e.value.reason == fmt.UNKNOWN_KEY
    with pytest.raises(synclink.Refused) as e:  # a key ring sent as configuration
        link.push("config", seal(opkey, fmt.KEYRING, 3))
    assert e.value.status == P.MISMATCH
    assert link.push("config", seal(opkey, fmt.CONFIG, 3)) == "installed"
    link.info["config"] = 0  # pretend the host did not know: the reader still refuses an old one
    with pytest.raises(synclink.Refused) as e:
        link.push("config", seal(opkey, fmt.CONFIG, 2))
    assert e.value.reason == fmt.OLD_VERSION
    assert b.reader.version("config") == 3 and b.reader.installs == [("config", 3)]
    assert sorted(os.listdir(b.reader.root)) == ["clock", "config.fvs", "log.img"] or \
        sorted(os.listdir(b.reader.root)) == ["config.fvs", "log.img"]


def test_a_push_older_than_the_installed_version_is_reported_not_applied(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=10)
    assert b.sync(pushes=[("config", seal(opkey, fmt.CONFIG, 5))]).status == "ok"
    b.reader.add_records(3)
    res = b.sync(pushes=[("config", seal(opkey, fmt.CONFIG, 3)),
                         ("keyring", seal(opkey, fmt.KEYRING, 2))], set_time=True)
    assert res.status == "not_applied"
    assert "config (the reader holds version 5)" in res.message and "keyring" not in res.message
    assert res.pushes == [("config", "newer_installed"), ("keyring", "installed")]
    # the rest of the sync was done all the same
    assert res.records_new == 3 and res.time_set == NOW and b.reader.version("config") == 5
    assert b.reader.installs == [("config", 5), ("keyring", 2)]


def test_pushes_report_their_progress_in_bytes(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=20)
    data = seal(opkey, fmt.CONFIG, 4, os.urandom(20000))
    seen = []
    res = b.sync(pushes=[("config", data)], progress=lambda **kw: seen.append(kw))
    assert res.status == "ok"
    start = seen.index({"total": len(data), "completed": 0, "unit": "bytes", "status": "push config"})
    sent = [kw["completed"] for kw in seen[start + 1:]]
    assert len(sent) >= 10 and sent == sorted(sent) and sent[-1] == len(data)
    assert {"total": 20, "completed": 0, "unit": "records", "status": "logs"} in seen[:start]


class SlowInstallPort(LoopbackPort):
    """A reader that installs a pushed file inside its answer to COMMIT, as the ESP32 does, and
    takes `seconds` (of the fake clock) to do it: its answers are held back until then."""

    def __init__(self, bench, seconds):
        super().__init__(bench.server, Link(), bench.clock)
        self.reader = bench.reader
        self.seconds = seconds
        self.busy_until = 0.0
        self.held = bytearray()

    def write(self, data):
        installs = len(self.reader.installs)
        before = len(self.rx)
        super().write(data)
        if len(self.reader.installs) > installs:
            self.busy_until = self.clock.t + self.seconds
        if self.clock.t < self.busy_until:
            self.held += self.rx[before:]
            del self.rx[before:]
        return len(data)

    def read(self, n):
        if self.held and self.clock.t >= self.busy_until:
            self.rx += self.held
            self.held = bytearray()
        return super().read(n)


def test_the_depot_waits_for_a_commit_in_proportion_to_the_file(tmp_path, opkey):
    b = Bench(tmp_path, opkey)
    data = seal(opkey, fmt.DENYLIST, 6, os.urandom(512 * 1024))
    install = 0.95 * synclink.COMMIT_S_PER_MIB * len(data) / 2 ** 20
    port = SlowInstallPort(b, install)
    link = synclink.SyncLink(port, b.keys.get, timeout=0.5, retries=3, clock=b.clock)
    # the install outlasts every try that waits only the usual time for an answer
    assert install > (link.retries + 1) * (link.timeout + link._wire_time(sync.DEFAULT_MAX_PAYLOAD))
    link.hello()
    resends = link.stats["resends"]
    assert link.push("denylist", data) == "installed"
    assert link.stats["resends"] == resends  # the first COMMIT was waited for
    assert b.reader.version("denylist") == 6


def test_put_checks_digest_size_and_order(tmp_path, opkey):
    b = Bench(tmp_path, opkey)
    srv, r = b.server, b.reader
    s, _ = open_session(srv)
    data = seal(opkey, fmt.KEYRING, 4)
    sha = hashlib.sha256(data).digest()
    assert req(srv, 2, P.PUT, {"kind": "keyring", "ver": 4, "size": sync.MAX_PUT + 1, "sha": sha},
               s)[0] == P.BAD_ARG
    assert req(srv, 3, P.PUT, {"kind": "keyring", "ver": 4, "size": len(data), "sha": sha},
               s)[:2] == (P.OK, {"have": 0})
    assert req(srv, 4, P.CHUNK, {"off": 10, "data": data[10:20]}, s)[:2] == (P.OFFSET, {"have": 0})
    assert req(srv, 5, P.COMMIT, {"kind": "keyring", "ver": 4, "sha": sha}, s)[:2] == \
        (P.INCOMPLETE, {"have": 0})
    assert req(srv, 6, P.CHUNK, {"off": 0, "data": data[:300]}, s)[:2] == (P.OK, {"have": 300})
    assert req(srv, 7, P.CHUNK, {"off": 100, "data": data[100:300]}, s)[:2] == (P.OK, {"have": 300})
    assert req(srv, 8, P.CHUNK, {"off": 200, "data": data[200:]}, s)[:2] == (P.OK, {"have": len(data)})
    assert req(srv, 9, P.CHUNK, {"off": len(data), "data": b"x"}, s)[0] == P.BAD_ARG
    # a new session (reconnect): the same PUT resumes where the reader is
    s, _ = open_session(srv, rid=10)
    assert req(srv, 11, P.PUT, {"kind": "keyring", "ver": 4, "size": len(data), "sha": sha},
               s)[:2] == (P.OK, {"have": len(data)})
    bad = hashlib.sha256(b"other").digest()
    assert req(srv, 12, P.COMMIT, {"kind": "keyring", "ver": 4, "sha": bad}, s)[0] == P.NO_UPLOAD
    assert req(srv, 13, P.COMMIT, {"kind": "keyring", "ver": 4, "sha": sha}, s)[:2] == \
        (P.OK, {"already": False})
    assert r.version("keyring") == 4
    # COMMIT again in a later session (its answer was lost): OK, already installed
    s, _ = open_session(srv, rid=14)
    assert req(srv, 15, P.COMMIT, {"kind": "keyring", "ver": 4, "sha": sha}, s)[:2] == \
        (P.OK, {"already": True})
    # a file whose bytes do not match the announced digest is dropped
    assert req(srv, 16, P.PUT, {"kind": "config", "ver": 1, "size": len(data), "sha": bad}, s)[0] == P.OK
    assert req(srv, 17, P.CHUNK, {"off": 0, "data": data}, s)[0] == P.OK
    assert req(srv, 18, P.COMMIT, {"kind": "config", "ver": 1, "sha": bad}, s)[0] == P.DIGEST
    assert r.version("config") == 0 and sync.STAGING_NAME not in os.listdir(r.root)


def test_time_cannot_go_back_beyond_the_bound_without_the_flag(tmp_path, opkey):
    b = Bench(tmp_path, opkey)
    srv, r = b.server, b.reader
    s, _ = open_session(srv)
    assert req(srv, 2, P.SET_TIME, {"t": NOW, "back": False}, s)[:2] == (P.OK, {"time": NOW})
    assert req(srv, 3, P.SET_TIME, {"t": NOW - 60, "back": False}, s)[0] == P.OK  # a correction
    st_, res, _ = req(srv, 4, P.SET_TIME, {"t": NOW - 86400, "back": False}, s)
    assert (st_, res) == (P.REFUSED, {"reason": "CLOCK_BACKWARDS"}) and r.clock.now() == NOW - 60
    assert req(srv, 5, P.SET_TIME, {"t": NOW - 86400, "back": True}, s)[0] == P.OK
    assert r.clock.now() == NOW - 86400
    assert req(srv, 6, P.SET_TIME, {"t": 12, "back": True}, s)[:2] == (P.REFUSED, {"reason": "BAD_TIME"})


def test_reboot_happens_after_the_answer_is_out(tmp_path, opkey):
    b = Bench(tmp_path, opkey)
    link = b.link()
    link.hello()
    assert b.reader.reboots == 0
    link.reboot()
    assert b.reader.reboots == 1 and b.server.rebooted


# -- chain, gaps, exactly once -----------------------------------------------------------------------

class TamperedLog:
    """Serves the real log's records but with record `bad` altered (CRC recomputed, chain not)."""

    def __init__(self, log, bad, key=LOG_KEY):
        self.log = log
        self.bad = bad
        self.key = key

    def __getattr__(self, name):
        return getattr(self.log, name)

    def read(self, from_seq, max_bytes):
        out = []
        for raw in self.log.read(from_seq, max_bytes):
            d = tl.decode(raw)
            if d["seq"] == self.bad:
                d["fare"] += 1000
                raw = tl.encode(d, d["seq"], d["reader_id"], d["prev_link"], self.key)
            out.append(raw)
        return out


def test_a_broken_chain_is_reported_and_never_acknowledged_past(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=120, log=lambda log: TamperedLog(log, 71))
    res = b.sync()
    assert res.status == "chain" and "broken at record 72" in res.message
    # 71 itself verifies against 70 (its prev_link is intact); 72 does not commit to the altered 71
    assert b.reader.log.ack_seq == 71 and b.db().seqs(RID) == list(range(1, 72))
    assert [i[1] for i in b.db().incidents()] == ["chain"]
    res = b.sync()  # nothing moves past the break, however often it is tried
    assert res.status == "chain" and b.reader.log.ack_seq == 71 and b.db().count(RID) == 71


def test_unkeyed_records_appended_to_a_keyed_log_are_a_broken_chain(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=5)
    assert b.sync().status == "ok" and b.reader.log.ack_seq == 5
    # Someone who can write the flash but has no sync secret appends unkeyed records (plain
    # SHA-256 links, which anyone can compute) that commit to the link after record 5: it is on
    # the flash, in the ack entry. Then the reader restarts and serves them as its own.
    log = b.reader.log
    prev = log.ack_link
    assert prev == b.db().reader_state(RID)[1]
    blk, off = log._seg0 + log._segs[-1][0], log._tail_off
    for seq in range(6, 9):
        raw = tl.encode(dict(gen(seq), fare=1), seq, RID, prev)  # no key: an unkeyed record
        b.dev.writeblocks(blk, raw, off)
        off += len(raw)
        prev = tl.link(raw)
    b.reader.log = tl.TripLog(b.dev, RID, key=LOG_KEY)
    assert b.reader.log.last_seq == 8
    for _ in range(2):  # however often it is tried
        res = b.sync()
        assert res.status == "chain" and "broken at record 6" in res.message
        assert b.reader.log.ack_seq == 5 and b.db().seqs(RID) == [1, 2, 3, 4, 5]
    assert [i[1] for i in b.db().incidents()] == ["chain", "chain"]


def test_a_gap_stops_the_sync_unless_the_operator_accepts_it(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=80)
    b.reader.log.ack(30)  # another depot (or a lost database) took 1..30
    res = b.sync()
    assert res.status == "chain" and "1..30" in res.message
    assert b.db().count(RID) == 0 and b.reader.log.ack_seq == 30
    res = b.sync(accept_gaps=True)
    assert res.status == "ok" and b.db().seqs(RID) == list(range(31, 81))
    assert b.reader.log.ack_seq == 80
    assert [i[1] for i in b.db().incidents()] == ["gap", "gap_accepted"]
    b.reader.add_records(5)
    assert b.sync().records_new == 5  # and the chain goes on from there


def seq_of(raw):
    return tl.decode(raw)["seq"]


def damage_record(b, seq):
    """Flip one byte in the middle of record `seq` on the reader's flash, then restart the reader's
    log on it (as after a reboot)."""
    bs = 4096
    b.dev.close()
    path = b.dir / "log.img"
    data = bytearray(path.read_bytes())
    for blk in range(tl.META_BLOCKS, len(data) // bs):
        off = blk * bs
        if data[off:off + 4] != tl.SEG_MAGIC:
            continue
        off += tl.SEG_HEADER
        while data[off] == tl.REC_MARK:
            n = (data[off + 2] << 8) | data[off + 3]
            if int.from_bytes(data[off + 4:off + 8], "big") == seq:
                data[off + n // 2] ^= 0x10
                path.write_bytes(bytes(data))
                b.dev = flashdev.FlashDev(len(data) // bs, path=str(path))
                b.reader.log = tl.TripLog(b.dev, RID, key=LOG_KEY)
                return
            off += n
    raise AssertionError("record %d not found" % seq)


def test_an_unreadable_record_is_a_gap_reported_and_never_acknowledged_past(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=60)
    damage_record(b, 3)
    log = b.reader.log
    # the log skips the damaged record
    after = seq_of(log.read(3, 10 ** 6)[0])
    assert log.last_seq == 60 and 3 < after < 60
    # the reader labels its answers from the records' own headers, and ends one at a jump
    st_, res, _ = req(b.server, 1, P.GET_LOGS, {"from": 1, "max": 100000})
    assert st_ == P.OK and res[0] == 1 and [seq_of(r) for r in res[1]] == [1, 2]
    st_, res, _ = req(b.server, 2, P.GET_LOGS, {"from": 3, "max": 100000})
    assert res[0] == after == seq_of(res[1][0])
    gap = "records 3..%d are missing" % (after - 1)
    for _ in range(2):  # however often it is tried without --accept-gaps
        res = b.sync()
        assert res.status == "chain" and gap in res.message and "cannot read" in res.message
        # the records before the gap are stored and acknowledged, nothing past it
        assert b.db().seqs(RID) == [1, 2] and log.ack_seq == 2
    assert [i[1:4] for i in b.db().incidents()] == [("gap", 3, after - 1)] * 2
    res = b.sync(accept_gaps=True)
    assert res.status == "ok", res.message
    assert b.db().seqs(RID) == [1, 2] + list(range(after, 61)) and log.ack_seq == 60
    assert b.db().incidents()[-1][1:4] == ("gap_accepted", 3, after - 1)
    b.reader.add_records(5)
    res = b.sync()  # the chain goes on from there
    assert res.status == "ok" and res.records_new == 5 and log.ack_seq == 65


def test_a_gap_accepted_on_a_fully_acknowledged_reader_does_not_jam_later_syncs(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=10)
    b.reader.log.ack(10)  # another depot (or a lost database) took everything
    assert b.sync().status == "chain"
    res = b.sync(accept_gaps=True)  # no record after the gap: the reader's ack link anchors it
    assert res.status == "ok", res.message
    assert b.db().reader_state(RID)[:2] == (10, b.reader.log.ack_link)
    assert b.sync().status == "ok"  # nothing new
    for night in range(2):
        b.reader.add_records(5)
        res = b.sync()
        assert res.status == "ok" and res.records_new == 5, res.message
    assert b.db().seqs(RID) == list(range(11, 21)) and b.reader.log.ack_seq == 20
    assert [i[1] for i in b.db().incidents()] == ["gap", "gap_accepted"]


def replace_board(b, records):
    """Another board (or the same one wiped) under the same reader id and secret: a new log."""
    b.dev.close()
    b.dev = flashdev.FlashDev(40, path=str(b.dir / ("new%d.img" % records)))
    b.reader.log = tl.TripLog(b.dev, RID, key=LOG_KEY)
    b.reader.add_records(records, lambda seq, rid: dict(gen(seq, rid), time=NOW + seq))  # new taps


@pytest.mark.parametrize("records", [5, 40])  # fewer than the depot holds, and more
def test_a_reader_replaced_under_the_same_id_needs_accept_reset(tmp_path, opkey, records):
    b = Bench(tmp_path, opkey, records=30)
    assert b.sync().status == "ok" and b.db().seqs(RID) == list(range(1, 31))
    replace_board(b, records)
    for _ in range(2):
        res = b.sync()
        assert res.status == "chain" and "--accept-reset" in res.message
        # nothing acknowledged: its records are not the depot's records 1..30
        assert b.reader.log.ack_seq == 0 and b.db().seqs(RID) == list(range(1, 31))
    assert [i[1] for i in b.db().incidents()] == ["reset", "reset"]
    res = b.sync(accept_reset=True)
    assert res.status == "ok", res.message
    assert b.db().seqs(RID) == list(range(1, records + 1)) and b.reader.log.ack_seq == records
    assert b.db().incidents()[-1][1] == "reset_accepted"
    db = b.db()
    # the old log's records are kept, and reports and exports still count them
    assert db.conn.execute("SELECT COUNT(*) FROM trips_replaced").fetchone()[0] == 30
    assert sum(r[3] for r in db.report(reader_id=RID)) == 30 + records
    assert len(list(db.export(reader_id=RID))) == 30 + records
    b.reader.add_records(3)
    res = b.sync()
    assert res.status == "ok" and res.records_new == 3


def test_lost_ack_is_sent_again_without_fetching_twice(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=50)
    real = b.reader.log.ack
    b.reader.log.ack = lambda seq: None  # the ACKs get lost (or the reader drops them)
    assert b.sync().status == "ok"
    assert b.reader.log.ack_seq == 0 and b.db().count(RID) == 50
    b.reader.log.ack = real
    link = b.link()
    res = b.sync(link=link)
    assert res.status == "ok" and res.records_new == 0 and b.reader.log.ack_seq == 50
    assert link.stats["bytes_in"] < 1000  # INFO and ACK answers only, no records again


# -- hostile input -----------------------------------------------------------------------------------

cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64 + 5) | st.binary(max_size=40)
    | st.text(max_size=10) | st.sampled_from(["hn", "from", "max", "seq", "kind", "ver", "size",
                                               "sha", "off", "data", "t", "back", "config"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["hn", "from", "max", "seq", "kind", "ver", "size", "sha", "off", "data",
                         "t", "back", "x"]) | st.integers(0, 3), children, max_size=4),
    max_leaves=12)

hostile = st.one_of(
    st.binary(max_size=200),  # anything at all
    st.builds(lambda t, c: bytes([t]) + c, st.sampled_from([0x10, 0x11, 0x20, 0x21, 0x00, 0xFF]),
              st.binary(max_size=120)),  # valid type, garbage CBOR
    st.builds(lambda t, v, tag: bytes([t]) + cbor2.dumps(v) + tag,
              st.sampled_from([0x10, 0x11]),
              st.lists(cbor_values, min_size=3, max_size=3) | cbor_values,
              st.binary(max_size=40)),  # CBOR of any shape, any tag
    st.builds(lambda rid, cmd, args, tag: bytes([0x11]) + cbor2.dumps([rid, cmd, args]) + tag,
              st.integers(0, 2**33), st.integers(0, 12),
              st.dictionaries(st.sampled_from(["seq", "kind", "ver", "size", "sha", "off", "data",
                                               "t", "back", "hn", "from", "max"]),
                              cbor_values, max_size=4),
              st.binary(min_size=32, max_size=32)),  # well-formed commands with bad MACs
)


@pytest.fixture(scope="module")
def hostile_bench(tmp_path_factory, opkey):
    b = Bench(tmp_path_factory.mktemp("hostile"), opkey, records=30)
    s, _ = open_session(b.server)  # a session is open: authenticated paths are reachable
    return b, s


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(hostile, min_size=1, max_size=4))
def test_hostile_messages_never_crash_nor_change_the_reader(hostile_bench, msgs):
    b, s = hostile_bench
    srv = b.server
    before = b.reader.state()
    for m in msgs:
        if m[:1] == bytes([0x10]) and len(m) > 1:
            # an INFO would open a new session (allowed, changes no reader state); keep ours
            try:
                v = cbor2.loads(m[1:])
                if isinstance(v, list) and len(v) > 1 and v[1] == P.INFO:
                    continue
            except Exception:  # noqa: BLE001
                pass
        reply = srv.handle(m)
        if reply is not None:
            parts = P.split_message(reply)
            assert parts is not None and parts[0] == P.REPLY
            item = P.decode_item(parts[1])
            assert item is not None and item[1] != P.OK or m[0] & 0x7F == P.REQUEST
        # through the framing as well: noise and frames mixed
        srv.decoder.feed(m)
    assert b.reader.state() == before
    assert srv.last_fault is None and not srv._reboot
    # the reader still serves the depot afterwards
    assert req(srv, 2**32 - 1, P.GET_LOGS, {"from": 1, "max": 300})[0] == P.OK


def test_the_upload_budget_and_bounds_are_enforced(tmp_path, opkey):
    b = Bench(tmp_path, opkey)
    srv = b.server
    s, _ = open_session(srv)
    big = P.encode_message(P.REQUEST, [2, P.CHUNK, {"off": 0, "data": bytes(10000)}], s)
    dec = framing.FrameDecoder(srv.max_payload)
    assert dec.feed(framing.encode(big)) == [] and dec.bad == 1  # never even reassembled
    for rid, args in enumerate(({"seq": -1}, {"seq": 2**32}, {"seq": True}, {"seq": 1, "x": 1}, {},
                                {"seq": "1"}), 3):
        assert req(srv, rid, P.ACK, args, s)[0] == P.MALFORMED
    assert req(srv, 20, 99, {}, s)[0] == P.UNKNOWN_CMD
    assert req(srv, 21, P.INFO, {"hn": b"short"})[0] == P.MALFORMED
    assert b.reader.log.ack_seq == 0


# -- report and export ---------------------------------------------------------------------------------

def test_report_and_export_per_day_line_and_reader(tmp_path, opkey, capsys):
    b = Bench(tmp_path, opkey, records=90)
    assert b.sync().status == "ok"
    b2 = Bench(tmp_path, opkey, records=30, reader_id=RID + 1, key=bytes(range(1, 33)))
    assert b2.sync().status == "ok"
    assert cli.main(["report", "--db", b.db_path]) == 0
    out = capsys.readouterr().out
    assert "7001" in out and "7002" in out and "2026-01-01" in out
    rows = b.db().report(line=10)
    assert [(r[1], r[2], r[3]) for r in rows] == [(10, RID, 30), (10, RID + 1, 10)]
    assert sum(r[4] for r in rows) + sum(r[5] for r in rows) == 40
    out_csv = tmp_path / "x.csv"
    assert cli.main(["export", "--db", b.db_path, "--format", "csv", "--reader", str(RID),
                     "--line", "11", "--out", str(out_csv)]) == 0
    assert "30 trips exported" in capsys.readouterr().out
    got = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert len(got) == 30 and {g["line"] for g in got} == {"11"} and {g["reader_id"] for g in got} == {str(RID)}
    assert cli.main(["export", "--db", b.db_path, "--format", "json", "--day", "2026-01-01"]) == 0
    data = json.loads(capsys.readouterr().out)["trips"]
    assert len(data) == 120 and sum(d["fare_minor_units"] for d in data) == sum(
        gen(s)["fare"] for s in range(1, 91)) + sum(gen(s, RID + 1)["fare"] for s in range(1, 31))
    assert cli.main(["export", "--db", b.db_path, "--day", "2025-01-01", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["trips"] == []


def test_keys_from_a_directory_or_a_json_file(tmp_path):
    d = tmp_path / "keys"
    d.mkdir()
    (d / "7001.key").write_text(KEY.hex() + "\n")
    (d / "7002.key").write_bytes(bytes(range(1, 33)))
    assert readersync.load_keys(d) == {7001: KEY, 7002: bytes(range(1, 33))}
    j = tmp_path / "keys.json"
    j.write_text(json.dumps({"7001": KEY.hex()}))
    assert readersync.load_keys(j) == {7001: KEY}
    j.write_text(json.dumps({"7001": "abcd"}))
    with pytest.raises(UserError, match="a sync secret is 32 bytes"):
        readersync.load_keys(j)


def test_a_reader_that_reboots_mid_sync_is_picked_up_again(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=300)
    srv = b.server
    real = srv.handle
    calls = [0]

    def handle(payload):
        calls[0] += 1
        if calls[0] == 6:  # the reader restarts: its session (RAM) is gone, its log is not
            srv._session = None
        return real(payload)
    srv.handle = handle
    opts = types.SimpleNamespace(pushes=[], set_time=True, allow_time_backwards=False,
                                 reboot=False, accept_gaps=False, timeout=0.3, retries=2,
                                 now=lambda: NOW)
    clock = b.clock
    res = readersync.sync_port("loop", b.keys, b.db_path, opts,
                          opener=lambda path, baud: LoopbackPort(srv, Link(), clock))
    assert res.status == "ok", res.message
    assert b.db().seqs(RID) == list(range(1, 301)) and b.reader.log.ack_seq == 300


def test_the_largest_trip_record_fits_the_default_frame(tmp_path, opkey):
    b = Bench(tmp_path, opkey, records=2)
    big = dict(gen(3), raw=bytes(range(256)) * (tl.MAX_RAW // 256) + b"x" * (tl.MAX_RAW % 256))
    b.reader.log.append(big)
    b.reader.add_records(2)
    raws = [r for r in b.reader.log.read(1, 10 ** 6)]
    assert max(map(len, raws)) == tl.MAX_RECORD
    assert sync.DEFAULT_MAX_PAYLOAD >= tl.MAX_RECORD + 100
    # one answer carries it whole, even when asked for fewer bytes than that
    st_, res, _ = req(b.server, 1, P.GET_LOGS, {"from": 3, "max": 10})
    assert st_ == P.OK and res[0] == 3 and res[1] == [raws[2]]
    res = b.sync()
    assert res.status == "ok" and b.db().seqs(RID) == [1, 2, 3, 4, 5]


def test_the_depot_says_when_a_reader_runs_without_a_file_it_was_given(tmp_path, opkey):
    """INFO's file_errors (a key ring or configuration the reader could not load) reaches the
    depot's summary as a warning naming the reader, until a good file is pushed."""
    b = Bench(tmp_path, opkey, records=3)
    info = b.reader.info
    b.reader.info = lambda: dict(info(), file_errors={"config": "BAD_SIGNATURE"})
    res = b.sync()
    assert res.status == "ok" and res.warnings == ["its config does not load (BAD_SIGNATURE)"]
    res.reader_id = RID
    notes = readersync.summary_notes([res])
    assert notes == [("warning", "reader %d on loop: its config does not load (BAD_SIGNATURE)"
                      % RID)]
    res = b.sync(pushes=[("config", seal(opkey, fmt.CONFIG, 9))])
    assert res.pushes == [("config", "installed")] and res.warnings == []
