"""The trip record format and chain on CPython (what the depot runs), hypothesis-driven; records
written by the firmware on MicroPython decoded here; and a model-based run of the log itself on
CPython with random power cuts (the MicroPython sweep in tests/mp/mpt_triplog_sweep.py is the
reference; this explores random operation orders)."""
import hashlib
import hmac
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mpharness import ROOT, run_mp
from validator import hmac256
from validator import triplog as tl

sys.path.insert(0, str(ROOT / "boards" / "unix_sim"))
import flashdev  # noqa: E402  (the simulated flash also runs on CPython)

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
records_st = st.fixed_dictionaries({
    "time": U32, "decision": st.integers(0, 255), "reason": st.integers(0, 255),
    "kind": st.sampled_from(["", "qr", "nfc"]),
    "cred_id": st.one_of(st.just(b""), st.binary(min_size=16, max_size=16)),
    "account": U64, "counter": U64, "fare": U32, "line": U32, "stop": U32,
    "raw": st.binary(max_size=tl.MAX_RAW),
})


@settings(max_examples=150, deadline=None)
@given(records_st, U32, U32, st.binary(min_size=16, max_size=16), st.none() | st.binary(max_size=80))
def test_random_records_round_trip(rec, seq, reader, prev, key):
    raw = tl.encode(rec, seq, reader, prev, key=key)
    assert len(raw) == tl.REC_FIXED + len(rec["cred_id"]) + len(rec["raw"]) + tl.CRC_SIZE <= tl.MAX_RECORD
    d = tl.decode(raw, key)
    assert {k: d[k] for k in rec} == rec
    assert (d["seq"], d["reader_id"], d["prev_link"], d["keyed"], d["version"]) == (
        seq, reader, prev, key is not None, tl.VERSION)
    body = raw[:-4]
    want = (hmac.new(key, body, hashlib.sha256) if key is not None else hashlib.sha256(body)).digest()[:16]
    assert d["link"] == tl.link(raw, key) == tl.chain_ok(prev, raw, key) == want


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_garbage_only_ever_gives_record_error(data):
    try:
        tl.decode(data)
    except tl.RecordError:
        pass
    assert tl.chain_ok(bytes(16), data) is None or tl.decode(data)  # None unless it really is a record
    with pytest.raises(tl.ChainError):
        tl.verify_chain(bytes(16), [data])


@settings(max_examples=100, deadline=None)
@given(records_st, st.data())
def test_corrupted_records_are_refused(rec, data):
    raw = bytearray(tl.encode(rec, 5, 9, bytes(16)))
    n = data.draw(st.integers(1, 8))
    for _ in range(n):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for bad in (bytes(raw), bytes(raw[:cut]) if cut < len(raw) else b"\xff" + bytes(raw)):
        if bad != tl.encode(rec, 5, 9, bytes(16)):
            with pytest.raises(tl.RecordError):
                tl.decode(bad)


def test_every_single_bit_flip_is_detected():
    raw = tl.encode({"time": 1, "decision": 1, "reason": 0, "kind": "qr", "cred_id": b"C" * 16,
                     "account": 7, "counter": 9, "fare": 250, "line": 3, "stop": 4, "raw": b"ride" * 80},
                    12, 34, bytes(range(16)))
    for i in range(len(raw)):
        for bit in range(8):
            bad = bytearray(raw)
            bad[i] ^= 1 << bit
            with pytest.raises(tl.RecordError):
                tl.decode(bytes(bad))


def test_out_of_range_fields_are_value_errors():
    good = {"time": 0, "decision": 0, "reason": 0}
    for key, value in [("time", -1), ("time", 2**32), ("account", 2**64), ("counter", -5),
                       ("kind", "QR"), ("cred_id", b"x" * 15), ("raw", b"x" * (tl.MAX_RAW + 1)),
                       ("stop", 1.5), ("raw", "text")]:
        with pytest.raises(tl.RecordError):
            tl.encode(dict(good, **{key: value}), 1, 1, bytes(16))
    with pytest.raises(ValueError):
        tl.encode(good, 2**32, 1, bytes(16))
    with pytest.raises(ValueError):
        tl.encode(good, 1, 1, bytes(15))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=300))
def test_hmac_matches_the_standard_library(key, msg):
    assert hmac256.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_hmac_rfc4231_case_2():
    assert hmac256.hmac_sha256(b"Jefe", b"what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


MP_WRITE = """
import sys, flashdev
from validator import triplog as tl
dev = flashdev.FlashDev(8)
key = bytes.fromhex(sys.argv[1]) if sys.argv[1] else None
log = tl.TripLog(dev, 31337, key=key)
for s in range(1, 41):
    log.append({"time": 1760000000 + s, "decision": s % 2, "reason": 0 if s % 2 else 24,
                "kind": ("qr", "nfc")[s % 2], "cred_id": bytes([s]) * 16, "account": 2**40 + s,
                "counter": s, "fare": 150 * (s % 2), "line": 8, "stop": s % 5,
                "raw": bytes([s]) * (s * 9 % 400)})
log.ack(10)
for r in log.read(0, 1 << 20):
    print(r.hex())
print("ACK", log._ack_link.hex())
dev.close()
"""


@pytest.mark.parametrize("key", [None, b"k" * 32])
def test_records_from_micropython_decode_and_chain_on_cpython(key):
    out = run_mp(MP_WRITE, args=[key.hex() if key else ""]).split()
    recs = [bytes.fromhex(h) for h in out[:-2]]
    assert out[-2] == "ACK" and len(recs) == 30
    # the depot recomputes the chain from genesis for records it already holds
    prev = tl.genesis(31337)
    for s in range(1, 11):
        rec = {"time": 1760000000 + s, "decision": s % 2, "reason": 0 if s % 2 else 24,
               "kind": ("qr", "nfc")[s % 2], "cred_id": bytes([s]) * 16, "account": 2**40 + s,
               "counter": s, "fare": 150 * (s % 2), "line": 8, "stop": s % 5,
               "raw": bytes([s]) * (s * 9 % 400)}
        prev = tl.link(tl.encode(rec, s, 31337, prev, key=key), key)
    assert prev.hex() == out[-1]
    link, seq = tl.verify_chain(prev, recs, key=key, prev_seq=10)
    assert seq == 40
    d = tl.decode(recs[-1], key)
    assert (d["reader_id"], d["kind"], d["account"], d["raw"]) == (31337, "qr", 2**40 + 40, bytes([40]) * 360)
    assert d["link"] == link


class LogMachine(RuleBasedStateMachine):
    """Random appends, acks, housekeeping, clean reboots and power cuts (torn at random lengths or
    not) on a 6-block region; after every reboot the log must hold exactly the records whose append
    returned and that are not acknowledged, byte for byte, chained from the link that the ack
    watermark stored."""

    KEY = None

    def __init__(self):
        super().__init__()
        self.dev = flashdev.FlashDev(6)
        self.log = tl.TripLog(self.dev, 77, key=self.KEY)
        self.stored = {}  # seq -> bytes of every record whose append returned
        self.acked = 0
        self.ack_in_flight = 0

    def teardown(self):
        self.dev.close()

    def _rec(self, n):
        return {"time": n, "decision": 1, "reason": 0, "kind": "qr", "raw": bytes([n % 256]) * n}

    def _link_after(self, seq):
        """The chain value after record seq, from the records the model knows."""
        return tl.genesis(77) if seq == 0 else tl.link(self.stored[seq], self.KEY)

    @rule(n=st.integers(0, tl.MAX_RAW))
    def append(self, n):
        try:
            seq = self.log.append(self._rec(n))
        except tl.LogFull:
            assert self.log.free_bytes < tl.REC_FIXED + n + tl.CRC_SIZE  # it really does not fit
            return
        except OSError:
            self._reboot()
            return
        assert seq == self.log.last_seq and seq > max(self.stored, default=0) and seq > self.acked
        self.stored[seq] = self.log.read(seq, 1)[0]
        assert tl.decode(self.stored[seq])["prev_link"] == self._link_after(seq - 1)

    @precondition(lambda self: self.log.last_seq > self.log.ack_seq)
    @rule(frac=st.floats(0, 1))
    def ack(self, frac):
        upto = self.log.ack_seq + max(1, int(frac * (self.log.last_seq - self.log.ack_seq)))
        self.ack_in_flight = upto
        try:
            self.log.ack(upto)
        except OSError:
            self._reboot()
            return
        self.acked = upto

    @rule(max_erases=st.integers(1, 3))
    def housekeeping(self, max_erases):
        erases = self.dev.erases
        try:
            left = self.log.housekeeping(max_erases)
        except OSError:
            self._reboot()
            return
        assert self.dev.erases - erases <= max_erases and left >= 0

    @rule(after=st.integers(0, 3), torn=st.booleans(), torn_bytes=st.sampled_from([None, 1, 4, -4, -1]))
    def power_cut_soon(self, after, torn, torn_bytes):
        self.dev.cut_after = self.dev.ops + after
        self.dev.torn = torn
        self.dev.torn_bytes = torn_bytes

    @rule()
    def reboot(self):
        self._reboot()

    def _reboot(self):
        self.dev = self.dev.revive()
        self.log = tl.TripLog(self.dev, 77, key=self.KEY)
        assert self.acked <= self.log.ack_seq <= max(self.acked, self.ack_in_flight)
        self.acked = self.log.ack_seq
        self.ack_in_flight = self.acked
        assert self.log.last_seq >= max(self.stored, default=0)
        got = []
        frm = 0
        while True:
            page = self.log.read(frm, 3000)
            if not page:
                break
            got += page
            frm = tl.decode(page[-1])["seq"] + 1
        seqs = [tl.decode(r)["seq"] for r in got]
        assert seqs == list(range(self.acked + 1, self.log.last_seq + 1))
        for s, r in zip(seqs, got):
            if s in self.stored:
                assert self.stored[s] == r
            self.stored[s] = r  # present after a cut although its append did not return: now it counts
        # the chain runs on from what the watermark stored, through every record left
        assert self.log._ack_link == self._link_after(self.acked)
        tl.verify_chain(self._link_after(self.acked), got, self.KEY, prev_seq=self.acked)

    @invariant()
    def state_is_consistent(self):
        assert 0 <= self.log.free_bytes <= self.log.capacity
        assert self.log.state in ("ok", "nearly_full", "full")
        assert self.log.ack_seq <= self.log.last_seq


class KeyedLogMachine(LogMachine):
    """The same with the reader's keyed chain (HMAC links), as the app opens its log."""

    KEY = hmac256.hmac_sha256(b"sync secret of reader 77", b"triplog")


MACHINE_SETTINGS = settings(max_examples=60, stateful_step_count=50, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])
TestLogMachine = LogMachine.TestCase
TestLogMachine.settings = MACHINE_SETTINGS
TestKeyedLogMachine = KeyedLogMachine.TestCase
TestKeyedLogMachine.settings = MACHINE_SETTINGS
