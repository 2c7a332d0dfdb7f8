"""The strict CBOR decoder (and tiny encoder) against cbor2, on CPython with hypothesis and on the
MicroPython binary with the same inputs."""
import json

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mpharness import run_mp
from validator import cbor

U64 = 2**64 - 1

# The values our formats use: integers up to 64 bits, byte and text strings, arrays, maps with
# integer or text keys, false/true/null.
scalars = (st.integers(min_value=-U64 - 1, max_value=U64) | st.binary(max_size=80)
           | st.text(max_size=20) | st.booleans() | st.none())
keys = st.integers(min_value=-U64 - 1, max_value=U64) | st.text(max_size=8)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6)
                      | st.dictionaries(keys, inner, max_size=6), max_leaves=25)

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def roomy(data):
    return cbor.decode(data, max_depth=64, max_items=10_000, max_len=1 << 20)


@SETTINGS
@given(values, st.booleans())
def test_everything_cbor2_encodes_decodes_the_same(v, canonical):
    data = cbor2.dumps(v, canonical=canonical)
    assert roomy(data) == v


@SETTINGS
@given(values)
def test_our_encoder_matches_cbor2(v):
    data = cbor.encode(v)
    assert data == cbor2.dumps(v)
    assert cbor2.loads(data) == v


@SETTINGS
@given(values)
def test_every_truncation_is_refused(v):
    data = cbor2.dumps(v)
    for n in range(len(data)):
        with pytest.raises(cbor.CBORError):
            roomy(data[:n])
    with pytest.raises(cbor.CBORError):
        roomy(data + b"\x00")


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_give_a_value_cbor2_agrees_with_or_cborerror(data):
    try:
        v = roomy(data)
    except cbor.CBORError:
        return
    assert cbor2.loads(data) == v  # whatever we accept, the reference reads the same way


@SETTINGS
@given(values, st.data())
def test_mutated_encodings_never_raise_anything_else(v, data):
    raw = bytearray(cbor2.dumps(v))
    if raw:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
    try:
        got = roomy(bytes(raw))
    except cbor.CBORError:
        return
    assert cbor2.loads(bytes(raw)) == got


REFUSED = {
    "indefinite bytes": "5f4101ff",
    "indefinite text": "7f6161ff",
    "indefinite array": "9f01ff",
    "indefinite map": "bf0101ff",
    "break": "ff",
    "half float": "f93c00",
    "single float": "fa3f800000",
    "double float": "fb3ff0000000000000",
    "undefined": "f7",
    "simple value": "f820",
    "simple 16": "f0",
    "tag": "c11a5f000000",
    "bignum tag": "c249010000000000000000",
    "reserved info 28": "1c",
    "non-canonical uint 1 byte": "1805",
    "non-canonical uint 2 bytes": "190010",
    "non-canonical uint 4 bytes": "1a0000ffff",
    "non-canonical uint 8 bytes": "1b00000000ffffffff",
    "non-canonical negint": "3800",
    "non-canonical length": "580141",
    "non-canonical array count": "980101",
    "duplicate key": "a201020103",
    "duplicate text key": "a2616101616102",
    "bytes key": "a1410101",
    "array key": "a1800101"[:6],
    "bool key": "a1f501",
    "trailing byte": "0100",
    "empty": "",
    "huge bytes length": "5bffffffffffffffff",
    "huge array count": "9bffffffffffffffff",
    "array count beyond input": "9a0000ffff01",
    "map count beyond input": "b9ffff",
    "bad utf-8": "62c328",
    "utf-8 surrogate": "63eda080",
    "overlong utf-8": "62c0af",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refusals(name):
    with pytest.raises(cbor.CBORError):
        roomy(bytes.fromhex(REFUSED[name]))


def test_limits():
    deep = b"\x81" * 7 + b"\x01"
    with pytest.raises(cbor.CBORError):
        cbor.decode(deep, max_depth=6)
    assert cbor.decode(b"\x81" * 6 + b"\x01", max_depth=6) == [[[[[[1]]]]]]
    many = cbor2.dumps(list(range(20)))
    assert cbor.decode(many, max_items=21) == list(range(20))
    with pytest.raises(cbor.CBORError):
        cbor.decode(many, max_items=20)
    with pytest.raises(cbor.CBORError):
        cbor.decode(cbor2.dumps(b"x" * 100), max_len=100)
    with pytest.raises(cbor.CBORError):
        cbor.decode(b"\x81" * 100_000 + b"\x01")   # no recursion error, no hang
    with pytest.raises(cbor.CBORError):
        cbor.decode("a1")
    with pytest.raises(cbor.CBORError):
        cbor.decode(None)


def test_encoder_refuses_what_it_cannot_write():
    for bad in (2**64, -(2**64) - 1, 1.5, {1, 2}, object()):
        with pytest.raises(cbor.CBORError):
            cbor.encode(bad)


def test_memoryview_and_bytearray_input():
    data = cbor2.dumps({1: b"abc", 2: [1, "x"]})
    assert cbor.decode(memoryview(data)) == cbor.decode(bytearray(data)) == {1: b"abc", 2: [1, "x"]}
    assert type(cbor.decode(memoryview(data))[1]) is bytes


# --- the same decoder on MicroPython ---

MP_DECODE = """
import sys, json
from validator import cbor
cases = json.load(open(sys.argv[1]))
out = []
for h in cases:
    try:
        v = cbor.decode(bytes.fromhex(h), max_depth=64, max_items=10000, max_len=1 << 20)
        out.append(cbor.encode(v).hex())
    except cbor.CBORError:
        out.append(None)
print(json.dumps(out))
"""


def test_micropython_decoder_agrees_with_cpython(tmp_path):
    from hypothesis import find  # noqa: F401  (hypothesis is used below through .example())
    import random
    rng = random.Random(1234)
    cases = [bytes.fromhex(h) for h in REFUSED.values()]
    samples = []

    @settings(max_examples=150, deadline=None, database=None)
    @given(values)
    def collect(v):
        samples.append(v)
    collect()
    for v in samples:
        data = cbor2.dumps(v)
        cases.append(data)
        if data:
            mutated = bytearray(data)
            mutated[rng.randrange(len(data))] = rng.randrange(256)
            cases.append(bytes(mutated))
            cases.append(data[:rng.randrange(len(data))])
    for _ in range(100):
        cases.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([c.hex() for c in cases]))
    got = json.loads(run_mp(MP_DECODE, heap="4m", args=[path]))
    assert len(got) == len(cases)
    accepted = 0
    for data, mp in zip(cases, got):
        try:
            want = roomy(data)
        except cbor.CBORError:
            assert mp is None, data.hex()
            continue
        accepted += 1
        assert mp is not None, data.hex()
        assert cbor2.loads(bytes.fromhex(mp)) == want, data.hex()
    assert accepted >= 150


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12) | st.text(max_size=6).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_text_strings_accept_exactly_valid_utf8(raw):
    data = cbor2.dumps(raw)
    data = bytes([data[0] + 0x20]) + data[1:]  # the same bytes as a text string
    try:
        want = raw.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(cbor.CBORError):
            roomy(data)
    else:
        assert roomy(data) == want
