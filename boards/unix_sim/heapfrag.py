# Fragments the MicroPython heap on purpose (tests and the simulated reader's FV_FRAGMENT): the
# free heap is cut into holes of `hole` bytes with a small kept block between each two, so that
# whatever runs next can never get a contiguous block larger than a hole. The reader's rule is
# that after boot no code path needs more (docs/performance.md, "Heap"); this is how it is tested.
#
# How: every run of free blocks long enough for a hole is taken by a hole-sized tuple, every gap
# shorter than that by one-block tuples, so the heap is full; then the holes are given back and
# taken again, each followed by a one-block pin. MicroPython allocates first-fit from the lowest
# free block: once the small gaps below are full, each pin lands right after its hole (checked by
# address). Dropping the holes leaves them free, pinned apart. (Tuples are single allocations: a bytearray's object
# and data are two, which would not stay together.)
import gc
import sys

_WORD = 8 if sys.maxsize > (1 << 32) else 4
_PIN = (None,)


def _hole_tuple(n):
    return _PIN * n


def fragment(hole=1024, leave=None):
    """Cut the free heap into holes of `hole` bytes (a multiple of the GC block: 32 bytes on a
    64-bit port). `leave`: bytes to leave free in all (None: every hole is left free; otherwise
    only about `leave` bytes are, spread over the heap, and the rest stays taken). Returns the
    ballast, which the caller keeps alive as long as the heap must stay cut."""
    n = hole // _WORD - 2            # a tuple is 2 words of header and n items
    gc.collect()
    cap = gc.mem_free() // hole + 8
    holes = [None] * cap             # allocated first: no list grows while the heap is cut
    pins = [None] * (cap + 512)
    # 1. take every run that holds a hole, then every smaller gap: the heap is full
    k = 0
    while k < cap:
        try:
            holes[k] = _hole_tuple(n)
        except MemoryError:
            break
        k += 1
    p = _fill(pins, 0)
    # 2. give the holes back and take them again, each with a pin right after it
    for i in range(k):
        holes[i] = None
    gc.collect()
    k = 0
    while k < cap and p < len(pins):
        try:
            t = _hole_tuple(n)
            holes[k] = t
            k += 1
            # the collection freed small gaps below: pins fill those until one lands after t
            while p < len(pins):
                pin = (p, None)      # one block, built at run time
                pins[p] = pin
                p += 1
                if id(pin) > id(t):   # right after t, or t fills its gap exactly
                    break
        except MemoryError:
            break
    p = _fill(pins, p)
    # 3. drop the holes (all, or every so many to leave about `leave` bytes)
    # (while loops: the heap is full, and a range with a variable step is an object)
    step = 1 if leave is None else max(1, k * hole // max(leave, 1))
    gc.collect()
    freed = gc.mem_free()    # what the cut left over (small gaps)
    i = 0
    while i < k and (leave is None or freed + hole <= leave - 256):  # (the caller's frame
        # frees a little on return)
        holes[i] = None
        freed += hole
        i += step
    gc.collect()
    return (holes, pins)


def _fill(pins, p):
    # one-block tuples into every gap left, as long as there is a slot to keep them in
    while p < len(pins):
        try:
            pins[p] = (p, None)
        except MemoryError:
            break
        p += 1
    return p


def largest_free(limit=None):
    """The largest block that can be allocated now (bytes, a multiple of the word size), found by
    bisection with allocation probes; at most `limit` (default: the free total)."""
    gc.collect()
    hi = gc.mem_free() if limit is None else limit
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            b = bytearray(mid)
            b = None
            lo = mid
        except MemoryError:
            hi = mid - 1
    gc.collect()
    return lo
