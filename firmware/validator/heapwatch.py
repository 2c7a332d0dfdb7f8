# Heap health for INFO and the depot's report: the reader's live data, the free total, the largest
# free block and the lowest free total seen since boot.
#
# The largest free block is found by allocation probes (a bisection over bytearray sizes, each
# failure costing one collection): MicroPython has no call that returns it (mem_info() prints it,
# to the console). The low-water mark is taken after a collection at each sample (the reader's
# idle rounds, every install), so it is the high-water mark of live data, not of garbage waiting
# for the collector. (micropython.mem_peak() is no help: on the unix port it never goes down.)
import gc


class HeapWatch:
    def __init__(self, code=0):
        self.code = code    # bytes of bytecode in the heap (unix port; frozen in flash on a device)
        self.low = None
        self.sample()

    def sample(self):
        """Collect, note the free total if it is the lowest yet, and return it."""
        gc.collect()
        free = gc.mem_free()
        if self.low is None or free < self.low:
            self.low = free
        return free

    def status(self):
        free = self.sample()
        return {"code": self.code, "work": gc.mem_alloc() - self.code, "free": free,
                "largest": largest_free(free), "low": self.low}


def largest_free(limit):
    """The largest block allocatable now, in bytes (within 16), at most `limit`."""
    lo = 0
    hi = limit
    while hi - lo > 16:
        mid = (lo + hi) // 2
        try:
            b = bytearray(mid)
            b = None
            lo = mid
        except MemoryError:
            hi = mid
    gc.collect()
    return lo
