# MicroPython side of the deny-list tests (tests/firmware/test_denylist_mp.py writes the files and runs these
# through mpharness.run_mp): RAM squeeze, sample checks, the power-cut sweep on simulated flash.
# No test functions here; the name only keeps it with its tests.
import gc
import json
import os

import flashdev
from validator import denylist as dl


def load_json(path):
    with open(path) as f:
        return json.load(f)


def operator_keys(spec):
    """{key id: (public key, valid_until)} from the JSON the host wrote."""
    return {int(k): (bytes.fromhex(v[0]), v[1]) for k, v in spec.items()}


def warm_p256():
    # The generator table is set up on the first verification; do it before measuring RAM.
    from validator import p256
    p256._generator()


def squeeze(leave, hole=1024):
    """Fill the heap so that only about `leave` bytes stay free, in holes of `hole` bytes pinned
    apart (boards/unix_sim/heapfrag.py): whatever runs next must fit in pieces that small, as on
    a reader whose heap a long day has cut up. Returns the ballast to keep alive."""
    import heapfrag
    return heapfrag.fragment(hole, leave)


def check_samples(lst, path, now):
    """Every line of the samples file `path` ("a <account> <0|1>" or "c <credential hex> <0|1>")
    answered as expected at `now`; read line by line, so the samples take no heap."""
    bad = []
    n = 0
    with open(path) as f:
        for line in f:
            kind, ident, want = line.split()
            if kind == "a":
                got = lst.denied_account(int(ident), now)
            else:
                got = lst.denied_credential(bytes.fromhex(ident), now)
            n += 1
            if got != (want == "1") and len(bad) < 5:
                bad.append(line.strip())
    assert not bad, "wrong answers: %r" % bad
    return n


def copy_file(src, dst):
    buf = bytearray(512)
    with open(src, "rb") as a:
        with open(dst, "wb") as b:
            while True:
                n = a.readinto(buf)
                if not n:
                    break
                b.write(buf[:n] if n < len(buf) else buf)


MNT = "/dl"
DIR = MNT + "/deny"
INBOX = MNT + "/in.fvs"


def make_golden(golden, blocks, base_file, update_file, keys, now):
    """Flash image with `base_file` installed and `update_file` received (not yet installed;
    None: the update stays on the host filesystem)."""
    try:
        os.remove(golden)
    except OSError:
        pass
    dev = flashdev.FlashDev(blocks, path=golden)
    flashdev.mount(dev, MNT)
    copy_file(base_file, INBOX)
    lst = dl.DenyList(DIR)
    assert lst.install(INBOX, keys, now) == dl.OK
    if update_file:
        copy_file(update_file, INBOX)
    flashdev.umount(MNT)
    dev.close(delete=False)


def sweep(spec):
    """Power cut at program/erase operation k = 0, 1, 2, ... (or every `stride`-th) of installing
    the update, until an install runs to the end. After each cut the reader reboots: the list
    must be the old or the new one, answering exactly as that version does, with no temporary
    file left; if it is still the old one, installing the received file again succeeds."""
    keys = operator_keys(spec["keys"])
    now = spec["now"]
    golden = spec["work"] + ".golden"
    work = spec["work"]
    # "external": the update is read from the host filesystem, so install copies it to flash
    inbox = spec["update"] if spec.get("external") else INBOX
    make_golden(golden, spec["blocks"], spec["base"], None if spec.get("external")
                else spec["update"], keys, now)
    old_v, new_v = spec["old_version"], spec["new_version"]
    seen = {old_v: 0, new_v: 0}
    k = 0
    while True:
        copy_file(golden, work)
        dev = flashdev.FlashDev(spec["blocks"], path=work)
        flashdev.mount(dev, MNT)
        lst = dl.DenyList(DIR)
        dev.reset_counters()
        dev.cut_after = k
        dev.torn = spec["torn"]
        dev.torn_erase = bool(spec.get("torn_erase"))
        reason = lst.install(inbox, keys, now)
        finished = not dev.dead
        if finished:
            assert reason == dl.OK, reason
        try:
            lst.close()
        except OSError:
            pass
        lst = None
        # A file whose close was cut short is still open inside littlefs; let its finalizer run
        # (and fail on the dead flash) while its filesystem is mounted, as a reboot forgets it.
        gc.collect()
        flashdev.umount(MNT)
        dev = dev.revive()
        flashdev.mount(dev, MNT)
        lst = dl.DenyList(DIR)
        assert lst.version in seen, "version %d after a cut at %d" % (lst.version, k)
        assert dl.TMP_FILE not in os.listdir(DIR)
        check_samples(lst, spec["samples"][str(lst.version)], now)
        seen[lst.version] += 1
        if lst.version == old_v:
            assert lst.install(inbox, keys, now) == dl.OK
            assert lst.version == new_v
            check_samples(lst, spec["samples"][str(new_v)], now)
        lst.close()
        flashdev.umount(MNT)
        dev.close(delete=False)
        if finished:
            break
        k += spec.get("stride", 1)
    os.remove(golden)
    os.remove(work)
    return k, seen
