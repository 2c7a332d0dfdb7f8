# The trip log on the simulated flash: records, reading, the ack watermark, reclaiming, the full log,
# reboots, tampering, keyed chains and flash that was never erased.
# (the trip log first: compiling it from source needs the largest blocks of a 110 KB heap)
from validator import triplog as tl

import os

import flashdev
from mpt_triplog_work import RID, gen, records

KEY = b"per-reader log key 32 bytes long"


def _dev(blocks=8):
    return flashdev.FlashDev(blocks)


def test_append_then_read_returns_the_same_fields():
    dev = _dev()
    log = tl.TripLog(dev, RID)
    assert (log.first_seq, log.last_seq, log.ack_seq, log.pending) == (1, 0, 0, 0)
    assert log.state == "ok" and log.free_bytes == log.capacity == 6 * (4096 - tl.SEG_HEADER)
    for s in range(1, 21):
        assert log.append(gen(s)) == s
    assert (log.first_seq, log.last_seq, log.pending) == (1, 20, 20)
    got = list(records(log, 1))
    assert len(got) == 20
    for s, raw in enumerate(got, 1):
        d = tl.decode(raw)
        assert d["seq"] == s and d["reader_id"] == RID and d["version"] == 1 and not d["keyed"]
        for k, v in gen(s).items():
            assert d[k] == v, (s, k)
    link, seq = tl.verify_chain(tl.genesis(RID), got, prev_seq=0)
    assert seq == 20 and link == tl.link(got[-1])
    rec = gen(21)
    rec["decision"] = True  # as policy.Decision.accepted gives it
    assert tl.decode(log.read(log.append(rec), 1000)[0])["decision"] == 1
    dev.close()


def test_one_program_per_tap_and_no_erase_in_the_tap():
    dev = _dev()
    log = tl.TripLog(dev, RID)
    tap_erases = 0
    for s in range(1, 41):
        log.housekeeping(1)  # the reader's idle loop, between taps
        e, p = dev.erases, dev.programs
        log.append(gen(s))
        tap_erases += dev.erases - e
        # one program per record, plus one for the header when the record opens a segment
        assert 1 <= dev.programs - p <= 2
    assert tap_erases == 0 and dev.erases >= 3
    dev.close()


def test_read_pages_by_max_bytes_and_from_seq():
    dev = _dev()
    log = tl.TripLog(dev, RID)
    for s in range(1, 31):
        log.append(gen(s))
    first = log.read(1, 1000)
    assert first and sum(len(r) for r in first) <= 1000
    assert [tl.decode(r)["seq"] for r in first] == list(range(1, len(first) + 1))
    # a page smaller than a record still makes progress: exactly one record
    assert [tl.decode(r)["seq"] for r in log.read(7, 10)] == [7]
    assert [tl.decode(r)["seq"] for r in log.read(25, 1 << 16)] == list(range(25, 31))
    assert log.read(31, 1 << 16) == [] and log.read(1000, 100) == []
    assert [tl.decode(r)["seq"] for r in records(log, 0, chunk=700)] == list(range(1, 31))
    dev.close()


def test_ack_watermark_survives_reboot_and_hides_acked_records():
    dev = _dev()
    log = tl.TripLog(dev, RID)
    for s in range(1, 31):
        log.append(gen(s))
    log.ack(12)
    assert (log.ack_seq, log.first_seq, log.pending) == (12, 13, 18)
    log.ack(5)  # an older ack changes nothing
    assert log.ack_seq == 12
    try:
        log.ack(31)
        raise AssertionError("ack beyond the last record accepted")
    except ValueError:
        pass
    assert tl.decode(log.read(0, 100)[0])["seq"] == 13
    dev = dev.revive()
    log = tl.TripLog(dev, RID)
    assert (log.ack_seq, log.last_seq) == (12, 30)
    got = list(records(log, 0))
    assert [tl.decode(r)["seq"] for r in got] == list(range(13, 31))
    # the depot continues the chain from what it already holds: the link after record 12
    prev = tl.genesis(RID)
    for s in range(1, 13):
        prev = tl.link(tl.encode(gen(s), s, RID, prev))
    tl.verify_chain(prev, got, prev_seq=12)
    log.ack(30)
    assert log.pending == 0 and log.read(0, 1 << 16) == []
    dev.close()


