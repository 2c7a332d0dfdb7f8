# The harness itself: a littlefs image on the simulated flash, and the atomic file helper.
import os
import flashdev
from validator import atomicfile


def test_littlefs_on_flashdev_and_atomic_replace():
    dev = flashdev.FlashDev(32)
    flashdev.mount(dev, "/t")
    atomicfile.write("/t/state", b"one")
    atomicfile.write("/t/state", b"two")
    assert atomicfile.read("/t/state") == b"two"
    assert sorted(os.listdir("/t")) == ["state"]
    assert dev.erases > 0 and dev.programs > 0
    flashdev.umount("/t")
    dev.close()


def test_power_cut_stops_every_later_operation():
    dev = flashdev.FlashDev(32)
    flashdev.mount(dev, "/t")
    dev.cut_after = dev.ops + 1
    try:
        for i in range(50):
            atomicfile.write("/t/f%d" % i, b"x" * 300)
        raise AssertionError("power never failed")
    except OSError:
        pass
    assert dev.dead
    flashdev.umount("/t")
    dev2 = dev.revive()
    flashdev.mount(dev2, "/t", format_if_needed=False)
    for name in os.listdir("/t"):  # whatever survived the cut is whole
        if not name.endswith(".tmp"):
            assert atomicfile.read("/t/" + name) == b"x" * 300
    flashdev.umount("/t")
    dev2.close()
