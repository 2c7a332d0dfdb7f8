# The ESP32 boards' own logic on the unix port, with the esp32 hardware modules replaced by
# recording fakes (boards_fakehw): which peripheral each role gets with which pins, the RTC
# conversion, the watchdog, the feedback patterns and the display, and the PN532 I2C link (alone
# and under the real PN532 driver, against a fake chip that answers on the I2C bus as the PN532
# does). The board's time across resets and the DS3231 driver: mpt_boards_esp32_clock.py.
import os

import boards_fakehw as hw

ROOT = "/tmp/h8-esp32-flash"


def _board(name="esp32_devkitc"):
    hw.calls.clear()
    hw.install(name)
    import esp32_board as eb
    eb.Esp32Board.root = ROOT  # stands in for the device's /flash
    import board
    return eb, board.Board()


def test_devkitc_wires_each_role_to_its_pins():
    eb, b = _board()
    pn = hw.FakePn532I2C()
    hw.I2C.last.targets[0x24] = pn
    assert b.name == "esp32_devkitc" and b.root == ROOT
    qr = b.uart("qr")
    assert (qr.id, qr.kw) == (2, {"baudrate": 9600, "tx": 17, "rx": 16, "timeout": 0,
                                  "rxbuf": 1024, "txbuf": 256})
    sync = b.uart("sync")
    assert (sync.id, sync.kw["tx"], sync.kw["rx"], sync.kw["baudrate"]) == (1, 25, 26, 115200)
    assert sync.kw["txbuf"] >= 1280 + 16  # a whole sync frame fits the TX buffer
    assert b.uart("qr") is qr  # one object per role
    nfc = b.uart("nfc")
    from pn532_i2c import Pn532I2CLink
    assert isinstance(nfc, Pn532I2CLink) and nfc.address == 0x24
    assert hw.find("I2C") == [("I2C", 0, 22, 21, 400000)]  # one bus, shared with the display
    assert b.uart("gps") is None
    # the data directory exists on the (fake) flash
    assert os.stat(ROOT)[0] & 0x4000


def test_the_qr_link_speed_can_be_changed_in_place_for_the_gm65():
    eb, b = _board()
    set_baud, opened_at = b.link_speed("qr")
    assert opened_at == 9600                  # the GM65's factory speed, from pins.py
    set_baud(115200)
    assert hw.find("UART.init") == [("UART.init", 2, 115200)]
    assert b.uart("qr").kw["baudrate"] == 115200 and b.uart("qr").kw["tx"] == 17
    assert b.link_speed("gps") is None
    hw.I2C.last.targets[0x24] = hw.FakePn532I2C()
    assert b.link_speed("nfc") is None        # the PN532 is on I2C: no UART speed to change


def test_s3_uses_the_onboard_pixel_and_its_own_pins():
    eb, b = _board("esp32_s3")
    assert b.name == "esp32_s3"
    assert hw.find("NeoPixel") == [("NeoPixel", 48, 1)]
    qr = b.uart("qr")
    assert (qr.id, qr.kw["tx"], qr.kw["rx"]) == (1, 17, 18)
    assert b.uart("sync").id == 2
    assert hw.find("PWM")[0][1] == 7  # buzzer pin


def test_clock_converts_unix_time_both_ways():
    eb, b = _board()
    set_time = b.time_setter()
    set_time(1767225600)  # 2026-01-01 00:00:00 UTC, a Thursday
    assert hw.find("RTC.datetime")[-1] == ("RTC.datetime", (2026, 1, 1, 3, 0, 0, 0, 0))
    set_time(1767225600 + 86399)
    assert hw.find("RTC.datetime")[-1][1][:7] == (2026, 1, 1, 3, 23, 59, 59)
    import time
    now = b.time_source()
    assert abs(now() - (int(time.time()) + eb.epoch_offset())) <= 1
    assert eb.epoch_offset() in (0, 946684800)


def test_watchdog_starts_on_first_feed_and_parks_for_a_technician():
    eb, b = _board()
    assert hw.find("WDT") == []
    b.park_watchdog()
    assert hw.find("WDT") == []  # nothing running: nothing to park
    b.feed_watchdog()
    b.feed_watchdog()
    assert hw.find("WDT") == [("WDT", 8000)]
    assert len(hw.find("WDT.feed")) == 2
    b.park_watchdog()
    assert hw.find("WDT")[-1] == ("WDT", eb.PARK_WDT_MS)


