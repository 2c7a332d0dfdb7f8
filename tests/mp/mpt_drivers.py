# The drivers on MicroPython, with in-process fake UARTs and a fake millisecond clock (no
# wall-clock waits): PN532 frames and driver recovery, QR scanner lines, feedback events.
# The same drivers against the emulators over ptys: tests/sim/test_drivers_pty.py.
import gc
import io
import json

from drivers import feedback, pn532, qrscanner
from drivers.pn532 import NfcError
from drivers_fakes import TARGET, Clock, RxBuffer, ScriptUart, resp
from validator import reasons


def reader(replies, **kw):
    c = Clock()
    u = ScriptUart(replies)
    return pn532.PN532(u, clock_ms=c, idle=c.idle, **kw), u, c


def test_frame_vectors():
    assert pn532.encode_command(0x02) == bytes.fromhex("0000ff02fed4022a00")
    p = pn532.FrameParser()
    p.feed(b"\x55\x00\x13" + pn532.ACK + pn532.encode_frame(b"\xd5\x03\x32\x01\x06\x07")
           + pn532.NACK + pn532.ERROR_FRAME)
    evs = []
    while True:
        ev = p.next()
        if ev is None:
            break
        evs.append(ev)
    assert evs == [(pn532.EV_ACK, None), (pn532.EV_FRAME, b"\xd5\x03\x32\x01\x06\x07"),
                   (pn532.EV_NACK, None), (pn532.EV_FRAME, b"\x7f")]
    big = bytes((0xD5, 0x41, 0)) + bytes(range(256))
    p.feed(pn532.encode_frame(big))
    assert p.next() == (pn532.EV_FRAME, big)


def test_tap_with_garbage_and_a_checksum_error():
    good = resp(0x40, b"\x00\x90\x00")
    bad = good[:-2] + bytes(((good[-2] + 1) & 0xFF, 0))
    r, u, c = reader([
        pn532.ACK + resp(0x14),
        pn532.ACK + resp(0x02, b"\x32\x01\x06\x07"),
        pn532.ACK + resp(0x12),
        pn532.ACK + resp(0x32),
        b"\x13\x55" + pn532.ACK + b"\xa5" + resp(0x4A, TARGET),
        pn532.ACK + bad,
    ])
    assert r.begin() == (0x32, 1, 6, 7)
    assert u.writes[0] == pn532.WAKEUP
    t = r.poll()
    assert t.uid == bytes.fromhex("08a1b2c3") and t.iso14443_4
    orig = u.write                         # a NACK gets the good frame again


    def write(data):
        n = orig(data)
        if bytes(data) == pn532.NACK:
            u.rx.extend(good)
        return n
    u.write = write
    assert r.exchange(b"\x00\xa4\x04\x00") == b"\x90\x00"
    assert r.nacks_sent == 1 and pn532.NACK in u.writes
    assert c.t == 0                        # nothing ever waited


def test_no_ack_and_no_response_time_out_on_the_injected_clock():
    r, u, c = reader([], ack_timeout_ms=40, retries=2)
    try:
        r.firmware_version()
        raise AssertionError("no error")
    except NfcError as e:
        assert e.kind == pn532.NO_ACK
    assert len(u.writes) == 3 and c.t >= 120 and r.resends == 2
    r, u, c = reader([pn532.ACK], response_timeout_ms=500)
    try:
        r.command(0x02)
        raise AssertionError("no error")
    except NfcError as e:
        assert e.kind == pn532.TIMEOUT
    assert u.writes[-1] == pn532.ACK and r.aborts == 1 and 500 <= c.t < 600


def test_status_errors_and_card_gone():
    r, u, c = reader([pn532.ACK + resp(0x4A, TARGET), pn532.ACK + resp(0x40, b"\x01"),
                      pn532.ACK + resp(0x4A, b"\x00")])
    r.poll()
    try:
        r.exchange(b"\x00\xb0\x00\x00\x10")
        raise AssertionError("no error")
    except NfcError as e:
        assert e.kind == pn532.CARD and e.status == 1 and e.card_gone
    assert r.target is None
    assert r.poll() is None


