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


class _OpRecorder(flashdev.FlashDev):
    """Notes what each program/erase operation is: b"p" a program, b"P" the first ack entry in
    an ack block (a switch of blocks), b"e" a segment erase, b"E" an ack block erase."""

    def __init__(self, *args, **kw):
        flashdev.FlashDev.__init__(self, *args, **kw)
        self.kinds = bytearray()

    def writeblocks(self, block, buf, offset=None):
        self.kinds.append(ord("P" if block < w.tl.META_BLOCKS and not offset else "p"))
        flashdev.FlashDev.writeblocks(self, block, buf, offset)

    def ioctl(self, op, arg):
        if op == 6:
            self.kinds.append(ord("E" if arg < w.tl.META_BLOCKS else "e"))
        return flashdev.FlashDev.ioctl(self, op, arg)


def _op_kinds(path, key=None, ack_every=37, taps=w.TAPS):
    w.fresh(path).close(delete=False)
    dev = _OpRecorder(w.BLOCKS, path=path)
    p = [0, 0, 0, 0]
    w.workload(dev, p, taps=taps, ack_every=ack_every, key=key)
    dev.close(delete=True)
    return dev.kinds


def _sweep(torn, devclass=flashdev.FlashDev, torn_bytes=None, key=None, ack_every=37,
           programs_only=False, taps=w.TAPS, torn_erase=False):
    """Cut at every operation of the workload (with programs_only, at every program: a torn
    program differs from a clean cut only there). Returns the operation kinds (_OpRecorder)."""
    path = _img()
    links = w.chain_table(w.TAPS + 1, key)
    kinds = _op_kinds(path, key, ack_every, taps)
    total = len(kinds)
    assert total > taps  # appends + segment headers + erases + ack entries
    housekeeping_cuts = cuts = 0
    for k in range(total + 1):
        if programs_only and k < total and kinds[k] not in b"pP":
            continue
        w.fresh(path).close(delete=False)
        dev = devclass(w.BLOCKS, path=path)
        dev.cut_after = k
        dev.torn = torn
        dev.torn_bytes = torn_bytes
        dev.torn_erase = torn_erase
        p = [0, 0, 0, 0]
        try:
            w.workload(dev, p, taps=taps, ack_every=ack_every, key=key)
            assert k == total, "workload finished before cut %d of %d" % (k, total)
        except OSError:
            assert dev.dead
        dev2 = dev.revive()
        w.check_recovered(dev2, p, links, w.gen(w.TAPS + 1))
        housekeeping_cuts += p[3]  # the watermark was on flash, the reclaiming erases were cut
        dev2.close(delete=False)
        cuts += 1
    os.remove(path)
    assert housekeeping_cuts > 0 or programs_only
    print("cuts", cuts)
    return kinds


def test_cut_at_every_operation():
    _sweep(False)


def test_torn_write_at_every_operation():
    _sweep(True)


def test_torn_erase_and_write_at_every_operation():
    _sweep(True, torn_erase=True)


def test_weak_cells_at_every_operation():
    """The cut operation leaves cells that read 0xFF at boot and flip after the next writes."""
    _sweep(False, w.WeakCellDev)


def test_torn_writes_of_1_4_n4_n1_bytes_at_every_program():
    """Only the marker, only marker and length, all but the CRC, all but the CRC's last byte."""
    for torn_bytes in (1, 4, -4, -1):
        _sweep(True, torn_bytes=torn_bytes, programs_only=True)


def test_keyed_chain_with_frequent_acks_at_every_operation():
    """The reader's keyed chain, an ack after every tap, 160 taps: the ack block fills (128
    entries) and switches; weak cells at the cut."""
    kinds = _sweep(False, w.WeakCellDev, key=w.KEY, ack_every=1, taps=160)
    # the first ack, the first after the reboot, and at least one of a full block
    assert kinds.count(b"P") >= 3 and kinds.count(b"E") >= 3, (kinds.count(b"P"), kinds.count(b"E"))


def test_second_cut_after_recovery():
    """A cut, a reboot that finds a torn tail, more taps, and a second cut at a varying distance."""
    path = _img()
    links = w.chain_table(w.TAPS + 61)
    total = len(_op_kinds(path))
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
