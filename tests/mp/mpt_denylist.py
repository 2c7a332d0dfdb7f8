# The deny list on MicroPython without host-made files: no list, hostile lookups, junk files,
# a corrupt installed list, the leftover of an interrupted update. (Signed lists: see
# tests/firmware/test_denylist_mp.py.)
import os

import flashdev
from validator import denylist as dl

KEYS = {1: (b"\x02" + b"\x11" * 32, 0)}
NOW = 1750000000


def _fresh(mnt="/t", blocks=32):
    dev = flashdev.FlashDev(blocks)
    flashdev.mount(dev, mnt)
    return dev


def _done(dev, mnt="/t"):
    flashdev.umount(mnt)
    dev.close()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_no_list_denies_nobody_and_reports_version_zero():
    dev = _fresh()
    lst = dl.DenyList("/t/a/deny")      # creates the directories
    assert "deny" in os.listdir("/t/a")
    assert (lst.version, lst.count, lst.built_at, lst.error) == (0, 0, 0, None)
    assert lst.denied_account(1, NOW) is False
    assert lst.denied_credential(b"\x00" * 16, NOW) is False
    _done(dev)


def test_hostile_lookup_arguments_are_not_denied_and_never_raise():
    dev = _fresh()
    lst = dl.DenyList("/t/deny")
    for a in (-1, 1 << 64, 1 << 100, "12", None, 1.5, b"\x00" * 8, True):
        assert lst.denied_account(a, NOW) is False
    for c in (b"", b"\x00" * 15, b"\x00" * 17, None, 5, "0" * 16):
        assert lst.denied_credential(c, NOW) is False
    assert lst.denied_credential(bytearray(16), NOW) is False
    _done(dev)


def test_junk_files_are_refused_with_a_reason():
    dev = _fresh()
    lst = dl.DenyList("/t/deny")
    cases = [
        (b"", dl.MALFORMED),
        (b"FVS1", dl.MALFORMED),
        (os.urandom(300), dl.MALFORMED),
        # a well-formed header of kind "config": wrong kind
        (b"FVS1\x04\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00" + b"\x00" * 64,
         "WRONG_KIND"),
        # a deny list from an unknown operator key
        (b"FVS1\x02\x00\x09\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00" + b"\x00" * 64,
         "UNKNOWN_KEY"),
        # a delta signed by the known key id, but the signature is zeros
        (b"FVS1\x03\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00" + b"\x00" * 64,
         "BAD_SIGNATURE"),
    ]
    for data, want in cases:
        _write("/t/in.fvs", data)
        assert lst.install("/t/in.fvs", KEYS, NOW) == want, (data[:8], want)
        assert lst.version == 0
    assert lst.install("/t/missing.fvs", KEYS, NOW) == dl.MALFORMED
    _done(dev)


def test_corrupt_installed_list_is_ignored_not_fatal():
    dev = _fresh()
    os.mkdir("/t/deny")
    for junk in (b"", b"FVS1\x02" + b"\xff" * 200, os.urandom(1000)):
        _write("/t/deny/" + dl.LIST_FILE, junk)
        lst = dl.DenyList("/t/deny")
        assert lst.version == 0 and lst.count == 0
        assert lst.error == dl.MALFORMED
        assert lst.denied_account(5, NOW) is False
    _done(dev)


def test_leftover_of_an_interrupted_update_is_removed():
    dev = _fresh()
    os.mkdir("/t/deny")
    _write("/t/deny/" + dl.TMP_FILE, b"half a merged list")
    dl.DenyList("/t/deny")
    assert os.listdir("/t/deny") == []
    _done(dev)