def test_service_button_and_reset_cause():
    hw.Pin.levels[0] = 1
    eb, b = _board()
    assert not b.service_requested()
    hw.Pin.levels[0] = 0
    assert b.service_requested()
    hw.Pin.levels.pop(0)
    assert b.cause == "power_on"
    hw._cause[0] = 3
    assert eb.reset_cause() == "watchdog"
    hw._cause[0] = 1
    b.reset()
    assert hw.find("reset") == [("reset",)]


def test_log_device_is_the_triplog_partition():
    eb, b = _board()
    hw.Partition.table.clear()
    try:
        b.log_device()
        raise AssertionError("no partition must be an error")
    except OSError as e:
        assert "fare flash" in str(e)
    dev = object()
    hw.Partition.table["triplog"] = dev
    assert b.log_device() is dev
    assert hw.find("Partition.find")[-1] == ("Partition.find", 1, "triplog")


def test_feedback_patterns_play_on_buzzer_and_led():
    eb, b = _board()
    t = [1000]
    d = eb.PatternDisplay(b.buzzer, b.led, None, clock_ms=lambda: t[0])
    from drivers import feedback
    hw.calls.clear()
    d.show("reject", ["Code expired", "过期"])
    # red LED at once (pins 32, 33, 23 = r, g, b), first low beep starts
    assert ("Pin.value", 32, 1) in hw.calls and ("Pin.value", 33, 0) in hw.calls
    assert hw.find("PWM.freq") == [("PWM.freq", 18, 700)]
    beeps = feedback.PATTERNS["reject"][1]
    end = 0
    for _, on, off in beeps:
        end += on + off
    t[0] = 1000 + end
    d.tick()
    assert len(hw.find("PWM.freq")) == len(beeps)
    assert hw.find("PWM.duty_u16")[-1] == ("PWM.duty_u16", 18, 0)  # silent after the beeps
    hw.calls.clear()
    t[0] = 1000 + feedback.PATTERNS["reject"][2]
    d.tick()
    # back to the resting (ready) colour: dim blue, so only the blue pin is on
    assert hw.find("Pin.value")[-3:] == [("Pin.value", 32, 0), ("Pin.value", 33, 0),
                                         ("Pin.value", 23, 1)]
    d.show("idle", [])  # the reader loop's name for the resting state
    assert d.pattern == "ready"
    d.show("no-such-pattern", [])
    assert d.pattern == "ready"


def test_screen_gets_ascii_lines_only():
    eb, b = _board()

    class Oled:
        def __init__(self):
            self.text_calls = []

        def fill(self, c):
            self.text_calls = []

        def text(self, s, x, y):
            self.text_calls.append((s, x, y))

        def show(self):
            pass

    oled = Oled()
    screen = eb.Screen(oled, 128)
    d = eb.PatternDisplay(None, None, screen, clock_ms=lambda: 0)
    d.show("accept", ["一次乘车", "Ride OK, have a good trip", "Fare 2.00"])
    assert oled.text_calls == [("Ride OK, have a", 0, 0), ("good trip", 0, 10),
                               ("Fare 2.00", 0, 20)]


def test_screen_wraps_every_reason_message_and_keeps_the_fare():
    eb, b = _board()
    screen = eb.Screen(None, 128)
    assert screen.cols == 16
    from validator import reasons
    for code in reasons.MESSAGES:
        en = reasons.message(code)[1]
        rows = screen.rows([en, "Fare 12.00"])
        assert rows[-1] == "Fare 12.00", rows
        assert " ".join(rows[:-1]) == en, rows  # every word shown, none cut
        assert all(len(r) <= 16 for r in rows)
    assert screen.rows(["Fare class not valid here"]) == ["Fare class not", "valid here"]
    # more text than rows: the screen's six rows, the later lines one row each
    rows = screen.rows(["word " * 40, "a", "b"])
    assert len(rows) == 6 and rows[-2:] == ["a", "b"]
    assert screen.rows(["x"] * 9) == ["x"] * 6


# -- the PN532 I2C link ------------------------------------------------------------------------

def _link(**kw):
    hw.calls.clear()
    hw.install("esp32_devkitc")
    from pn532_i2c import Pn532I2CLink
    bus = hw.I2C(0, scl=hw.Pin(22), sda=hw.Pin(21))
    chip = hw.FakePn532I2C(**kw)
    bus.targets[0x24] = chip
    return Pn532I2CLink(bus, 0x24), chip


ACK = b"\x00\x00\xff\x00\xff\x00"
FW_RESPONSE = b"\x00\x00\xff\x06\xfa\xd5\x03\x32\x01\x06\x07\xe8\x00"


