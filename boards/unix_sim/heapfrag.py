# Fragments the MicroPython heap on purpose (tests and the simulated reader's FV_FRAGMENT): every
# free run longer than `hole` bytes is cut into holes of `hole` bytes with a one-block pin between
# each two, so that whatever runs next can never get a contiguous block larger than a hole; the
# shorter free gaps stay as they were. The reader's rule is that after boot no code path needs a
# block over 1 KiB (docs/performance.md, "Heap"); this is how it is tested.
#
# How (MicroPython allocates first-fit, from the lowest free block up):
# 1. every run that holds a hole gets hole-sized tuples, every shorter gap small fillers (kept in
#    a list sized by a first pass that only counts them): the heap is full;
# 2. the holes are given back and taken again, each followed by a one-block pin; with every gap
#    below full, each pin lands right after its hole (checked by address);
# 3. the holes are dropped, and the fillers that neither touch a dropped hole nor close a run the
#    holes were cut from (so their gaps come back as they were, shorter than a hole, and bounded
#    by kept blocks; when squeezing to a given free total, they all stay);
# 4. any run still longer than a hole (probed) is taken by blocks one block longer than a hole.
# Tuples are single allocations (a bytearray's object and data are two, which would not stay
# together), and those built from variables leave no garbage.
import gc
import sys

_WORD = 8 if sys.maxsize > (1 << 32) else 4
_BLOCK = 4 * _WORD                     # the GC's allocation unit
_PIN = (None,)
_FILL = 64                             # items of the largest filler (less than any hole)


def _size(items):
    # bytes a tuple of `items` takes in the heap
    return (2 * _WORD + items * _WORD + _BLOCK - 1) // _BLOCK * _BLOCK


def fragment(hole=1024, leave=None):
    """Cut the free heap into holes of `hole` bytes (a multiple of the GC block: 32 bytes on a
    64-bit port). `leave`: bytes to leave free in holes (None: every hole is left free; otherwise
    about `leave` bytes are, spread over the heap, and the other holes stay taken). Returns the
    ballast, which the caller keeps alive as long as the heap must stay cut."""
    ballast = _cut(hole, leave)
    gc.collect()    # (what the cut's own frame held is free now)
    # 4. whatever slipped through (garbage of the cut, freed next to a hole: a raised MemoryError
    # allocates too) left a run longer than a hole: found by probing, taken a block longer than
    # a hole at a time (nothing shorter fits there first)
    more = None
    while largest_free(hole + _BLOCK) > hole:
        more = (more, bytearray(hole + 1))
    while leave is not None and gc.mem_free() > leave - 256:   # to `leave`, a block at a time
        more = (more, None)
    return (ballast, more)


def _cut(hole, leave):
    n = hole // _WORD - 2                  # a tuple is 2 words of header and n items
    gc.collect()
    cap = gc.mem_free() // hole + 8
    holes = [None] * cap                   # allocated first: no list grows while the heap is cut
    addrs = [0] * cap
    ends = [0] * cap
    # a first pass counts the fillers the small gaps take
    k = _take_holes(holes, n, cap)
    count = _count_fill()
    _drop(holes, k)
    gc.collect()
    # (in pieces of 64: a heap cut up already may have no block for one long list)
    fillers = [[None] * 64 for _ in range(count // 64 + 2)]
    gc.collect()       # (making it left garbage: gone before the heap is filled around it)
    # 1. the heap full: holes in every run that holds one, fillers in every gap shorter
    k = _take_holes(holes, n, cap)
    k1 = k
    for i in range(k):
        ends[i] = id(holes[i]) + hole      # a filler here closes a run: it stays (below)
    nf = _fill(fillers)
    _drop(holes, k)
    gc.collect()
    # 2. the holes again, each with a pin right after it (the pins and what is left over after
    # the last hole of a run are kept in a chain of 2-tuples)
    chain = None
    k = 0
    while k < cap:
        try:
            t = _hole_tuple(n)
            holes[k] = t
            addrs[k] = id(t)
            k += 1
            while True:                    # pins fill any gap below until one lands after t
                chain = (chain, None)
                if id(chain) > id(t):      # right after t, or t fills its gap exactly
                    break
        except MemoryError:
            break
    m = 64
    while m >= 2:                          # what is left: kept
        try:
            chain = (chain, _PIN * m) if m > 2 else (chain, None)
        except MemoryError:
            m //= 2
    # 3. drop the holes (all, or every so many), then the fillers that touch no dropped hole
    step = 1 if leave is None else max(1, k * hole // max(leave, 1))
    gc.collect()
    freed = gc.mem_free()                  # what the cut left over: small gaps
    i = 0
    while i < k and (leave is None or freed + hole <= leave - 768):   # (the cut's own frame
        holes[i] = None                                                # frees a little more)
        addrs[i] = -addrs[i]               # dropped: negative
        freed += hole
        i += step
    i = 0 if leave is None else nf         # (squeezing to `leave`: the small gaps stay taken)
    while i < nf:
        f = fillers[i >> 6][i & 63]
        a = id(f)
        e = a + _size(len(f))
        j = 0
        near = False
        while j < k:
            h = -addrs[j]
            if h > 0 and (e == h or a == h + hole):
                near = True
                break
            j += 1
        j = 0
        while j < k1 and not near:         # the end of a run the holes were cut from: what is
            if a == ends[j]:               # left of the run after the last hole and pin lies
                near = True                # just before it
            j += 1
        if not near:
            fillers[i >> 6][i & 63] = None
        i += 1
    return (holes, fillers, chain)


def _hole_tuple(n):
    return _PIN * n


def _take_holes(holes, n, cap):
    k = 0
    while k < cap:
        try:
            holes[k] = _hole_tuple(n)
        except MemoryError:
            break
        k += 1
    return k


def _drop(holes, k):
    for i in range(k):
        holes[i] = None


def _count_fill():
    # fill every gap left, halving the fillers down to one block, in a chain; how many it took
    chain = None
    count = 0
    m = _FILL
    while m >= 2:
        try:
            chain = (chain, _PIN * m) if m > 2 else (chain, None)
            count += 1
        except MemoryError:
            m //= 2
    chain = None
    return count


def _fill(fillers):
    # fill every gap left, halving the fillers down to one block, while there are slots
    p = 0
    m = _FILL
    while m >= 2 and p < 64 * len(fillers):
        try:
            fillers[p >> 6][p & 63] = _PIN * m if m > 2 else (p, None)
            p += 1
        except MemoryError:
            m //= 2
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
