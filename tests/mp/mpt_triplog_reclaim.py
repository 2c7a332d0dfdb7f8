# The trip log's reclaiming on the simulated flash: acknowledging past a damaged record, erases
# bounded per housekeeping call, and what a boot must not write over (cells that an interrupted
# write or erase left weak).
# (the trip log first: compiling it from source needs the largest blocks of a 110 KB heap)
from validator import triplog as tl

import flashdev
from mpt_triplog_work import RID, WeakCellDev, chain_table, gen, records


def _dev(blocks=8):
    return flashdev.FlashDev(blocks)


def _damage(dev, log, seq, at=30):
    """Flip one bit of record `seq` on flash (flash wear after the write)."""
    for k in range(len(log._segs)):
        for off, n, s in log._records(k):
            if s == seq:
                a = (log._seg0 + log._segs[k][0]) * dev.block_size + off + at
                dev._file.seek(a)
                byte = dev._file.read(1)[0]
                dev._file.seek(a)
                dev._file.write(bytes([byte ^ 0x10]))
                return
    raise AssertionError("record %d not on flash" % seq)


def test_ack_needs_only_the_acknowledged_record():
    dev = _dev()
    log = tl.TripLog(dev, RID)
    for s in range(1, 81):
        log.append(gen(s))
    assert len(log._segs) >= 5
    first2 = log._segs[1][2]  # the first record of the second segment
    mid3 = log._segs[2][2] + 2  # a record in the middle of the third segment
    last4 = log._segs[4][2] - 1  # the last record of the fourth segment
    links = chain_table(81)
    for s in (first2, mid3 + 1, mid3 + 2, last4):
        _damage(dev, log, s)
    free = log.free_bytes
    # the record after the acknowledged one is unreadable: the link comes from the record itself
    log.ack(first2 - 1)
    assert log.ack_seq == first2 - 1 and log._ack_link == links[first2 - 1]
    assert log.free_bytes == free + 4096 - tl.SEG_HEADER  # the first segment is reclaimed
    log.ack(mid3)
    assert log._ack_link == links[mid3] and log.free_bytes == free + 2 * (4096 - tl.SEG_HEADER)
    # records mid3 + 1 and mid3 + 2 both unreadable: nothing to compute the link from
    try:
        log.ack(mid3 + 1)
        raise AssertionError("acknowledged without the link")
    except tl.LogError:
        pass
    assert log.ack_seq == mid3
    # record last4 itself is unreadable: the next record carries the link after it
    log.ack(last4)
    assert log._ack_link == links[last4]
    dev = dev.revive()
    log = tl.TripLog(dev, RID)
    assert (log.ack_seq, log.last_seq) == (last4, 80) and log._ack_link == links[last4]
    got = list(records(log, 0))
    assert [tl.decode(r)["seq"] for r in got] == list(range(last4 + 1, 81))
    tl.verify_chain(links[last4], got, prev_seq=last4)
    assert log.append(gen(81)) == 81
    tl.verify_chain(links[80], log.read(81, 2000), prev_seq=80)
    dev.close()


def _blank(dev, block):
    buf = bytearray(256)
    for off in range(0, dev.block_size, 256):
        dev.readblocks(block, buf, off)
        if buf != b"\xff" * 256:
            return False
    return True


def test_ack_erases_nothing_and_housekeeping_erases_a_bounded_number():
    dev = _dev(64)  # 256 KiB: 62 segments
    log = tl.TripLog(dev, RID)
    s = 0
    while log.state != "full":
        s += 1
        log.append(gen(s))
    assert len(log._segs) == 62
    # a full log: nothing ahead to erase but the spare ack block, which the first ack uses
    assert log.housekeeping(4) == 0
    e = dev.erases
    log.ack(s - 1)  # everything but the tail segment is reclaimed
    assert dev.erases == e and log.state == "ok" and len(log._segs) == 1
    left = 62  # the 61 reclaimed segments and the ack block the watermark left
    calls = 0
    while left:
        e = dev.erases
        now = log.housekeeping(max_erases=4)
        assert dev.erases - e == min(4, left) and now == left - min(4, left), (left, now)
        left = now
        calls += 1
    assert calls == 16
    e = dev.erases
    assert log.housekeeping(4) == 0 and dev.erases == e  # nothing left: no flash access
    for i in range(log._nseg):
        if i != log._segs[0][0]:
            assert _blank(dev, log._seg0 + i), i
    # the next 61 segments open without an erase in the tap
    e = dev.erases
    while len(log._segs) < 62:
        s += 1
        log.append(gen(s))
    assert dev.erases == e
    # reclaimed but not yet erased: the append that reaches the segment erases it itself
    acked = s - 1
    log.ack(acked)
    assert dev.erases == e
    assert log.housekeeping(1) == 60
    while len(log._segs) < 3:
        e = dev.erases
        s += 1
        log.append(gen(s))
        assert dev.erases - e <= 1
    # a reboot between the watermark and the erases: the reclaimed segments are still reclaimed
    dev = dev.revive()
    log = tl.TripLog(dev, RID)
    assert log.ack_seq == acked and len(log._segs) == 3
    assert log.housekeeping(100) == 0 and dev.erases == 59 + 1  # and the spare ack block
    assert [tl.decode(r)["seq"] for r in records(log, 0)] == list(range(acked + 1, s + 1))
    dev.close()


