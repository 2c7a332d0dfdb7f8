"""Drivers on CPython: PN532 frames (known vectors, parser fuzzing, the emulator's independent
codec), the PN532 driver against the emulator core in loopback (every fault, random fault
sequences), the QR scanner's line assembly and GM65 commands, the feedback patterns.
The same drivers run on MicroPython in tests/mp/mpt_drivers.py and over ptys in
tests/sim/test_drivers_pty.py."""
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from drivers import feedback, pn532, qrscanner
from drivers.pn532 import EV_ACK, EV_BAD, EV_FRAME, EV_NACK, FrameParser, NfcError
from host_tools.sim import pn532_emu, qr_emu
from host_tools.sim.pn532_emu import DemoCard, PN532Emulator
from validator import reasons

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mp"))
from drivers_fakes import Clock, EndlessUart  # noqa: E402  (the MicroPython tests' fakes)

SETTINGS = settings(max_examples=150, deadline=None)


def events(data, chunk=None, parser=None):
    p = parser or FrameParser()
    out = []
    data = bytes(data)
    step = chunk or max(1, len(data))
    for i in range(0, len(data), step):
        piece = data[i:i + step]
        while piece:
            n = p.feed(piece)
            piece = piece[n:]
            while True:
                ev = p.next()
                if ev is None:
                    break
                out.append(ev)
    while True:
        ev = p.next()
        if ev is None:
            break
        out.append(ev)
    return out


# --- frames ---

def test_known_frames():
    # GetFirmwareVersion as every PN532 host sends it; LCS, DCS and postamble by the manual
    assert pn532.encode_command(0x02) == bytes.fromhex("0000ff02fed4022a00")
    assert pn532.encode_command(0x4A, b"\x01\x00") == bytes.fromhex("0000ff04fcd44a0100e100")
    assert pn532.ACK == bytes.fromhex("0000ff00ff00")
    assert pn532.NACK == bytes.fromhex("0000ffff0000")
    assert events(pn532.ACK) == [(EV_ACK, None)]
    assert events(pn532.NACK) == [(EV_NACK, None)]
    assert events(pn532.ERROR_FRAME) == [(EV_FRAME, b"\x7f")]
    # a response seen on the wire: InDataExchange status 00
    assert events(bytes.fromhex("0000ff03fdd5410 0ea00".replace(" ", ""))) == [
        (EV_FRAME, b"\xd5\x41\x00")]


def test_extended_frame_layout():
    body = bytes([0xD4, 0x40, 0x01]) + bytes(range(256))
    f = pn532.encode_frame(body)
    n = len(body)
    assert f[:5] == b"\x00\x00\xff\xff\xff" and f[5] == n >> 8 and f[6] == n & 0xFF
    assert (f[5] + f[6] + f[7]) % 256 == 0
    assert events(f) == [(EV_FRAME, body)]
    with pytest.raises(ValueError):
        pn532.encode_frame(bytes(pn532.MAX_LEN + 1))
    with pytest.raises(ValueError):
        pn532.encode_frame(b"")


def test_parser_resyncs_after_bad_checksums():
    good = pn532.encode_frame(b"\xd5\x03\x32\x01\x06\x07")
    bad_dcs = good[:-2] + bytes([(good[-2] + 1) % 256, 0])
    bad_lcs = good[:4] + bytes([(good[4] + 1) % 256]) + good[5:]
    evs = events(b"\x55\x13" + good + bad_dcs + good + bad_lcs + good)
    body = good[5:-2]
    assert evs == [(EV_FRAME, body), (EV_BAD, "dcs"), (EV_FRAME, body), (EV_BAD, "lcs"),
                   (EV_FRAME, body)]


