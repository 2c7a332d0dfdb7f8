# The benchmarks' clock on MicroPython: this process's CPU time in ns from /proc/self/schedstat
# (the machine is shared, so wall time is not ours alone), or wall time where /proc is missing.
# CLOCK names which one the figures are in.
import time

try:
    open("/proc/self/schedstat").close()

    def clock():
        with open("/proc/self/schedstat") as f:
            return int(f.read().split()[0])
    CLOCK = "cpu"
except OSError:
    def clock():
        return time.ticks_us() * 1000
    CLOCK = "wall"


# ns per call of fn(), run until the clock has moved at least min_ms: the CPU clock here may move
# in scheduler ticks (4 ms on this machine), so short runs would measure ticks, not work.
def per_call(fn, min_ms=400):
    n = 0
    t0 = clock()
    while True:
        fn()
        n += 1
        t = clock() - t0
        if t >= min_ms * 1000000:
            return t / n
