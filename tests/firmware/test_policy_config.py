"""Reader configuration: the host builder (source -> signed file), the CLI, and the file checked and
parsed on MicroPython, with every refusal; the body parser fuzzed with hypothesis."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from clikit import fails
from host_tools import cli
from host_tools.issuing import config_build
from host_tools.common import ecsign, signedfile
from mpharness import run_mp
from validator import cbor
from validator import config as fw
from validator import signedfile as sf

SOURCE = """
line = 12
stop = 3
[rules]
max_code_age = "45s"
clock_skew = 20
passback_window = "10m"
transfer_window = "90m"
sync_window = "3d"
deny_max_age = "96h"
[degraded]
mode = "reject"
max_rides = 2
max_amount = 600
[products]
child = 7
[fares.12]
adult = 200
student = 100
senior = 100
free = 0
child = 50
[fares.5]
adult = 150
"""

LOAD = """
import sys
from validator import signedfile  # first: the verifier is the biggest module to compile
from validator import config
path, kid, pub = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
try:
    c = config.Config.load(path, {kid: (pub, 0)}, now=1750000000)
    d = c.as_dict()
    print("OK", c.version, d["line"], d["max_code_age"], d["transfer_window"], d["degraded"],
          c.fare(1), c.fare(7), c.fare(3))
except config.ConfigError as e:
    print(e.reason)