def test_oversized_length_is_refused_without_waiting():
    p = FrameParser()
    # an extended header announcing 2000 bytes: refused at once, the next frame still parses
    hdr = bytes([0, 0, 0xFF, 0xFF, 0xFF, 0x07, 0xD0, (0x100 - (0x07 + 0xD0)) % 256])
    good = pn532.encode_frame(b"\xd5\x15")
    assert events(hdr + good, parser=p) == [(EV_BAD, "length"), (EV_FRAME, b"\xd5\x15")]


junk_no_ff = st.binary(max_size=40).map(lambda b: b.replace(b"\xff", b"\x01"))


@SETTINGS
@given(body=st.binary(min_size=1, max_size=pn532.MAX_LEN), junk=junk_no_ff,
       chunk=st.integers(1, 70))
def test_round_trip_through_junk_and_chunks(body, junk, chunk):
    evs = events(junk + pn532.encode_frame(body) + junk, chunk=chunk)
    assert evs == [(EV_FRAME, body)]


@SETTINGS
@given(data=st.binary(max_size=1200), chunk=st.integers(1, 100))
def test_random_bytes_give_only_events(data, chunk):
    p = FrameParser()
    for ev in events(data, chunk=chunk, parser=p):
        assert ev[0] in (EV_ACK, EV_NACK, EV_FRAME, EV_BAD)
        if ev[0] == EV_FRAME:
            assert 1 <= len(ev[1]) <= pn532.MAX_LEN
    assert len(p) <= p.cap


@SETTINGS
@given(junk=st.binary(max_size=300), chunk=st.integers(1, 100))
def test_parser_always_resyncs(junk, chunk):
    # whatever came before (even a false header that swallows bytes), good frames get through
    good = pn532.encode_frame(b"\xd5\x41\x00\x90\x00")
    evs = events(junk + good * 40, chunk=chunk)
    assert evs.count((EV_FRAME, b"\xd5\x41\x00\x90\x00")) >= 10


@SETTINGS
@given(body=st.binary(min_size=1, max_size=pn532.MAX_LEN), ext=st.booleans())
def test_emulator_codec_agrees_with_firmware(body, ext):
    # two independent implementations of the frame format must agree both ways
    assert events(pn532_emu.frame(body, extended=ext)) == [(EV_FRAME, body)]
    if len(body) <= 255:
        assert pn532_emu.frame(body) == pn532.encode_frame(body)
    buf = bytearray(b"\x13" + pn532.encode_frame(body) + pn532.ACK)
    assert list(pn532_emu.parse_frames(buf)) == [("frame", body), ("ack", None)]


def test_target_parsing():
    d = bytes.fromhex("01 01 0004 20 04 08a1b2c3 0578807002".replace(" ", ""))
    t = pn532.parse_list_passive_106a(d)
    assert (t.tg, t.sens_res, t.sel_res, t.uid, t.ats) == (
        1, b"\x00\x04", 0x20, bytes.fromhex("08a1b2c3"), bytes.fromhex("0578807002"))
    assert t.iso14443_4
    assert pn532.parse_list_passive_106a(b"\x00") is None
    mifare = pn532.parse_list_passive_106a(bytes.fromhex("01010044080704112233445566"))
    assert mifare.uid == bytes.fromhex("04112233445566") and mifare.ats == b""
    assert not mifare.iso14443_4
    for bad in (b"", b"\x01", bytes.fromhex("0101000420050102030405"),
                bytes.fromhex("010100042004010203040a78")):
        with pytest.raises(NfcError):
            pn532.parse_list_passive_106a(bad)


@SETTINGS
@given(st.binary(max_size=40))
def test_target_parsing_random(data):
    try:
        t = pn532.parse_list_passive_106a(data)
    except NfcError as e:
        assert e.kind == pn532.PROTOCOL
    else:
        assert t is None or len(t.uid) in (4, 7, 10)


# --- the driver against the emulator core, in loopback ---

def make_reader(card=None, **kw):
    emu = PN532Emulator(card if card is not None else DemoCard(), max_chunk=kw.pop("chunk", 262))
    clock = Clock()
    r = pn532.PN532(emu.loopback(), clock_ms=clock, idle=clock.idle, **kw)
    return emu, r, clock


