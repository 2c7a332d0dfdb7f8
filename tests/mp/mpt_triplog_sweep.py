# Power cut at every program/erase operation of a 300-tap workload (with acks, reclaiming, ring
# wrap-around and a reboot), on the simulated flash; after each cut the log must recover with every
# record whose append returned, byte for byte, a verifying chain and fresh sequence numbers.
# (the trip log first: compiling it from source needs the largest blocks of a 110 KB heap)
from validator import triplog  # noqa: F401

import os

import flashdev
import mpt_triplog_work as w

HEAPS = ("110k",)


def _img():
    # one image per process: several test sessions may share /tmp
    return "/tmp/mpt_triplog_sweep_%s.img" % "".join("%02x" % b for b in os.urandom(6))


def _total_ops(path):
    dev = w.fresh(path)
    p = [0, 0, 0, 0]
    w.workload(dev, p)
    n = dev.ops
    dev.close(delete=True)
    return n


def _sweep(torn, devclass=flashdev.FlashDev):
    path = _img()
    links = w.chain_table(w.TAPS + 1)
    total = _total_ops(path)
    assert total > w.TAPS  # appends + segment headers + erases + ack entries
    housekeeping_cuts = 0
    for k in range(total + 1):
        w.fresh(path).close(delete=False)
        dev = devclass(w.BLOCKS, path=path)
        dev.cut_after = k
        dev.torn = torn
        p = [0, 0, 0, 0]
        try:
            w.workload(dev, p)
            assert k == total, "workload finished before cut %d of %d" % (k, total)
        except OSError:
            assert dev.dead
        dev2 = dev.revive()
        w.check_recovered(dev2, p, links, w.gen(w.TAPS + 1))
        housekeeping_cuts += p[3]  # the watermark was on flash, the reclaiming erases were cut
        dev2.close(delete=False)
    os.remove(path)
    assert housekeeping_cuts > 0
    print("cuts", total + 1)


def test_cut_at_every_operation():
    _sweep(False)


def test_torn_write_at_every_operation():
    _sweep(True)


def test_torn_erase_and_write_at_every_operation():
    _sweep(True, w.TornEraseDev)


def test_weak_cells_at_every_operation():
    """The cut operation leaves cells that read 0xFF at boot and flip after the next writes."""
    _sweep(False, w.WeakCellDev)


def test_second_cut_after_recovery():
    """A cut, a reboot that finds a torn tail, more taps, and a second cut at a varying distance."""
    path = _img()
    links = w.chain_table(w.TAPS + 61)
    total = _total_ops(path)
    n = 0
    for k in range(0, total, 3):
        dev = w.fresh(path)
        dev.cut_after = k
        dev.torn = True
        p = [0, 0, 0, 0]
        try:
            w.workload(dev, p)
        except OSError:
            pass
        dev = dev.revive()
        log = w.tl.TripLog(dev, w.RID)
        w.check_contents(log, links)
        p = [log.last_seq, log.ack_seq, log.ack_seq, 0]
        dev.cut_after = 1 + (k * 13) % 70
        dev.torn = True
        try:
            w.workload(dev, p, taps=60, reopen_at=-1, ack_every=15)
        except OSError:
            pass
        dev2 = dev.revive()
        w.check_recovered(dev2, p, links, w.gen(w.TAPS + 61))
        dev2.close(delete=False)
        n += 1
    os.remove(path)
    print("double cuts", n)
