"""The DS3231 driver's date arithmetic on CPython with hypothesis, against the standard library's
calendar: every second of 2000-2099 encodes to the registers the datasheet describes and back,
and any register contents either decode to the date they spell or are refused. The driver
against a fake chip on MicroPython: tests/mp/mpt_boards_esp32.py."""
import datetime
import sys

from hypothesis import given, settings, strategies as st

from mpharness import ROOT

sys.path.insert(0, str(ROOT / "boards" / "common"))
import ds3231  # noqa: E402

FIRST = 946684800     # 2000-01-01 00:00:00 UTC
END = 4102444800      # 2100-01-01 00:00:00 UTC


def bcd(v):
    return (v // 10) * 16 + v % 10


@settings(max_examples=500)
@given(st.integers(FIRST, END - 1))
def test_every_second_of_the_century_encodes_as_the_datasheet_says(t):
    dt = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    regs = ds3231.encode(t)
    assert regs == bytes((bcd(dt.second), bcd(dt.minute), bcd(dt.hour), dt.isoweekday(),
                          bcd(dt.day), bcd(dt.month), bcd(dt.year - 2000)))
    assert ds3231.decode(regs) == t


@settings(max_examples=300)
@given(st.integers(-719162, 2932896))  # years 1 to 9999: what datetime.date holds
def test_day_counts_match_the_calendar(days):
    y, m, d = ds3231.civil_from_days(days)
    assert datetime.date(1970, 1, 1) + datetime.timedelta(days=days) == datetime.date(y, m, d)
    assert ds3231.days_from_civil(y, m, d) == days


@settings(max_examples=1000)
@given(st.binary(min_size=7, max_size=7))
def test_any_registers_decode_to_their_date_or_nothing(regs):
    t = ds3231.decode(regs)
    if t is None:
        return
    dt = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    assert FIRST <= t < END
    assert (bcd(dt.minute), bcd(dt.day), bcd(dt.month), bcd(dt.year - 2000)) == \
        (regs[1] & 0x7F, regs[4] & 0x3F, regs[5] & 0x1F, regs[6])
    assert bcd(dt.second) == regs[0] & 0x7F
    if regs[2] & 0x40:  # 12-hour mode: bit 5 is PM, hours 1-12
        assert bcd(dt.hour % 12 or 12) == regs[2] & 0x1F
        assert (dt.hour >= 12) == bool(regs[2] & 0x20)
    else:
        assert bcd(dt.hour) == regs[2] & 0x3F


def test_out_of_range_registers_are_refused():
    good = ds3231.encode(1767225600)
    assert ds3231.decode(good) == 1767225600
    for i, bad in ((0, 0x60), (1, 0x5A), (2, 0x24), (4, 0x32), (5, 0x13), (5, 0x00), (6, 0xA0)):
        regs = bytearray(good)
        regs[i] = bad
        assert ds3231.decode(bytes(regs)) is None, (i, bad)
