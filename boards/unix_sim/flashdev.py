# Simulated NOR flash for littlefs (vfs.VfsLfs2) on the unix port.
#
# Behaves like the ESP32's flash partition: erase sets a 4 KiB block to 0xFF, programming can only
# clear bits (new = old AND data), reads return what is there. It counts operations so tests and
# benchmarks can report erases, programs and bytes per tap, and it can cut the power: after
# `cut_after` program/erase operations every later operation raises OSError(EIO), and with
# `torn=True` the interrupted program writes only its first half (or, for tests, its first
# `torn_bytes` bytes; a negative count means all but that many at the end); with
# `torn_erase=True` an interrupted erase clears only the second half of its block (the first half,
# where a header usually sits, keeps its old contents).
import errno
import os

BLOCK_SIZE = 4096
# Erased flash, written in small pieces: a 4 KiB temporary per erase fails in a fragmented 110 KB heap.
_FF = b"\xff" * 256


class PowerCut(OSError):
    pass


class FlashDev:
    """Flash backed by a file, so that the flash contents stay outside the MicroPython heap (as on
    the device). `path=None` makes a fresh blank image in $FV_TMP (the test harness's sandbox,
    removed after every run) or /tmp, deleted by close()."""

    def __init__(self, blocks, block_size=BLOCK_SIZE, path=None):
        self.block_size = block_size
        self.blocks = blocks
        if path is None:
            path = "%s/flashdev-%s.img" % (os.getenv("FV_TMP") or "/tmp",
                                           "".join("%02x" % b for b in os.urandom(6)))
            self.temporary = True
        else:
            self.temporary = False
        self.path = path
        _ensure_size(path, blocks * block_size)
        self._file = open(path, "r+b")
        self._mv = memoryview(bytearray(256))   # scratch of _program
        self.cut_after = -1  # program/erase operations allowed before the power fails; -1 = never
        self.torn = False
        self.torn_bytes = None  # None: half of the interrupted program lands
        self.torn_erase = False
        self.dead = False
        self.reset_counters()

    def reset_counters(self):
        self.reads = 0
        self.programs = 0
        self.erases = 0
        self.bytes_programmed = 0
        self.ops = 0  # program + erase operations: the index used for power cuts

    def _tick(self):
        if self.dead:
            raise PowerCut(errno.EIO)
        if self.cut_after >= 0 and self.ops >= self.cut_after:
            self.dead = True
            return False
        self.ops += 1
        return True

    def readblocks(self, block, buf, offset=0):
        if self.dead:
            raise PowerCut(errno.EIO)
        self.reads += 1
        self._file.seek(block * self.block_size + offset)
        self._file.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # the simple interface: erase then program whole blocks
            for i in range(len(buf) // self.block_size):
                self.ioctl(6, block + i)
            offset = 0
        a = block * self.block_size + offset
        n = len(buf)
        if not self._tick():
            if self.torn:
                self._program(a, memoryview(buf)[:self._torn_length(n)])
            raise PowerCut(errno.EIO)
        self._program(a, buf)
        self.programs += 1
        self.bytes_programmed += n

    def _torn_length(self, n):
        k = self.torn_bytes
        if k is None:
            return n // 2
        return max(0, n + k) if k < 0 else min(k, n)

    def _program(self, a, buf):
        # NOR flash: programming only clears bits. A piece at a time through a buffer made once,
        # each AND on 32-byte big integers (C speed): the simulated flash must not ask the
        # reader's heap for blocks the device's C driver would not (a record, a littlefs cache).
        src = memoryview(buf)
        n = len(src)
        mv = self._mv
        done = 0
        while done < n:
            k = min(n - done, len(mv))
            self._file.seek(a + done)
            self._file.readinto(mv[:k])
            for j in range(0, k, 32):
                m = min(32, k - j)
                v = int.from_bytes(mv[j:j + m], "big") & \
                    int.from_bytes(src[done + j:done + j + m], "big")
                mv[j:j + m] = v.to_bytes(m, "big")
            self._file.seek(a + done)
            self._file.write(mv[:k])
            done += k

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase one block
            if not self._tick():
                if self.torn_erase:
                    half = self.block_size // 2
                    self._file.seek(arg * self.block_size + half)
                    _fill_ff(self._file, half)
                raise PowerCut(errno.EIO)
            self._file.seek(arg * self.block_size)
            _fill_ff(self._file, self.block_size)
            self.erases += 1
            return 0
        if op == 3:  # sync
            self._file.flush()
        return 0

    def revive(self):
        """Power back on: a new device over the same flash contents, counters reset."""
        self._file.close()
        dev = FlashDev(self.blocks, self.block_size, path=self.path)
        dev.temporary = self.temporary
        return dev

    def close(self, delete=None):
        self._file.close()
        if delete if delete is not None else self.temporary:
            try:
                os.remove(self.path)
            except OSError:
                pass


def _ensure_size(path, size):
    try:
        have = os.stat(path)[6]
    except OSError:
        have = 0
    if have < size:
        with open(path, "ab") as f:
            _fill_ff(f, size - have)


def _fill_ff(f, n):
    while n > 0:
        k = min(n, len(_FF))
        f.write(_FF if k == len(_FF) else _FF[:k])
        n -= k


def mount(dev, mountpoint="/flash", format_if_needed=True):
    """Mount littlefs on `dev` at `mountpoint`, formatting blank flash. Returns the vfs object."""
    import vfs
    try:
        fs = vfs.VfsLfs2(dev)
    except OSError:
        if not format_if_needed:
            raise
        vfs.VfsLfs2.mkfs(dev)
        fs = vfs.VfsLfs2(dev)
    vfs.mount(fs, mountpoint)
    return fs


def umount(mountpoint="/flash"):
    import vfs
    try:
        vfs.umount(mountpoint)
    except OSError:
        pass
