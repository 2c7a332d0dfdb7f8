"""The smallest MicroPython heap (KB) in which a run succeeds, by bisection. `runs_in(kb)` runs
the snippet in a heap of `kb` KB and says whether it completed; a size counts only if it passes
`tries` times (allocation sizes depend on the random keys). A run that fails even in the largest
heap is a broken benchmark, not a figure: it raises."""


def smallest_heap(runs_in, lo, hi, tries=1):
    def passes(kb):
        return all(runs_in(kb) for _ in range(tries))

    if not passes(hi):
        raise RuntimeError("the heap benchmark fails even in %d KB: run it by hand to see why"
                           % hi)
    while hi - lo > 2:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi
