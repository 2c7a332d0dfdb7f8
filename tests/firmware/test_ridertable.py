"""validator.ridertable against a plain reference of its documented rule (docs/decisions.md,
"Bounds"): a new key in a full table drops every entry no longer needed (`until` below the
cutoff); if there is none, the one used least recently (oldest `last`, ties: lowest key). Runs the
firmware module on CPython; the tables' cap goes above ridertable.ORDER, so that the remembered
order of a scan is used, kept and thrown away."""
import random
import struct
import sys
from pathlib import Path

from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware"))
from validator import ridertable  # noqa: E402

FMT = "<III"                       # value: last, until, a payload
KEYS = [struct.pack(">Q", k * 0x9E3779B97F4A7C15 % (1 << 64)) for k in range(60)]


class Reference:
    def __init__(self, cap):
        self.cap = cap
        self.d = {}

    def put(self, key, val, cutoff):
        dropped = (0, 0)
        if key not in self.d and len(self.d) >= self.cap:
            gone = [k for k, v in self.d.items() if v[1] < cutoff]
            if gone:
                dropped = (len(gone), 0)
            else:
                gone = [min(self.d, key=lambda k: (self.d[k][0], k))]
                dropped = (1, 1)
            for k in gone:
                del self.d[k]
        self.d[key] = val
        return dropped


def contents(t):
    return {bytes(t.mv[i * t.r:i * t.r + 8]): struct.unpack_from(FMT, t.buf, i * t.r + 8)
            for i in range(t.n)}


op = st.one_of(
    st.tuples(st.just("put"), st.integers(0, len(KEYS) - 1), st.integers(0, 40),
              st.integers(0, 60), st.integers(0, 40)),   # key, last, until, cutoff
    st.tuples(st.just("prune"), st.integers(0, 60)),
    st.tuples(st.just("reload")))


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 20), st.booleans(), st.lists(op, max_size=120))
def test_table_follows_the_reference(cap, until_is_last, ops):
    t = ridertable.Table(FMT, cap, 0, 0 if until_is_last else 4)
    ref = Reference(cap)
    for o in ops:
        if o[0] == "put":
            _, k, last, until, cutoff = o
            if until_is_last:
                until = last
            val = (last, until, k)
            assert t.put(KEYS[k], val, cutoff) == ref.put(KEYS[k], val, cutoff)
        elif o[0] == "prune":
            t.prune(lambda v: v[1] >= o[1])
            ref.d = {k: v for k, v in ref.d.items() if v[1] >= o[1]}
        else:  # the records written around put, as a snapshot load does
            raw = bytes(t.mv[:t.n * t.r])
            n = t.n
            t.clear()
            t.mv[:len(raw)] = raw
            t.n = n
        assert contents(t) == ref.d


def test_seeded_random_puts_follow_the_reference():
    # (uniform values: more full tables meeting a later cutoff than hypothesis's draws give)
    for seed in range(300):
        rnd = random.Random(seed)
        cap = rnd.randint(1, 20)
        until_is_last = rnd.randint(0, 1)
        t = ridertable.Table(FMT, cap, 0, 0 if until_is_last else 4)
        ref = Reference(cap)
        for _ in range(100):
            k, last, until, cutoff = (rnd.randint(0, len(KEYS) - 1), rnd.randint(0, 40),
                                      rnd.randint(0, 60), rnd.randint(0, 40))
            val = (last, last if until_is_last else until, k)
            assert t.put(KEYS[k], val, cutoff) == ref.put(KEYS[k], val, cutoff), "seed %d" % seed
            assert contents(t) == ref.d, "seed %d" % seed


def test_a_full_table_of_needed_entries_drops_one_at_a_time_in_order():
    t = ridertable.Table(FMT, 30, 0, 4)
    for k in range(30):  # last: 100 + k, except three at the same time (ties: lowest key)
        t.put(KEYS[k], (100 + k if k not in (5, 6, 7) else 90, 1000, k))
    order = sorted([KEYS[5], KEYS[6], KEYS[7]]) + [KEYS[k] for k in range(30) if k not in (5, 6, 7)]
    gone = []
    for j in range(25):  # more drops than one scan remembers
        before = set(contents(t))
        assert t.put(KEYS[30 + j], (500 + j, 1000, 0), 0) == (1, 1)
        gone += list(before - set(contents(t)))
    assert gone == order[:25]


def test_expired_entries_go_first_and_all_at_once():
    t = ridertable.Table(FMT, 10, 0, 4)
    for k in range(10):  # 3 of them needed until 50 only; the oldest (k = 0) until 1000
        t.put(KEYS[k], (10 + k, 50 if k in (2, 5, 8) else 1000, k))
    assert t.put(KEYS[20], (30, 1000, 0), 51) == (3, 0)
    assert sorted(contents(t)) == sorted(KEYS[k] for k in (0, 1, 3, 4, 6, 7, 9, 20))
    assert t.put(KEYS[21], (31, 1000, 0), 51) == (0, 0)  # room left