SELECT = bytes.fromhex("00a4040006f0464152455631 00".replace(" ", ""))
APDU = bytes.fromhex("80b0000010")


def test_begin_wakes_the_chip_and_checks_it():
    emu, r, _ = make_reader()
    assert emu.asleep
    assert r.begin() == (0x32, 0x01, 0x06, 0x07)
    assert emu.wakeups == 1 and not emu.asleep
    assert emu.commands == [0x14, 0x02, 0x12, 0x32]
    assert r.resends == 0
    assert emu.flags == pn532_emu.F_AUTO_RATS                  # SetParameters: automatic RATS
    assert emu.max_retries[2] == r.passive_retries


def test_begin_sets_the_parameters_the_driver_relies_on():
    # a chip that came up (or another host left it) without automatic RATS: begin() sets it
    emu, r, _ = make_reader()
    emu.flags = 0
    r.begin()
    t = r.poll()
    assert t.ats == pn532_emu.DEFAULT_ATS
    assert r.exchange(APDU) == bytes(reversed(APDU)) + b"\x90\x00"
    # what begin() prevents: without automatic RATS the phone is never put into ISO 14443-4,
    # no ATS comes with the target and the APDU, sent raw, is not answered (status 0x01)
    r.command(pn532.CMD_SET_PARAMETERS, b"\x00")
    t = r.poll()
    assert t.iso14443_4 and t.ats == b""
    with pytest.raises(NfcError) as e:
        r.exchange(APDU)
    assert e.value.card_gone and e.value.status == 0x01
    r.begin()
    assert r.poll().ats and r.exchange(SELECT) == b"\x90\x00"


def test_tap_exchanges_apdus():
    emu, r, _ = make_reader()
    r.begin()
    t = r.poll()
    assert t.uid == DemoCard.uid and t.iso14443_4
    assert r.exchange(SELECT) == b"\x90\x00"
    assert r.exchange(APDU) == bytes(reversed(APDU)) + b"\x90\x00"
    assert emu.apdus == [SELECT, APDU]


def test_no_card():
    emu, r, _ = make_reader()
    r.begin()
    emu.remove()
    assert r.poll() is None
    with pytest.raises(NfcError) as e:
        r.exchange(APDU)
    assert e.value.kind == pn532.NO_TARGET


def test_chained_response_and_limit():
    class Big:
        def apdu(self, cmd):
            return bytes(range(256)) * 2 + b"\x90\x00"
    emu, r, _ = make_reader(Big(), chunk=100)
    r.begin()
    r.poll()
    assert r.exchange(APDU) == bytes(range(256)) * 2 + b"\x90\x00"
    assert emu.apdus == [APDU]                         # the continuation fetches carry no APDU
    r.max_response = 300
    r.poll()
    with pytest.raises(NfcError) as e:
        r.exchange(APDU)
    assert e.value.kind == pn532.PROTOCOL


def test_long_apdu_uses_an_extended_frame():
    emu, r, _ = make_reader()
    r.begin()
    r.poll()
    apdu = b"\x80\x01\x00\x00" + bytes(250)
    assert r.exchange(apdu) == bytes(reversed(apdu)) + b"\x90\x00"
    with pytest.raises(NfcError):
        r.exchange(bytes(pn532.MAX_APDU + 1))


@pytest.mark.parametrize("fault", ["garbage", "bad_checksum", "bad_lcs", "nack", "drop", "split",
                                   "extended", "delay"])
def test_recovered_faults(fault):
    emu, r, _ = make_reader()
    r.begin()
    r.poll()
    emu.inject(fault, cmd=0x40)
    assert r.exchange(APDU) == bytes(reversed(APDU)) + b"\x90\x00"
    if fault in ("bad_checksum", "bad_lcs"):
        assert r.nacks_sent == 1 and emu.nacks_received == 1
    if fault in ("nack", "drop"):
        assert r.resends == 1
    assert r.exchange(SELECT) == b"\x90\x00"            # and it keeps working