"""


@pytest.fixture(scope="module")
def key():
    return ecsign.new_key()


def test_source_to_settings():
    d = config_build.settings(__import__("tomllib").loads(SOURCE))
    assert d["line"] == 12 and d["stop"] == 3
    assert (d["max_code_age"], d["clock_skew"], d["passback_window"]) == (45, 20, 600)
    assert (d["transfer_window"], d["sync_window"], d["deny_max_age"]) == (5400, 259200, 345600)
    assert (d["degraded"], d["degraded_max_rides"], d["degraded_max_amount"]) == ("reject", 2, 600)
    assert d["repeat_window"] == 5  # not in the source: the reader's default
    assert d["fares"] == {12: {1: 200, 2: 100, 3: 100, 4: 0, 7: 50}, 5: {1: 150}}


def test_empty_source_is_the_reader_defaults():
    assert config_build.settings({}) == fw.Config().as_dict()


@pytest.mark.parametrize("src, msg", [
    ({"colour": 1}, "unknown setting"),
    ({"rules": {"max_age": 5}}, "unknown rule"),
    ({"rules": {"max_code_age": "5 minutes"}}, "not a duration"),
    ({"rules": {"max_code_age": True}}, "not a duration"),
    ({"degraded": {"mode": "maybe"}}, "mode must be"),
    ({"degraded": {"rides": 1}}, "unknown setting"),
    ({"fares": {"x": {"adult": 1}}}, "a line is a number"),
    ({"fares": {"1": {"pensioner": 1}}}, "unknown product"),
    ({"fares": {"1": {"adult": 1, "1": 2}}}, "given twice"),
    ({"fares": {"1": {"adult": 1.5}}}, "not an integer"),
    ({"fares": {"1": 5}}, "must be a table"),
    ({"line": "12"}, "not an integer"),
])
def test_source_errors(src, msg):
    with pytest.raises(config_build.SourceError, match=msg):
        config_build.settings(src)


@pytest.mark.parametrize("src", [
    {"fares": {"1": {"adult": -1}}},
    {"fares": {"1": {"adult": fw.MAX_FARE + 1}}},
    {"rules": {"max_code_age": "400d"}},
    {"degraded": {"max_rides": 0}},
    {"line": 1 << 32},
    {"fares": {str(i): {"adult": 1} for i in range(fw.MAX_LINES + 1)}},
])
def test_out_of_range_is_caught_before_signing(src):
    with pytest.raises(config_build.SourceError, match="out of the reader's range"):
        config_build.body(src)


def test_signed_file_loads_on_micropython(tmp_path, key):
    src = tmp_path / "reader.toml"
    src.write_text(SOURCE)
    data = config_build.build(config_build.load_source(src), 8, key, 3, created=1749990000)
    h, d = config_build.read(data)
    assert h.kind == sf.CONFIG and h.version == 8 and d["line"] == 12
    path = tmp_path / "config.fvs"
    pub = ecsign.public_bytes(key).hex()

    def load(blob, kid=3, pubkey=pub):
        path.write_bytes(blob)
        return run_mp(LOAD, args=[path, kid, pubkey]).split()

    assert load(data) == ["OK", "8", "12", "45", "5400", "reject", "200", "50", "100"]
    bad = bytearray(data)
    bad[sf.HEADER_SIZE + 10] ^= 1
    assert load(bytes(bad)) == ["BAD_SIGNATURE"]
    assert load(data, kid=4) == ["UNKNOWN_KEY"]
    other = signedfile.seal(sf.KEYRING, 8, config_build.body({}), key, 3)
    assert load(other) == ["WRONG_KIND"]
    garbage = signedfile.seal(sf.CONFIG, 8, cbor.encode({"format": 1, "colour": 1}), key, 3)
    assert load(garbage) == ["MALFORMED"]


def test_json_source_and_cli(tmp_path, key, capsys):
    src = tmp_path / "reader.json"
    src.write_text(json.dumps({"line": 5, "fares": {"5": {"adult": 150, "free": 0}}}))
    pem = tmp_path / "op.pem"
    pem.write_bytes(key.to_pem())
    out = tmp_path / "c.fvs"
    assert cli.main(["config", "build", str(src), "--version", "2", "--key", str(pem),
                     "--key-id", "9", "-o", str(out), "--created", "1749990000"]) == 0
    assert "version 2" in capsys.readouterr().out
    assert cli.main(["config", "show", str(out), "--json", "--operator-key",
                     "9:" + ecsign.public_bytes(key).hex()]) == 0
    shown = capsys.readouterr()
    d = json.loads(shown.out)
    assert "signature: valid, operator key 9" in shown.err
    assert d["line"] == 5 and d["fares"] == {"5": {"1": 150, "4": 0}}
    assert cli.main(["config", "check", str(src)]) == 0
    assert "fares line 5" in capsys.readouterr().out
    src.write_text(json.dumps({"fares": {"5": {"adult": -1}}}))
    assert "out of the reader's range" in fails(capsys, "config", "check", src)
    assert "needs --key-id" in fails(capsys, "config", "build", src, "--version", "2", "--key",
                                     pem, "-o", tmp_path / "x.fvs")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parser_refuses_garbage_cleanly(data):
    try:
        fw.parse(data)
    except fw.ConfigError as e:
        assert e.reason == "MALFORMED"


values = st.recursive(st.one_of(st.integers(-5, 1 << 40), st.text(max_size=8), st.booleans(),
                                st.none(), st.binary(max_size=4)),
                      lambda c: st.lists(c, max_size=4) | st.dictionaries(
                          st.one_of(st.integers(0, 100), st.text(max_size=15)), c, max_size=4),
                      max_leaves=20)
keys = st.sampled_from(sorted(fw.INT_SETTINGS) + ["degraded", "fares", "format", "other"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=6))
def test_parser_on_structured_garbage(d):
    d.setdefault("format", 1)
    try:
        c = fw.parse(cbor.encode(d))
    except fw.ConfigError:
        return
    # whatever it accepted is within the bounds, and survives a round trip
    for k, (default, low, high) in fw.INT_SETTINGS.items():
        assert low <= getattr(c, k) <= high
    assert c.degraded in (fw.REJECT, fw.LIMIT)
    assert fw.parse(fw.encode(c.as_dict())).as_dict() == c.as_dict()


def _from_file(tmp_path, data, buf):
    p = tmp_path / "body.bin"
    p.write_bytes(b"HEAD" + data)
    with open(p, "rb") as f:
        return fw.load_stream(f, 4, len(data), buf, 7)


fare_tables = st.dictionaries(st.integers(0, 70), st.dictionaries(
    st.integers(0, 40), st.integers(0, fw.MAX_FARE + 1), max_size=34), max_size=66)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=200),
    st.dictionaries(keys, values, max_size=6).map(lambda d: cbor.encode(dict(d, format=1))),
    st.fixed_dictionaries({"format": st.just(1), "line": st.integers(0, 70)},
                          optional={"fares": fare_tables, "stop": st.integers(0, 9)}).map(
        cbor.encode)))
def test_the_readers_streaming_load_agrees_with_parse(tmp_path_factory, data):
    """Config.load walks the body on flash through a small buffer and keeps its own line's fares:
    it accepts and refuses exactly what parse() does, with the same settings."""
    tmp = tmp_path_factory.mktemp("w")
    try:
        want = fw.parse(data, 7)
    except fw.ConfigError:
        want = None
    for buf in (bytearray(1024), bytearray(400)):   # (400: still holds any line's table)
        try:
            got = _from_file(tmp, data, buf)
        except fw.ConfigError:
            got = None
        assert (got is None) == (want is None)
        if want is not None:
            d, e = got.as_dict(), want.as_dict()
            own = e["fares"].get(e["line"])
            assert d.pop("fares") == ({e["line"]: own} if own is not None else {})
            e.pop("fares")
            assert d == e and got.version == 7


def test_a_full_fare_table_loads_on_micropython(tmp_path, key):
    """The largest configuration (64 lines of 32 products) loads in the device heap from its
    signed file, walked through the reader's 1 KiB I/O buffer; the reader keeps its own line's
    fares."""
    fares = {line: {p: 100 + p for p in range(fw.MAX_PRODUCTS)} for line in range(fw.MAX_LINES)}
    body = cbor.encode({"format": 1, "line": 63, "fares": fares})
    assert fw.MAX_BODY > len(body) > 4 * 1024
    path = tmp_path / "config.fvs"
    path.write_bytes(signedfile.seal(sf.CONFIG, 9, body, key, 3))
    from mpharness import compiled_tree, device_heap
    code = ("import sys\nfrom validator import config\n"
            "c = config.Config.load(sys.argv[1], {3: (bytes.fromhex(sys.argv[2]), 0)})\n"
            "print(c.version, c.fare(31), len(c.fares))\n")
    heap = device_heap(("validator.config", "validator.signedfile"))
    out = run_mp(code, heap=heap, args=[path, ecsign.public_bytes(key).hex()],
                 path=compiled_tree())
    assert out.split() == ["9", "131", "1"]
