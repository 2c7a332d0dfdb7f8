"""The reader's SyncServer on MicroPython (tests/mp/sync_mp_cases.py), on the precompiled firmware
as a reader runs it, in the simulated reader's heap (the ESP32's 110 KB plus the bytecode's share,
see host_tools/sim/simreader.py). Includes a batch of hostile messages generated here by hypothesis
(the same strategy the CPython test drives the server with)."""
import struct

from hypothesis import given, settings

from mpharness import compiled_tree, run_mp
from sync_mpreader import HEAP
from test_sync import hostile

BATCH = 300


def run_case(name, *args):
    code = "import sync_mp_cases\nsync_mp_cases.%s(%s)\n" % (name, ", ".join(repr(str(a)) for a in args))
    return run_mp(code, heap=HEAP, path=compiled_tree())


def test_whole_session_through_poll():
    run_case("case_whole_session_through_poll")


def test_an_unreadable_record_ends_an_answer():
    run_case("case_an_unreadable_record_ends_an_answer")


def test_hostile_frames_leave_the_reader_as_it_was():
    run_case("case_hostile_frames_leave_the_reader_as_it_was")


def test_the_server_keeps_to_its_buffers():
    run_case("case_the_server_keeps_to_its_buffers")


def test_hostile_batch_from_hypothesis(tmp_path):
    msgs = []

    @settings(max_examples=BATCH, deadline=None, database=None)
    @given(hostile)
    def collect(m):
        msgs.append(m)
    collect()
    path = tmp_path / "hostile.bin"
    path.write_bytes(b"".join(struct.pack(">H", len(m)) + m for m in msgs))
    out = run_case("case_hostile_batch", path)
    assert "messages %d" % len(msgs) in out
    print(out.strip())