@pytest.mark.parametrize("fault,kind", [("silent", pn532.TIMEOUT),
                                        ("error_frame", pn532.PROTOCOL),
                                        ("remove_card", pn532.CARD)])
def test_failing_exchange_then_next_tap(fault, kind):
    emu, r, clock = make_reader()
    r.begin()
    r.poll()
    emu.inject(fault, cmd=0x40)
    t0 = clock.t
    with pytest.raises(NfcError) as e:
        r.exchange(APDU)
    assert e.value.kind == kind
    assert r.target is None
    if fault == "silent":
        assert clock.t - t0 >= r.response_timeout_ms and emu.acks_received == 1   # aborted
    if fault == "remove_card":
        assert e.value.card_gone and e.value.status == 0x01
        assert r.poll() is None                        # the phone is away for one poll
    assert r.poll() is not None
    assert r.exchange(APDU) == bytes(reversed(APDU)) + b"\x90\x00"


def test_unanswered_commands_exhaust_the_resends():
    emu, r, clock = make_reader()
    r.begin()
    r.poll()
    emu.inject("drop", cmd=0x40, times=r.retries + 1)
    with pytest.raises(NfcError) as e:
        r.exchange(APDU)
    assert e.value.kind == pn532.NO_ACK
    assert emu.commands.count(0x40) == r.retries + 1
    assert clock.t >= (r.retries + 1) * r.ack_timeout_ms
    r.poll()
    assert r.exchange(APDU)[-2:] == b"\x90\x00"


def test_persistent_checksum_errors_give_up():
    emu, r, _ = make_reader()
    r.begin()
    r.poll()
    emu.inject("bad_checksum", cmd=0x40)
    real = emu._on

    def on(kind, body):   # the resent frames are garbled too
        if kind == "nack":
            emu.nacks_received += 1
            good = emu._last_response
            emu._send(good[:-2] + bytes([(good[-2] + 1) % 256, 0]))
            return
        real(kind, body)
    emu._on = on
    with pytest.raises(NfcError) as e:
        r.exchange(APDU)
    assert e.value.kind == pn532.CHECKSUM
    assert r.nacks_sent == r.retries
    emu._on = real
    r.poll()
    assert r.exchange(SELECT) == b"\x90\x00"


def test_poll_of_a_silent_chip_is_no_card_but_a_dead_chip_is_an_error():
    emu, r, _ = make_reader()
    r.begin()
    emu.inject("silent", cmd=0x4A)
    assert r.poll() is None                            # still searching when we gave up
    emu.inject("drop", cmd=0x4A, times=r.retries + 1)
    with pytest.raises(NfcError) as e:
        r.poll()
    assert e.value.kind == pn532.NO_ACK


def test_not_a_pn532():
    emu = PN532Emulator(DemoCard(), firmware=(0x31, 1, 0, 0))
    clock = Clock()
    r = pn532.PN532(emu.loopback(), clock_ms=clock, idle=clock.idle)
    with pytest.raises(NfcError):
        r.begin()


def test_card_that_crashes_is_a_card_error():
    class Broken:
        def apdu(self, cmd):
            raise RuntimeError("phone app crashed")
    emu, r, _ = make_reader(Broken())
    r.begin()
    r.poll()
    with pytest.raises(NfcError) as e:
        r.exchange(APDU)
    assert e.value.card_gone


FAULT_NAMES = st.sampled_from(["garbage", "bad_checksum", "bad_lcs", "nack", "drop", "split",
                               "extended", "silent", "error_frame", "remove_card"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(FAULT_NAMES, st.sampled_from([None, 0x40, 0x4A])), max_size=6))
