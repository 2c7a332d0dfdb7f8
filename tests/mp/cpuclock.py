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
