"""The signed envelope: sealed on the host, checked on MicroPython, every refusal reason."""
import pytest

from host_tools.common import ecsign, signedfile
from mpharness import run_mp
from validator import signedfile as fmt

CHECK = """
import sys
from validator import signedfile as sf
path, kind, kid, pub = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), bytes.fromhex(sys.argv[4])
until = int(sys.argv[5])
reason, h = sf.verify_file(path, {kid: (pub, until)}, kind, now=1000)
print(reason, h.version if h else -1)
"""


@pytest.fixture(scope="module")
def key():
    return ecsign.new_key()


def check(tmp_path, data, key, kind=fmt.DENYLIST, kid=7, until=0):
    path = tmp_path / "f.fvs"
    path.write_bytes(data)
    pub = ecsign.public_bytes(key).hex()
    return run_mp(CHECK, args=[path, kind, kid, pub, until]).split()


def test_good_file_verifies_on_micropython(tmp_path, key):
    data = signedfile.seal(fmt.DENYLIST, 42, b"x" * 5000, key, 7)
    assert check(tmp_path, data, key) == ["OK", "42"]


def test_every_flipped_byte_is_refused(tmp_path, key):
    data = bytearray(signedfile.seal(fmt.DENYLIST, 42, b"body!", key, 7))
    expect = {}
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        got = check(tmp_path, bytes(bad), key)[0]
        assert got != "OK", "flip at byte %d accepted" % i
        expect.setdefault(got, i)
    assert {"MALFORMED", "BAD_SIGNATURE", "UNKNOWN_KEY", "WRONG_KIND"} <= set(expect)


def test_refusals(tmp_path, key):
    data = signedfile.seal(fmt.DENYLIST, 1, b"abc", key, 7)
    other = ecsign.new_key()
    assert check(tmp_path, data, other)[0] == "BAD_SIGNATURE"
    assert check(tmp_path, data, key, kid=8)[0] == "UNKNOWN_KEY"
    assert check(tmp_path, data, key, kind=fmt.CONFIG)[0] == "WRONG_KIND"
    assert check(tmp_path, data, key, until=999)[0] == "KEY_EXPIRED"
    assert check(tmp_path, data[:-1], key)[0] == "MALFORMED"
    assert check(tmp_path, data + b"\0", key)[0] == "MALFORMED"
    assert check(tmp_path, b"", key)[0] == "MALFORMED"