def test_random_fault_sequences_end_in_a_working_reader(faults):
    emu, r, _ = make_reader()
    r.begin()
    for name, cmd in faults:
        emu.inject(name, cmd=cmd)
    for _ in range(8):                                   # taps while the faults are consumed
        try:
            if r.poll() is not None:
                assert r.exchange(APDU) == bytes(reversed(APDU)) + b"\x90\x00"
        except NfcError as e:
            assert e.kind in (pn532.NO_ACK, pn532.TIMEOUT, pn532.CHECKSUM, pn532.PROTOCOL,
                              pn532.CARD)
    emu._faults.clear()                                  # faults for commands never sent
    assert (r.poll() or r.poll()) is not None            # a phone that left comes back
    assert r.exchange(SELECT) == b"\x90\x00"


@SETTINGS
@given(st.binary(min_size=1, max_size=40), st.sampled_from([b"", pn532.ACK, pn532.NACK]),
       st.integers(0, 600))
def test_a_chip_that_repeats_anything_for_ever_cannot_hold_a_command(stream, first, deadline):
    clock = Clock()
    r = pn532.PN532(EndlessUart(clock, stream, first), clock_ms=clock, idle=clock.idle,
                    command_deadline_ms=deadline)
    try:
        r.command(0x40, b"\x01\x00", timeout_ms=200)
    except NfcError as e:
        assert e.kind in (pn532.NO_ACK, pn532.TIMEOUT, pn532.CHECKSUM, pn532.PROTOCOL,
                          pn532.DEADLINE)
    limit = max(deadline, 200 + (r.retries + 1) * r.ack_timeout_ms)
    # past the deadline: at most the drain before a resend (16 reads) and the read under way
    assert clock.t <= limit + 16 + 1


# --- QR scanner ---

class FakeUart:
    def __init__(self):
        self.rx = bytearray()
        self.tx = bytearray()

    def any(self):
        return len(self.rx)

    def readinto(self, buf, nbytes=None):
        n = min(len(buf), len(self.rx))
        if not n:
            return None
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n

    def write(self, data):
        self.tx.extend(data)
        return len(data)


def drain(scanner):
    out = []
    while True:
        line = scanner.poll()
        if line is None:
            if not scanner.uart.rx:
                return out
            continue
        out.append(line)


def test_lines_with_every_suffix_and_partial_reads():
    u = FakeUart()
    q = qrscanner.QrScanner(u, clock_ms=lambda: 0)
    for piece in (b"FV1:AB", b"C\r", b"X Y\r\n", b"\n\nLAST", b"\n"):
        u.rx.extend(piece)
    assert drain(q) == ["FV1:ABC", "X Y", "LAST"]
    assert q.dropped == 0 and q.lines == 3


def test_oversize_line_is_dropped_and_reader_resyncs():
    u = FakeUart()
    q = qrscanner.QrScanner(u, max_len=100, clock_ms=lambda: 0)
    u.rx.extend(b"A" * 100 + b"\r" + b"B" * 101 + b"\r" + b"C" * 5000 + b"\rOK\r")
    assert drain(q) == ["A" * 100, "OK"]
    assert q.drops == {"oversize": 2} and q.last_drop == "oversize"
    assert q._n == 0 and len(q._line) == 100   # nothing pending; the buffer made once


def test_binary_and_stale_partial_lines():
    u = FakeUart()
    now = [0]
    q = qrscanner.QrScanner(u, clock_ms=lambda: now[0], stale_ms=500)
    u.rx.extend(b"\x00\xffgarbage\rGOOD\r")
    assert drain(q) == ["GOOD"]
    assert q.drops == {"binary": 1}
    u.rx.extend(b"\x13\x80half")            # a glitch without an end ...
    assert drain(q) == []
    now[0] = 2000                          # ... and a real code much later
    u.rx.extend(b"FV1:XYZ\r")
    assert drain(q) == ["FV1:XYZ"]
    assert q.drops == {"binary": 1, "stale": 1}


