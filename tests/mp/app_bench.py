# A bench board for reader tests on MicroPython: flash image files given by the test, no UARTs,
# a settable RTC, feedback and events kept in lists. (No test functions here.)
import os

import flashdev


class BenchBoard:
    name = "bench"

    def __init__(self, flash_path, log_path, root="/flash", blocks=256, log_blocks=32, t=0):
        self.root = root
        self.dev = flashdev.FlashDev(blocks, path=flash_path)
        flashdev.mount(self.dev, root)
        self.log_dev = flashdev.FlashDev(log_blocks, path=log_path)
        self.t = t
        self.shown = []             # (pattern, lines) the display was told to show
        self.display = self
        self.events = []
        self.stopping = False
        self.reset_requested = False

    def provision(self, src):
        if "identity.cbor" in os.listdir(self.root):
            return
        for name in os.listdir(src):
            if name == "tables":
                continue
            with open(src + "/" + name, "rb") as f:
                data = f.read()
            with open(self.root + "/" + name, "wb") as f:
                f.write(data)

    def log_device(self):
        return self.log_dev

    def time_source(self):
        return lambda: self.t

    def time_setter(self):
        def set_(t):
            self.t = t
        return set_

    def random(self, n):
        return os.urandom(n)

    def feed_watchdog(self):
        pass

    def show(self, pattern, lines):
        self.shown.append((pattern, list(lines)))

    def report(self, ev):
        self.events.append(ev)

    def power_off(self):
        flashdev.umount(self.root)
        self.dev.close(delete=False)
        self.log_dev.close(delete=False)
