"""The long-day heap test: the simulated reader, real firmware on MicroPython, with 16 KB less heap
than the simulator gives it as the device's (bytecode + 110 KB instead of + 126 KB, whose extra
16 KB stand for the holes loading bytecode leaves on the unix port: host_tools/sim/simreader.py),
decides taps of every kind of rider interleaved with every kind of push, repeated; then each kind
of install has the power cut in its middle. Every push installs, every tap gets its rider's decision.
(That no block after boot is larger than 1 KiB is tested on the reader alone, its heap cut into
holes of that size: tests/firmware/test_heap_bound.py.)

`make test` runs a representative day (600 taps, each kind of push twice); FV_LONG_DAY=1 runs the
full one (3,000 taps, each kind of push six times; about eight minutes). tests/sim/heapday.py has
the day."""
import os

import heapday

LONG = os.environ.get("FV_LONG_DAY") == "1"
KINDS = ("denylist", "denylist_delta", "keyring", "config", "denylist_big", "denylist_delta")


def test_a_long_day_of_taps_and_pushes_in_the_reduced_heap(tmp_path):
    rounds, taps = (6, 3000) if LONG else (2, 600)
    day = heapday.HeapDay(tmp_path, pending_keys=rounds).start()
    try:
        per = taps // (rounds * len(KINDS))
        for _ in range(rounds):
            for kind in KINDS:
                day.taps(per)
                day.push(kind)
        day.taps(taps - per * rounds * len(KINDS))
        info = day.bus.info()
    finally:
        day.close()
    n = sum(day.counts.values())
    print("heap day:", n, "taps", day.counts, "NFC taps repeated", day.nfc_again,
          "pushes", len(day.pushes),
          "heap", day.heap, "lowest free", day.low, "after the day", info["heap"])
    assert n == taps
    assert day.counts["OK"] > taps // 2
    assert {"OK", "UNKNOWN_KEY", "DENIED_ACCOUNT", "MALFORMED"} <= set(day.counts)
    assert len(day.pushes) == 1 + rounds * len(KINDS)
    assert info["fault"] is None
    # The reader's error counter also counts an NFC front end it started again (on this shared
    # machine, an emulated PN532 that answered too late), each reported as an "nfc" fault: no
    # other error.
    restarts = [f for f in day.bus.reader.faults if f.get("where") == "nfc"]
    assert info["counters"]["errors"] == len(restarts), (info["counters"],
                                                          day.bus.reader.faults[-5:])


def test_a_power_cut_in_the_middle_of_each_kind_of_install(tmp_path):
    cuts = (0, 1, 2, 9, 40) if LONG else (0, 9)
    day = heapday.HeapDay(tmp_path, pending_keys=len(cuts), seed=2).start()
    try:
        day.push("denylist_big")     # the deltas below merge into 50,000 entries
        for after in cuts:
            for kind in ("denylist", "denylist_big", "denylist_delta", "keyring", "config"):
                day.push_with_cut(kind, after)
                day.taps(8)
        info = day.bus.info()
    finally:
        day.close()
    print("power cuts (kind, flash operations before the cut, version after):", day.cuts,
          "heap after", info["heap"])
    assert len(day.cuts) == 5 * len(cuts)
    assert info["fault"] is None
