# The ESP32 boards' time on the unix port, with the esp32 hardware modules replaced by recording
# fakes (boards_fakehw): the DS3231 driver against a fake chip (BCD registers, the oscillator-stop
# flag, a missing or garbled chip), where the board's time comes from after each kind of reset,
# and the firmware's Clock on the board across power cuts with and without a DS3231. (Apart from
# mpt_boards_esp32.py so that neither module's bytecode crowds the other out of a 110 KB heap.)
import gc
import os

import boards_fakehw as hw

ROOT = "/tmp/h8-esp32-flash"


def _board(name="esp32_devkitc"):
    hw.calls.clear()
    gc.collect()  # several boards a test: keep the 110 KB heap unfragmented
    hw.install(name)
    import esp32_board as eb
    eb.Esp32Board.root = ROOT  # stands in for the device's /flash
    import board
    return eb, board.Board()


# -- the DS3231 driver ------------------------------------------------------------------------

# (Unix seconds, the seven time registers as the DS3231 datasheet lays them out: BCD seconds,
# minutes, 24-hour hours, weekday 1 = Monday, date, month, year - 2000)
DS_VECTORS = [
    (1767225600, b"\x00\x00\x00\x04\x01\x01\x26"),   # 2026-01-01 00:00:00, Thursday
    (1709251199, b"\x59\x59\x23\x04\x29\x02\x24"),   # 2024-02-29 23:59:59, Thursday
    (946684800, b"\x00\x00\x00\x06\x01\x01\x00"),    # 2000-01-01, Saturday
    (1783170309, b"\x09\x05\x13\x06\x04\x07\x26"),   # 2026-07-04 13:05:09, Saturday
    (2147483648, b"\x08\x14\x03\x02\x19\x01\x38"),   # 2038-01-19 03:14:08, Tuesday
    (4102444799, b"\x59\x59\x23\x04\x31\x12\x99"),   # 2099-12-31 23:59:59, Thursday
]


def _chip_on_bus():
    hw.calls.clear()
    hw.install("esp32_devkitc")
    import ds3231
    bus = hw.I2C(0, scl=hw.Pin(22), sda=hw.Pin(21))
    chip = hw.FakeDs3231()
    bus.targets[0x68] = chip
    return ds3231, ds3231.DS3231(bus), chip, bus


def test_ds3231_bcd_registers_round_trip():
    ds3231, rtc, chip, _ = _chip_on_bus()
    for t, regs in DS_VECTORS:
        rtc.write_time(t)
        assert bytes(chip.regs[0:7]) == regs, (t, bytes(chip.regs[0:7]))
        assert rtc.read_time() == t and rtc.fault is None
    # every 3,001,237 s (about 35 days, a different time of day each time) from 2000 to 2099
    t = 946684800 + 7
    n = 0
    while t < 4102444800:
        hw.calls.clear()
        rtc.write_time(t)
        assert rtc.read_time() == t, t
        t += 3001237
        n += 1
    assert n > 1000
    # a chip someone set to 12-hour mode still reads right: 12 AM is 0 h, 1 PM is 13 h
    chip.regs[0:7] = b"\x00\x00\x52\x04\x01\x01\x26"
    assert rtc.read_time() == 1767225600
    chip.regs[2] = 0x40 | 0x20 | 0x01
    assert rtc.read_time() == 1767225600 + 13 * 3600


def test_ds3231_oscillator_stop_flag_means_no_time():
    ds3231, rtc, chip, _ = _chip_on_bus()
    chip.regs[0:7] = DS_VECTORS[0][1]
    assert rtc.read_time() is None and rtc.fault == ds3231.STOPPED  # as after its first power-up
    chip.regs[0x0E] |= 0x80  # EOSC: the oscillator would stop on battery
    rtc.write_time(1767225600)
    assert chip.regs[0x0F] == 0x08  # OSF cleared, EN32kHz kept
    assert chip.regs[0x0E] == 0x1C  # oscillator runs on battery again, the rest as it was
    assert rtc.read_time() == 1767225600
    chip.battery_out()
    assert rtc.read_time() is None and rtc.fault == ds3231.STOPPED


def test_ds3231_missing_or_garbled():
    ds3231, rtc, chip, bus = _chip_on_bus()
    assert rtc.present()
    del bus.targets[0x68]
    assert not rtc.present()
    assert rtc.read_time() is None and rtc.fault == ds3231.ABSENT
    try:
        rtc.write_time(1767225600)
        raise AssertionError("a missing chip must fail the write")
    except OSError:
        pass
    bus.targets[0x68] = chip
    chip.regs[0x0F] = 0x08
    for regs in (b"\xff" * 7,                            # SDA stuck high
                 b"\x00\x00\x00\x04\x29\x02\x23",     # 2023-02-29
                 b"\x00\x60\x00\x04\x01\x01\x26",     # minute 60
                 b"\x00\x00\x24\x04\x01\x01\x26",     # hour 24
                 b"\x00\x00\x00\x04\x01\x81\x26",     # century bit: 2126
                 b"\x00\x00\x00\x04\x00\x01\x26"):    # day 0
        chip.regs[0:7] = regs
        assert rtc.read_time() is None and rtc.fault == ds3231.BAD_TIME, regs
    chip.fail = 1
    assert rtc.read_time() is None and rtc.fault == ds3231.ABSENT
    for t in (946684799, 4102444800):
        try:
            ds3231.encode(t)
            raise AssertionError("outside 2000-2099 must be refused")
        except ValueError:
            pass


# -- where the board's time comes from -------------------------------------------------------

def _clock_dir():
    import binascii
    d = "/tmp/h8-esp32-clock-" + binascii.hexlify(os.urandom(4)).decode()
    os.mkdir(d)
    return d


def _power_up(cause, chip, name="esp32_devkitc"):
    """A board started after a reset of `cause` (machine.*_RESET), with `chip` (a FakeDs3231 or
    None) on its I2C bus; its reports collected in board.events."""
    hw._cause[0] = cause
    eb, b = _board(name)
    if chip is not None:
        hw.I2C.last.targets[0x68] = chip
    b.events = []
    b.report = b.events.append
    return eb, b


def _host_now(eb):
    import time
    return int(time.time()) + eb.epoch_offset()


def test_time_from_the_ds3231_after_a_power_cut():
    chip = hw.FakeDs3231()
    chip.regs[0:7] = DS_VECTORS[0][1]
    chip.regs[0x0F] = 0x08
    eb, b = _power_up(hw.machine.PWRON_RESET, chip)
    now = b.time_source()
    # the ESP32's RTC is set from the chip: 2026-01-01 00:00:00, a Thursday
    assert hw.find("RTC.datetime") == [("RTC.datetime", (2026, 1, 1, 3, 0, 0, 0, 0))]
    assert b.clock_origin == "ds3231" and b.ds3231_status == "ok"
    assert abs(now() - _host_now(eb)) <= 1  # (the fake RTC does not move time.time())
    assert b.events == [{"ev": "clock", "origin": "ds3231", "ds3231": "ok",
                         "cause": "power_on"}]
    hw._cause[0] = 1


def test_power_on_reset_without_a_valid_ds3231_has_no_time():
    for chip in (None, hw.FakeDs3231()):  # not fitted; fitted, but its battery ran out
        eb, b = _power_up(hw.machine.PWRON_RESET, chip)
        now = b.time_source()
        assert now() == 0 and b.clock_origin is None
        assert hw.find("RTC.datetime") == []
        assert b.ds3231_status == ("absent" if chip is None else "oscillator_stopped")
    # a board whose pins.py names no DS3231
    eb, b = _power_up(hw.machine.PWRON_RESET, None)
    b.pins = type("Pins", (), {"I2C": b.pins.I2C})
    b._ds3231 = None
    assert b.time_source()() == 0 and b.ds3231_status == "none"


def test_rtc_is_kept_only_through_resets_that_do_not_restart_it():
    m = hw.machine
    expected = ((m.HARD_RESET, "rtc"), (m.WDT_RESET, "rtc"), (m.SOFT_RESET, "rtc"),
                (m.DEEPSLEEP_RESET, "rtc"), (m.PWRON_RESET, None), (0, None))
    for cause, origin in expected:
        eb, b = _power_up(cause, None)
        now = b.time_source()
        assert b.clock_origin == origin, (cause, b.clock_origin)
        assert (now() != 0) == (origin is not None)
    hw._cause[0] = 1


def test_depot_time_goes_to_both_clocks():
    chip = hw.FakeDs3231()
    eb, b = _power_up(hw.machine.PWRON_RESET, chip)
    now = b.time_source()
    set_time = b.time_setter()
    assert now() == 0
    set_time(1709251199)
    assert hw.find("RTC.datetime")[-1] == ("RTC.datetime", (2024, 2, 29, 3, 23, 59, 59, 0))
    assert bytes(chip.regs[0:7]) == DS_VECTORS[1][1] and not chip.regs[0x0F] & 0x80
    assert now() != 0 and b.ds3231_status == "ok"
    # a DS3231 that stops answering: reported, and the ESP32's RTC still has the time
    chip.fail = 3
    set_time(1767225600)
    assert hw.find("RTC.datetime")[-1][1][:3] == (2026, 1, 1)
    assert b.events[-1]["ev"] == "fault" and b.events[-1]["where"] == "ds3231"
    assert b.ds3231_status == "write_failed" and now() != 0


def test_reader_clock_across_power_cuts():
    # the firmware's Clock on the board's time source: set by the depot, then a power cut
    from validator import clock
    state = _clock_dir()
    chip = hw.FakeDs3231()
    for name in ("esp32_devkitc", "esp32_s3"):
        eb, b = _power_up(hw.machine.PWRON_RESET, chip, name)
        c = clock.Clock(b.time_source(), state, setter=b.time_setter())
        assert not c.is_set()  # a new chip: no time before the depot
        assert c.set(_host_now(eb)) == clock.OK
        # power cut, DS3231 fitted: the reader has its time at once
        eb, b = _power_up(hw.machine.PWRON_RESET, chip, name)
        c = clock.Clock(b.time_source(), state, setter=b.time_setter())
        assert c.is_set() and abs(c.now() - _host_now(eb)) <= 1
        # power cut without it: no time until the depot (taps are refused SYNC_REQUIRED)
        eb, b = _power_up(hw.machine.PWRON_RESET, None, name)
        c = clock.Clock(b.time_source(), state, setter=b.time_setter())
        assert not c.is_set() and c.now() is None
        # ... but a crash reboot (machine.reset) keeps the ESP32's RTC running
        eb, b = _power_up(hw.machine.HARD_RESET, None, name)
        c = clock.Clock(b.time_source(), state, setter=b.time_setter())
        assert c.is_set()
        chip.battery_out()
    hw._cause[0] = 1
    for f in os.listdir(state):
        os.remove(state + "/" + f)
    os.rmdir(state)
