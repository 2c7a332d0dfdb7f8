# The reader clock on MicroPython with its state on simulated flash: unset after power-up,
# set by the depot, monotonic within a power-up and across reboots, bounded moves back, the
# battery-RTC case.
import flashdev
from validator import clock
from policy_fakes import Source, T0


class Flash:
    def __init__(self):
        self.dev = flashdev.FlashDev(16)
        flashdev.mount(self.dev, "/c")

    def reboot(self):
        flashdev.umount("/c")
        self.dev = self.dev.revive()
        flashdev.mount(self.dev, "/c", format_if_needed=False)

    def close(self):
        flashdev.umount("/c")
        self.dev.close()


def test_unset_until_the_depot_sets_it_then_follows_the_source():
    fl = Flash()
    src = Source(1000)  # an uptime counter: seconds since power-up
    c = clock.Clock(src, "/c")
    assert c.now() is None and not c.is_set() and c.synced_at == 0
    assert c.set(T0) == clock.OK
    assert c.now() == T0 and c.synced_at == T0
    src.t += 42
    assert c.now() == T0 + 42
    fl.close()


def test_never_goes_back_within_a_power_up():
    fl = Flash()
    src = Source(T0)
    c = clock.Clock(src, "/c")
    c.set(T0)
    src.t = T0 + 100
    assert c.now() == T0 + 100
    src.t = T0 + 50  # the source stepped back (an RTC adjusted behind our back)
    assert c.now() == T0 + 100
    src.t = T0 + 101
    assert c.now() == T0 + 101
    fl.close()


def test_bad_times_are_refused():
    fl = Flash()
    c = clock.Clock(Source(0), "/c")
    for t in (True, 1.5e9, "1750000000", None, clock.MIN_TIME - 1, clock.MAX_TIME + 1, -1):
        assert c.set(t) == clock.BAD_TIME, t
    assert c.now() is None
    assert c.set(clock.MIN_TIME) == clock.OK and c.set(clock.MAX_TIME) == clock.OK
    fl.close()


def test_moving_back_is_bounded_unless_authorised():
    fl = Flash()
    src = Source(0)
    c = clock.Clock(src, "/c", max_back=300)
    c.set(T0 + 1000)
    assert c.set(T0 + 699) == clock.BACKWARDS
    assert c.now() == T0 + 1000
    assert c.set(T0 + 700) == clock.OK  # exactly 300 s back: a correction, allowed
    assert c.now() == T0 + 700
    assert c.set(T0) == clock.BACKWARDS
    assert c.set(T0, allow_backwards=True) == clock.OK
    assert c.now() == T0
    fl.close()


def test_persisted_across_reboots_no_rtc():
    fl = Flash()
    src = Source(5)
    c = clock.Clock(src, "/c", persist_every=600)
    c.set(T0)
    src.t += 599
    assert not c.checkpoint()   # not yet due: no flash write
    src.t += 1
    assert c.checkpoint()       # T0 + 600 persisted
    src.t += 1000               # runs on to T0 + 1600, not persisted
    fl.reboot()
    src.t = 3                   # uptime restarts
    c = clock.Clock(src, "/c", persist_every=600)
    assert c.now() is None and c.floor == T0 + 600 and c.synced_at == T0
    assert c.set(T0 + 299) == clock.BACKWARDS   # behind the persisted time by more than 300 s
    assert c.set(T0 + 300) == clock.OK
    assert c.now() == T0 + 300
    fl.reboot()
    c = clock.Clock(src, "/c")
    assert c.floor == T0 + 300 and c.synced_at == T0 + 300
    fl.close()


def test_battery_rtc_keeps_the_clock_set_across_reboots_if_plausible():
    fl = Flash()
    rtc = Source(946684800)  # an RTC that lost power reads 2000-01-01

    def setter(t):
        rtc.t = t

    c = clock.Clock(rtc, "/c", setter=setter, rtc_max_gap=86400)
    assert c.now() is None  # never synced: the RTC alone is not trusted
    assert c.set(T0) == clock.OK and rtc.t == T0
    rtc.t = T0 + 3600
    fl.reboot()
    c = clock.Clock(rtc, "/c", setter=setter, rtc_max_gap=86400)
    assert c.now() == T0 + 3600  # set at power-up: the RTC ran on
    rtc.t = 946684800           # the RTC battery died
    fl.reboot()
    c = clock.Clock(rtc, "/c", setter=setter, rtc_max_gap=86400)
    assert c.now() is None
    rtc.t = T0 + 2 * 86400      # implausibly far ahead of the last persisted time
    c = clock.Clock(rtc, "/c", setter=setter, rtc_max_gap=86400)
    assert c.now() is None
    fl.close()


def test_damaged_clock_file_reads_as_never_set():
    fl = Flash()
    with open("/c/clock", "wb") as f:
        f.write(b"FCK1garbage")
    c = clock.Clock(Source(0), "/c")
    assert c.floor == 0 and c.synced_at == 0 and c.now() is None
    assert c.set(T0) == clock.OK
    fl.close()