def test_link_writes_frames_without_the_hsu_wakeup():
    link, chip = _link()
    wake = b"\x55\x55" + bytes(14)
    assert link.write(wake) == len(wake)
    assert chip.written == [b""]  # addressing the chip is the wake-up
    frame = b"\x00\x00\xff\x02\xfe\xd4\x02\x2a\x00"
    assert link.write(wake + frame) == len(wake) + len(frame)
    assert chip.written[-1] == frame


def test_link_reads_one_frame_and_drops_the_padding():
    link, chip = _link(padding=0xA5)
    assert link.any() == 0 and link.read(10) is None
    chip.respond(ACK, FW_RESPONSE)
    assert link.any() == 6
    assert link.read(100) == ACK
    buf = bytearray(5)
    assert link.readinto(buf) == 5 and bytes(buf) == FW_RESPONSE[:5]
    assert link.read() == FW_RESPONSE[5:]
    assert link.read() is None


def test_link_delimits_nack_error_and_extended_frames():
    _link()
    from pn532_i2c import frame_end
    nack = b"\x00\x00\xff\xff\x00\x00"
    err = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
    data = bytes(i & 0xFF for i in range(260))
    ln = len(data) + 1
    ext = (b"\x00\x00\xff\xff\xff" + bytes((ln >> 8, ln & 0xFF, (-(ln >> 8) - (ln & 0xFF)) & 0xFF))
           + b"\xd5" + data + b"\x00\x00")
    for frame in (ACK, nack, err, FW_RESPONSE, ext):
        assert frame_end(frame + b"\xa5" * 20) == len(frame)
    assert frame_end(b"\x00\x00\xff\x05\x00\x01") is None  # bad length checksum
    assert frame_end(b"\xa5\xa5\xa5") is None
    assert frame_end(b"\x00\x00\xff\x06\xfa\xd5") is None  # frame longer than the bytes


def test_link_passes_undelimited_bytes_to_the_driver():
    link, chip = _link()
    chip.respond(b"\xa5\x00\xff\x99")  # ready, but not a frame: the driver resynchronises
    out = link.read()
    assert out[:4] == b"\xa5\x00\xff\x99" and len(out) == 262


def test_link_survives_bus_errors():
    link, chip = _link()
    chip.nack_writes = 1  # asleep: the first address byte is not acknowledged
    frame = b"\x00\x00\xff\x02\xfe\xd4\x02\x2a\x00"
    assert link.write(frame) == len(frame) and chip.written == [frame]
    chip.nack_writes = 5
    assert link.write(frame) == 0 and link.errors == 3
    chip.fail_reads = 1
    chip.respond(ACK)
    assert link.read() is None and link.errors == 4
    assert link.read() == ACK


def test_link_with_irq_pin_skips_the_bus_until_ready():
    link, chip = _link()
    irq = hw.Pin(4)
    link.irq = irq
    hw.Pin.levels[4] = 1
    chip.respond(ACK)
    hw.calls.clear()
    assert link.read() is None and hw.find("I2C.read") == []
    hw.Pin.levels[4] = 0
    assert link.read() == ACK
    hw.Pin.levels.pop(4)


def _tiny_pn532(frame):
    # answers the four commands PN532.begin() sends, as the chip would
    i = frame.find(b"\xd4")
    if i < 0:
        return []
    cmd = frame[i + 1]
    body = {0x14: b"\xd5\x15", 0x02: b"\xd5\x03\x32\x01\x06\x07", 0x12: b"\xd5\x13",
            0x32: b"\xd5\x33"}.get(cmd)
    if body is None:
        return [ACK]
    n = len(body)
    dcs = (-sum(body)) & 0xFF
    return [ACK, b"\x00\x00\xff" + bytes((n, (-n) & 0xFF)) + body + bytes((dcs, 0))]


def test_real_pn532_driver_starts_over_the_i2c_link():
    link, chip = _link(padding=0xFF)
    chip.auto = _tiny_pn532
    from drivers import pn532
    t = [0]

    def idle():
        t[0] += 1
    nfc = pn532.PN532(link, clock_ms=lambda: t[0], idle=idle)
    assert nfc.begin() == (0x32, 0x01, 0x06, 0x07)
    assert nfc.resends == 0 and link.errors == 0
    cmds = [w[5 + 1] for w in chip.written if len(w) > 6]
    assert cmds == [0x14, 0x02, 0x12, 0x32]
