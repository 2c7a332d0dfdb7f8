"""Link faults across a whole sync, in process (CPython, deterministic clock): for every frame in
both directions, at its boundary and inside it, the cable drops a byte, flips a byte, repeats the
frame (so far), or is cut. Then the depot reconnects and syncs again. Every time, the depot holds
every record exactly once, the reader acknowledged (and so reclaimed) only records the depot had
committed, the pushed file is installed once and the clock is set.

The same faults over real ptys with the reader on MicroPython are sampled in test_sync_e2e.py."""
import os
import shutil

import pytest

from sync_bench import NOW, Bench, opkey, seal  # noqa: F401 (opkey: fixture)
from sync_testreader import RID
from host_tools.depot import depotdb
from validator import signedfile as fmt

RECORDS = 150
KINDS = ("drop", "flip", "dup", "close")


def run_case(tmp_path, opkey, cfg, fault):
    b = Bench(tmp_path, opkey, records=RECORDS)
    acks = []
    real_ack = b.reader.log.ack

    def checked_ack(seq):
        db = depotdb.connect(b.db_path)
        held = db.seqs(RID)
        db.close()
        assert held[-1:] and held[-1] >= seq and len(held) == held[-1], \
            "reader told to reclaim up to %d while the depot holds %r.." % (seq, held[-3:])
        acks.append(seq)
        real_ack(seq)
    b.reader.log.ack = checked_ack
    kw = dict(pushes=[("config", cfg)], set_time=True, ack_every=8 * 1024)
    link = b.link(fault=fault)
    wire = b.wire
    first = b.sync(link=link, **kw)
    second = b.sync(**kw)
    assert second.status == "ok", (fault, second.message)
    db = b.db()
    assert db.seqs(RID) == list(range(1, RECORDS + 1)), fault
    db.close()
    r = b.reader
    assert r.log.ack_seq == RECORDS and acks and acks == sorted(acks)
    assert r.version("config") == 7 and r.installs == [("config", 7)]
    assert r.clock.now() == NOW
    b.dev.close()
    shutil.rmtree(tmp_path)
    return first, wire


@pytest.fixture(scope="module")
def cfg(opkey):
    return seal(opkey, fmt.CONFIG, 7, os.urandom(9000))


@pytest.fixture(scope="module")
def frames(tmp_path_factory, opkey, cfg):
    """Frame end offsets of a clean sync, per direction."""
    first, wire = run_case(tmp_path_factory.mktemp("clean"), opkey, cfg, None)
    assert first.status == "ok"
    return {"up": list(wire.up.ends), "down": list(wire.down.ends)}


def positions(ends):
    """For each frame: its first byte after the leading delimiter, its middle, its last byte."""
    out = []
    start = 0
    for end in ends:
        out += [start + 1, (start + end) // 2, end]
        start = end + 1
    return sorted(set(out))


@pytest.mark.parametrize("direction", ["up", "down"])
@pytest.mark.parametrize("kind", KINDS)
def test_fault_at_every_frame_boundary_and_inside_frames(tmp_path, opkey, cfg, frames, direction, kind):
    pos = positions(frames[direction])
    assert len(frames[direction]) >= 12  # INFO, logs, acks, put, chunks, commit, time
    failed_first = 0
    for i, p in enumerate(pos):
        fault = (kind, p)
        first, wire = run_case(tmp_path / str(i), opkey, cfg,
                               (fault, None) if direction == "up" else (None, fault))
        stream = wire.up if direction == "up" else wire.down
        assert stream.fired, fault
        if first.status != "ok":
            failed_first += 1
            # only a cut cable ends a sync; a lost, damaged or repeated frame is retried in place
            assert kind == "close" and first.status == "no_answer", (fault, first.message)
    print("%s %s: %d fault positions over %d frames, %d first syncs cut short"
          % (direction, kind, len(pos), len(frames[direction]), failed_first))
    if kind == "close":
        assert failed_first >= len(pos) - 3  # a cut near the very end may come after the last answer