def _cut_next_op(dev):
    dev.cut_after = dev.ops


def test_after_a_boot_nothing_is_written_over_weak_cells():
    dev = WeakCellDev(8)
    log = tl.TripLog(dev, RID)
    for s in range(1, 6):
        log.append(gen(s))
    log.ack(1)
    _cut_next_op(dev)
    try:
        log.append(dict(gen(6), raw=b"torn"))
        raise AssertionError("no power cut")
    except OSError:
        pass
    # at boot the interrupted record reads 0xFF: the tail looks clean, but it is not used again
    dev = dev.revive()
    log = tl.TripLog(dev, RID)
    assert (log.last_seq, log.state) == (5, "ok") and len(log._segs) == 1
    e, p = dev.erases, dev.programs
    assert log.append(gen(6)) == 6
    # a fresh segment, erased first: a blank-looking block may hold an interrupted erase or header
    assert len(log._segs) == 2 and (dev.erases - e, dev.programs - p) == (1, 2)
    while log.housekeeping(4):
        pass
    log.ack(2)
    _cut_next_op(dev)
    try:
        log.ack(3)  # the entry after ack 2's, in the same block
        raise AssertionError("no power cut")
    except OSError:
        pass
    dev = dev.revive()
    log = tl.TripLog(dev, RID)
    assert log.ack_seq == 2
    e = dev.erases
    log.ack(4)  # into the other ack block, erased first, not after the interrupted entry
    assert dev.erases - e == 1
    dev.settle()  # the record and the ack entry that the cuts interrupted become whole
    dev = dev.revive()
    log = tl.TripLog(dev, RID)
    # the returned record 6 is the one that counts: the torn one lies beyond what the old tail
    # segment may hold (the next segment starts at 6)
    assert (log.ack_seq, log.last_seq) == (4, 6), (log.ack_seq, log.last_seq)
    links = chain_table(6)
    assert log.read(0, 2000) == [tl.encode(gen(s), s, RID, links[s - 1]) for s in (5, 6)]
    dev.close()


def test_a_damaged_record_in_the_tail_keeps_the_numbers_after_it():
    dev = _dev()
    log = tl.TripLog(dev, RID)
    for s in range(1, 13):
        log.append(gen(s))
    assert len(log._segs) == 1
    _damage(dev, log, 6)  # flash wear after the write, before a boot
    dev = dev.revive()
    log = tl.TripLog(dev, RID)
    # the scan steps over record 6: 7..12 stay readable and their numbers taken
    assert log.last_seq == 12
    got = list(records(log, 0))
    assert [tl.decode(r)["seq"] for r in got] == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]
    links = chain_table(13)
    try:  # the depot sees the loss where it is
        tl.verify_chain(links[0], got, prev_seq=0)
        raise AssertionError("gap not seen")
    except tl.ChainError as e:
        assert e.index == 5
    assert log.append(gen(13)) == 13
    log.ack(6)  # the link after 6 comes from what record 7 commits to
    assert log._ack_link == links[6]
    dev = dev.revive()
    log = tl.TripLog(dev, RID)
    assert (log.ack_seq, log.last_seq) == (6, 13)
    tl.verify_chain(links[6], list(records(log, 0)), prev_seq=6)
    # two damaged records in a row: the scan stops there, as before
    _damage(dev, log, 8)
    _damage(dev, log, 9)
    log = tl.TripLog(dev, RID)
    assert [tl.decode(r)["seq"] for r in records(log, 0)] == [7, 13]
    dev.close()
