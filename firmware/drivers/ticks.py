# Millisecond ticks for the drivers' timeouts and patterns: MicroPython's time.ticks_* (they wrap,
# so differences go through ticks_diff), with a CPython stand-in so the drivers' pure logic also
# runs under hypothesis on the host.
import time

try:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    sleep_ms = time.sleep_ms
except AttributeError:  # CPython
    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def sleep_ms(ms):
        time.sleep(ms / 1000)