def test_uart_errors_are_counted_not_raised():
    class Dead(FakeUart):
        def any(self):
            raise OSError(5, "EIO")
    q = qrscanner.QrScanner(Dead(), clock_ms=lambda: 0)
    assert q.poll() is None and q.drops == {"io": 1}


printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                    min_size=1, max_size=300)


@SETTINGS
@given(lines=st.lists(printable, max_size=8), sep=st.sampled_from([b"\r", b"\n", b"\r\n"]),
       cuts=st.lists(st.integers(1, 50), max_size=30))
def test_lines_survive_any_chunking(lines, sep, cuts):
    data = b"".join(s.encode() + sep for s in lines)
    u = FakeUart()
    q = qrscanner.QrScanner(u, max_len=300, clock_ms=lambda: 0)
    got = []
    pos = 0
    for c in cuts + [len(data)]:
        u.rx.extend(data[pos:pos + c])
        pos += c
        got += drain(q)
    assert got == lines


@SETTINGS
@given(data=st.binary(max_size=3000), chunk=st.integers(1, 200))
def test_random_bytes_give_only_bounded_printable_lines(data, chunk):
    u = FakeUart()
    q = qrscanner.QrScanner(u, max_len=64, clock_ms=lambda: 0)
    for i in range(0, len(data), chunk):
        u.rx.extend(data[i:i + chunk])
        for line in drain(q):
            assert 0 < len(line) <= 64 and line.isprintable() and line.isascii()
        assert len(q._line) <= 64


def test_gm65_command_frames():
    # frames documented for GM65-class modules (CRC-16/XMODEM over type..data)
    assert qrscanner.build_command(qrscanner.T_SAVE, 0, b"\x00") == bytes.fromhex(
        "7e0009010000 00dec8".replace(" ", ""))
    assert qrscanner.build_command(qrscanner.T_READ, 0x2A, b"\x02") == bytes.fromhex(
        "7e000701002a02d80f")
    assert qrscanner.build_command(qrscanner.T_WRITE, 0x2A, b"\x39\x01") == bytes.fromhex(
        "7e0008 02002a3901a7ea".replace(" ", ""))
    assert qrscanner.parse_reply(bytearray(bytes.fromhex("02000001003331"))) == (b"\x00", 7)
    assert qrscanner.parse_reply(bytearray(bytes.fromhex("aa02000001003332")))[0] is False
    assert qrscanner.parse_reply(bytearray(b"\x02\x00\x00\x05ab"))[0] is None
    assert qr_emu.reply(b"\x00") == bytes.fromhex("02000001003331")
    for data in (b"", b"\x01", bytes(range(40))):
        assert qr_emu.command(8, 0x60, data) == qrscanner.build_command(8, 0x60, data)


@SETTINGS
@given(st.binary(max_size=80))
def test_gm65_reply_parser_random(data):
    d, k = qrscanner.parse_reply(bytearray(data))
    assert 0 <= k <= len(data)
    assert d is None or d is False or isinstance(d, bytes)


# --- feedback ---

class Rec:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def on(self, f):
        self.log.append((self.name, "on", f))

    def off(self):
        self.log.append((self.name, "off"))

    def color(self, r, g, b):
        self.log.append((self.name, (r, g, b)))

    def show(self, pattern, lines):
        self.log.append((self.name, pattern, tuple(lines)))


def make_feedback(**kw):
    log, evs, now = [], [], [0]
    fb = feedback.Feedback(buzzer=Rec(log, "buzzer"), led=Rec(log, "led"),
                           display=Rec(log, "display"), events=evs.append,
                           clock_ms=lambda: now[0], **kw)
    return fb, log, evs, now


def beeps_heard(fb, log, now, until):
    """(freq, start, duration) of each beep since the signal (in `log`), ticking every ms."""
    out, on = [], None
    for t in range(now[0], until):
        now[0] = t
        fb.tick()
        for e in log:
            if e[:2] == ("buzzer", "on"):
                on = (e[2], t)
            elif e[:2] == ("buzzer", "off") and on:
                out.append((on[0], on[1], t - on[1]))
                on = None
        log.clear()
    return out