def test_stale_answers_are_ignored():
    # a late answer to an aborted command (0x4B) arrives before the real one (0x41)
    r, u, c = reader([pn532.ACK + resp(0x4A, TARGET),
                      pn532.ACK + resp(0x4A, TARGET) + resp(0x40, b"\x00\x90\x00")])
    r.poll()
    assert r.exchange(b"\x00\xa4\x04\x00") == b"\x90\x00"
    assert r.ignored == 1


def test_many_exchanges_do_not_grow_the_heap():
    card = bytes(200) + b"\x90\x00"
    answer = pn532.ACK + resp(0x40, b"\x00" + card)
    r, u, c = reader([pn532.ACK + resp(0x4A, TARGET), answer])
    u.keep = False
    r.poll()
    r.exchange(b"\x80\x01")
    gc.collect()
    before = gc.mem_free()
    for _ in range(299):
        u.replies.append(answer)  # one at a time: the script itself does not grow either
        assert r.exchange(b"\x80\x01") == card
    gc.collect()
    assert before - gc.mem_free() < 2048


class LineUart(RxBuffer):
    def __init__(self):
        self.rx = bytearray()
        self.tx = bytearray()

    def write(self, data):
        self.tx.extend(data)
        return len(data)


def lines_of(q):
    out = []
    while True:
        line = q.poll()
        if line is None:
            if not q.uart.rx:
                return out
            continue
        out.append(line)


def test_qr_lines_partial_oversize_binary_stale():
    u = LineUart()
    now = [0]
    q = qrscanner.QrScanner(u, clock_ms=lambda: now[0])
    code = "FV1:" + "A1B2C3" * 80
    for i in range(0, len(code), 7):          # the code arrives in pieces
        u.rx.extend(code[i:i + 7].encode())
        assert q.poll() is None
    u.rx.extend(b"\r\n")
    assert lines_of(q) == [code]
    u.rx.extend(b"X" * 3000 + b"\r" + b"\x00\xfe\x7fnoise\n" + b"NEXT\r")
    assert lines_of(q) == ["NEXT"]
    assert q.drops == {"oversize": 1, "binary": 1}
    u.rx.extend(b"\x80glitch")
    assert lines_of(q) == []
    now[0] = 10000
    u.rx.extend(b"LATER\r")
    assert lines_of(q) == ["LATER"] and q.drops["stale"] == 1
    gc.collect()
    before = gc.mem_free()
    for i in range(200):
        u.rx.extend(code.encode() + b"\r")
        assert lines_of(q) == [code]
    gc.collect()
    assert before - gc.mem_free() < 4096


def test_qr_configuration_commands():
    u = LineUart()
    c = Clock()
    q = qrscanner.QrScanner(u, clock_ms=c, idle=c.idle)
    u.rx.extend(b"STALE\r" + bytes.fromhex("02000001003331"))
    assert q.trigger()
    assert bytes(u.tx) == qrscanner.build_command(qrscanner.T_WRITE, 0x0002, b"\x01")
    assert qrscanner.crc16_xmodem(bytes.fromhex("0901000000")) == 0xDEC8
    assert not q.save(timeout_ms=50) and c.t >= 50       # no answer: False, on the fake clock


def test_feedback_events_and_timing():
    out = io.StringIO()
    now = [0]
    log = []

    class Buzzer:
        def on(self, f):
            log.append((now[0], f))

        def off(self):
            log.append((now[0], 0))

    fb = feedback.Feedback(buzzer=Buzzer(), events=out, clock_ms=lambda: now[0])
    fb.ready()
    fb.reject(reasons.CODE_EXPIRED)
    for t in range(0, 3000, 5):
        now[0] = t
        fb.tick()
    assert [f for _, f in log if f] == [700, 700, 700]
    assert fb.pattern == "ready"
    evs = [json.loads(x) for x in out.getvalue().split("\n") if x]
    assert [e["pattern"] for e in evs] == ["ready", "reject"]
    assert evs[1]["zh"] == "请刷新乘车码" and evs[1]["lines"] == ["Refresh the code"]