def test_full_log_refuses_without_overwriting_then_ack_reclaims():
    dev = _dev(4)  # 2 segments
    log = tl.TripLog(dev, RID, warn_free=3000)
    states = []
    seq = 0
    big = {"time": 1, "decision": 1, "reason": 0, "kind": "qr", "raw": b"R" * 400}
    while True:
        states.append(log.state)
        if log.state == "full":
            break
        seq = log.append(big)
    assert states[0] == "ok" and "nearly_full" in states and states[-1] == "full"
    assert states.index("nearly_full") < len(states) - 1
    ops = dev.ops
    try:
        log.append({"time": 1, "decision": 0, "reason": 10, "raw": b"x" * tl.MAX_RAW})
        raise AssertionError("largest record appended into a full log")
    except tl.LogFull:
        pass
    assert dev.ops == ops  # nothing written by the refused append
    # smaller records still fill what is left of the tail, then they are refused too
    while True:
        try:
            seq = log.append(big)
        except tl.LogFull:
            break
        ops = dev.ops
    assert dev.ops == ops and log.state == "full"
    assert [tl.decode(r)["seq"] for r in records(log, 0)] == list(range(1, seq + 1))
    log.ack(seq // 2)
    assert log.state != "full" and log.free_bytes >= 4096 - tl.SEG_HEADER
    nxt = log.append(big)
    assert nxt == seq + 1
    dev = dev.revive()
    log = tl.TripLog(dev, RID)
    assert log.last_seq == nxt and log.ack_seq == seq // 2
    assert [tl.decode(r)["seq"] for r in records(log, 0)] == list(range(seq // 2 + 1, nxt + 1))
    dev.close()


def test_reclaiming_rounds_the_ring_and_spreads_erases():
    blocks = 8
    dev = _dev(blocks)
    log = tl.TripLog(dev, RID)
    erases = [0] * blocks
    orig = dev.ioctl

    def ioctl(op, arg):
        if op == 6:
            erases[arg] += 1
        return orig(op, arg)

    dev.ioctl = ioctl
    for s in range(1, 1201):
        log.append(gen(s))
        if s % 40 == 0:
            log.ack(s - 5)
            assert log.state == "ok"
            while s % 80 == 0 and log.housekeeping(2):  # else the appends erase on demand
                pass
    seg = erases[tl.META_BLOCKS:]
    assert sum(seg) >= 20 and max(seg) - min(seg) <= 2, seg
    assert log.free_bytes > log.capacity // 2
    dev.close()


def test_sequence_continues_over_many_reboots_and_full_reclaim():
    dev = _dev(6)
    seq = 0
    prev = tl.genesis(RID)
    for boot in range(150):
        log = tl.TripLog(dev, RID)
        assert log.last_seq == seq, (boot, log.last_seq, seq)
        for j in range(boot % 4):
            s = log.append(gen(seq + 1))
            assert s == seq + 1
            seq = s
        if boot % 3 == 2:  # each boot's first record opens a segment: 4 hold three boots' records
            for r in records(log, 0):
                prev, _ = tl.verify_chain(prev, [r], prev_seq=tl.decode(r)["seq"] - 1)
            log.ack(seq)  # everything acknowledged: only the watermark remembers the sequence
            assert log.pending == 0
        dev = dev.revive()
    log = tl.TripLog(dev, RID)
    assert log.last_seq == seq > 200
    s = log.append(gen(seq + 1))
    got = list(records(log, 0))
    assert s == seq + 1 and tl.decode(got[-1])["seq"] == s
    tl.verify_chain(prev, got, prev_seq=log.ack_seq)
    dev.close()


def test_ack_entries_alternate_between_two_blocks():
    dev = _dev(6)
    log = tl.TripLog(dev, RID)
    per_block = 4096 // tl.ACK_SIZE
    for s in range(1, 3 * per_block + 10):
        log.append({"time": s, "decision": 0, "reason": 10})
        log.ack(s)
        if s % 97 == 0:
            dev = dev.revive()
            log = tl.TripLog(dev, RID)
            assert log.ack_seq == s and log.last_seq == s
    dev = dev.revive()
    log = tl.TripLog(dev, RID)
    assert log.ack_seq == log.last_seq == 3 * per_block + 9
    dev.close()


def test_tampering_in_the_middle_breaks_the_chain():
    dev = _dev()
    log = tl.TripLog(dev, RID)
    for s in range(1, 11):
        log.append(gen(s))
    got = list(records(log, 0))
    g = tl.genesis(RID)
    tl.verify_chain(g, got, prev_seq=0)
    # a removed record
    try:
        tl.verify_chain(g, got[:4] + got[5:], prev_seq=0)
        raise AssertionError("removed record not detected")
    except tl.ChainError as e:
        assert e.index == 4
    # an altered record with a recomputed checksum (a forger who knows the format)
    d = tl.decode(got[4])
    d["fare"] += 1
    forged = tl.encode(d, d["seq"], RID, d["prev_link"])
    assert tl.decode(forged)["fare"] == d["fare"]
    try:
        tl.verify_chain(g, got[:4] + [forged] + got[5:], prev_seq=0)
        raise AssertionError("altered record not detected")
    except tl.ChainError as e:
        assert e.index == 5
    # reordered records
    try:
        tl.verify_chain(g, got[:3] + [got[4], got[3]] + got[5:], prev_seq=0)
        raise AssertionError("reordered records not detected")
    except tl.ChainError as e:
        assert e.index == 3
    # a byte flipped on flash: the checksum drops it on reading, the gap shows
    bad = bytearray(got[4])
    bad[30] ^= 0x40
    assert tl.chain_ok(tl.decode(got[3])["link"], bad) is None
    dev.close()


def test_keyed_chain_needs_the_key():
    dev = _dev()
    log = tl.TripLog(dev, RID, key=KEY)
    for s in range(1, 6):
        log.append(gen(s))
    got = list(records(log, 0))
    assert all(tl.decode(r)["keyed"] for r in got)
    assert tl.decode(got[0])["link"] is None and tl.decode(got[0], KEY)["link"] == tl.link(got[0], KEY)
    link, _ = tl.verify_chain(tl.genesis(RID), got, key=KEY, prev_seq=0)
    assert tl.chain_ok(tl.genesis(RID), got[0]) is None  # no key: a keyed record does not pass
    assert tl.chain_ok(tl.genesis(RID), got[0], b"another key") != tl.chain_ok(tl.genesis(RID), got[0], KEY)
    # a forger who alters record 3 and re-chains the records after it: without the reader's key
    # the links come out wrong (an unkeyed chain could be redone this way by anyone)
    def rechain(key):
        out = got[:2]
        prev = tl.decode(got[1], KEY)["link"]
        for i in range(2, 5):
            d = tl.decode(got[i], KEY)
            if i == 2:
                d["fare"] += 1000
            r = tl.encode(d, d["seq"], RID, prev, key=key)
            prev = tl.link(r, key)
            out.append(r)
        return out

    try:
        tl.verify_chain(tl.genesis(RID), rechain(b"guessed key"), key=KEY, prev_seq=0)
        raise AssertionError("forged keyed record accepted")
    except tl.ChainError as e:
        assert e.index == 3
    tl.verify_chain(tl.genesis(RID), rechain(KEY), key=KEY, prev_seq=0)  # the forger needs the key
    # reopening continues the keyed chain; opening without the key is refused
    dev = dev.revive()
    log = tl.TripLog(dev, RID, key=KEY)
    assert log.append(gen(6)) == 6
    tl.verify_chain(link, log.read(6, 1000), key=KEY, prev_seq=5)
    dev = dev.revive()
    try:
        tl.TripLog(dev, RID)
        raise AssertionError("keyed log opened without the key")
    except tl.LogError:
        pass
    dev.close()


def test_other_readers_flash_is_refused():
    dev = _dev()
    tl.TripLog(dev, RID).append(gen(1))
    try:
        tl.TripLog(dev, RID + 1)
        raise AssertionError("opened another reader's log")
    except tl.LogError:
        pass
    tl.wipe(dev)
    assert tl.TripLog(dev, RID + 1).last_seq == 0
    dev.close()


def test_bad_fields_write_nothing():
    dev = _dev()
    log = tl.TripLog(dev, RID)
    log.append(gen(1))
    ops = dev.ops
    bad = [("kind", "card"), ("cred_id", b"short"), ("account", -1), ("account", 1 << 64),
           ("time", 1 << 32), ("reason", 256), ("raw", b"x" * (tl.MAX_RAW + 1)), ("fare", "2"),
           ("raw", "text")]
    for key, value in bad:
        rec = gen(2)
        rec[key] = value
        try:
            log.append(rec)
            raise AssertionError("accepted %s=%r" % (key, value))
        except ValueError:
            pass
    assert dev.ops == ops and log.last_seq == 1
    assert log.append(gen(2)) == 2
    dev.close()


def test_flash_full_of_garbage_is_usable():
    path = "/tmp/mpt_triplog_garbage_%s.img" % "".join("%02x" % b for b in os.urandom(6))
    with open(path, "wb") as f:
        for i in range(6 * 16):
            f.write(os.urandom(256))
    dev = flashdev.FlashDev(6, path=path)
    log = tl.TripLog(dev, RID)
    assert log.last_seq == 0 and log.ack_seq == 0
    for s in range(1, 40):
        log.append(gen(s))
    log.ack(10)
    dev = dev.revive()
    log = tl.TripLog(dev, RID)
    assert (log.last_seq, log.ack_seq) == (39, 10)
    assert [tl.decode(r)["seq"] for r in records(log, 0)] == list(range(11, 40))
    dev.close(delete=True)


def test_torn_record_is_dropped_and_the_next_goes_to_a_clean_segment():
    dev = _dev()
    log = tl.TripLog(dev, RID)
    for s in range(1, 4):
        log.append(gen(s))
    dev.cut_after = dev.ops
    dev.torn = True
    try:
        log.append(gen(4))
        raise AssertionError("no power cut")
    except OSError:
        pass
    dev = dev.revive()
    log = tl.TripLog(dev, RID)
    assert log.last_seq == 3 and log.free_bytes == 5 * (4096 - tl.SEG_HEADER)
    dev.reset_counters()
    assert log.append(gen(4)) == 4
    assert dev.programs == 2  # a new segment header, then the record
    dev = dev.revive()
    log = tl.TripLog(dev, RID)
    got = list(records(log, 0))
    assert [tl.decode(r)["seq"] for r in got] == [1, 2, 3, 4]
    tl.verify_chain(tl.genesis(RID), got, prev_seq=0)
    dev.close()