def test_accept_pattern_then_rest():
    fb, log, evs, now = make_feedback()
    fb.ready()
    log.clear()
    fb.accept(reasons.OK, fare=250)
    assert ("led", feedback.GREEN) in log
    assert ("display", "accept", ("Welcome aboard", "Fare 2.50")) in log
    ev = evs[-1]
    assert (ev["ev"], ev["pattern"], ev["name"], ev["fare"], ev["zh"]) == (
        "feedback", "accept", "OK", 250, "请上车")
    json.dumps(ev, ensure_ascii=False)
    assert beeps_heard(fb, log, now, 1500) == [(2700, 0, 120)]
    assert fb.pattern == "ready"
    assert fb.tick() is False


def test_patterns_are_distinct():
    heard = {}
    for name, call in (("accept", lambda f: f.accept()),
                       ("already", lambda f: f.accept(reasons.ALREADY_VALIDATED)),
                       ("reject", lambda f: f.reject(reasons.CODE_EXPIRED)),
                       ("service", lambda f: f.service(reasons.SYNC_REQUIRED))):
        fb, log, evs, now = make_feedback()
        log.clear()
        call(fb)
        led = [e[1] for e in log if e[0] == "led"][0]
        heard[name] = (led, tuple(beeps_heard(fb, log, now, 3000)))
        assert evs[-1]["pattern"] == name
    assert len(set(heard.values())) == 4
    assert len(heard["reject"][1]) == 3 and heard["reject"][0] == feedback.RED


def test_reject_shows_the_reason_and_service_persists():
    fb, log, evs, now = make_feedback()
    fb.service(reasons.LOG_FULL)
    assert fb.resting == "service"
    fb.reject(reasons.LOG_FULL)
    assert ("display", "reject", ("Service: log", "full")) in log
    beeps_heard(fb, log, now, 100)
    now[0] = 5000
    log.clear()
    fb.tick()
    assert fb.pattern == "service" and ("led", feedback.AMBER) in log
    fb.ready()
    assert fb.pattern == "ready" and evs[-1]["pattern"] == "ready"


def test_every_reason_fits_the_display():
    for lang, cols in (("en", 16), ("zh", 16), ("en", 21)):
        fb, log, evs, now = make_feedback(lang=lang, cols=cols, rows=4)
        for code in reasons.MESSAGES:
            fb.reject(code)
            lines = evs[-1]["lines"]
            assert 1 <= len(lines) <= 4
            width = cols // 2 if lang == "zh" else cols
            assert all(len(x) <= width for x in lines)


def test_events_as_json_lines_on_a_stream():
    import io
    s = io.StringIO()
    fb = feedback.Feedback(events=s, clock_ms=lambda: 0)
    fb.accept(reasons.OK, 100)
    fb.reject(reasons.DENIED_ACCOUNT)
    lines = [json.loads(x) for x in s.getvalue().splitlines()]
    assert [x["pattern"] for x in lines] == ["accept", "reject"]
    assert lines[1]["en"] == "Account blocked"


def test_decision_dispatch():
    class D:
        def __init__(self, accepted, reason, fare=0):
            self.accepted, self.reason, self.fare = accepted, reason, fare
            self.message = reasons.message(reason)
    fb, log, evs, now = make_feedback()
    fb.decision(D(True, reasons.OK, 200))
    fb.decision(D(True, reasons.ALREADY_VALIDATED))
    fb.decision(D(False, reasons.PASSBACK))
    assert [e["pattern"] for e in evs] == ["accept", "already", "reject"]


@SETTINGS
@given(st.text(max_size=200), st.integers(1, 30), st.integers(1, 8))
def test_wrap_bounds(text, cols, rows):
    lines = feedback.wrap(text, cols, rows)
    assert len(lines) <= rows and all(0 < len(x) <= cols for x in lines)
