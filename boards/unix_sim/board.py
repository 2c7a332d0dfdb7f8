# The simulated board: the reader firmware on MicroPython's unix port.
#
# What stands in for the hardware (set through environment variables by host_tools/sim/simreader.py):
#   FV_FLASH, FV_FLASH_BLOCKS  littlefs image file (the ESP32's flash), mounted at /flash
#   FV_QR, FV_NFC, FV_SYNC     pty paths for the QR scanner, PN532 and depot sync UARTs
#   FV_RTC                     the battery-backed RTC's time at power-up (Unix seconds)
#   FV_PROVISION               a directory whose files are copied to a blank flash (as deploy does)
#   FV_FRAGMENT                once the reader is up, cut its free heap into holes of this many
#                              bytes (boards/unix_sim/heapfrag.py): the reader must then live on
#                              blocks no larger (docs/performance.md, "Heap")
# The process's stdin/stdout is the bench: JSON lines in (set the RTC, ask for info, stop),
# JSON lines out (one event per decision, feedback, boot). Feedback that a device shows on a
# buzzer, LED and display is reported as events here.
import json
import os
import select
import sys
import time

import flashdev
from drivers.links import DriversOnLinks

ROOT = "/flash"
RESET_EXIT = 75  # exit status that asks the bench to power the reader up again


def _env(name, default=None):
    v = os.getenv(name)
    return v if v else default


def _copy_tree(src, dst):
    for name, kind, *_ in os.ilistdir(src):
        if name.startswith("."):
            continue
        if kind == 0x4000:  # a directory
            try:
                os.mkdir(dst + "/" + name)
            except OSError:
                pass
            _copy_tree(src + "/" + name, dst + "/" + name)
            continue
        with open(src + "/" + name, "rb") as f:
            data = f.read()
        with open(dst + "/" + name, "wb") as f:
            f.write(data)


def _fail_once(module, name, exc):
    mod = __import__(module)
    for part in module.split(".")[1:]:
        mod = getattr(mod, part)
    path = name.split(".")
    name = path.pop()
    for part in path:   # a method: "Class.method"
        mod = getattr(mod, part)
    real = getattr(mod, name)

    def fail(*args, **kw):
        setattr(mod, name, real)
        raise exc
    setattr(mod, name, fail)


class SimRtc:
    """A battery-backed RTC that moves only when the bench says so (deterministic runs)."""

    def __init__(self, t):
        self.t = t

    def seconds(self):
        return self.t

    def set(self, t):
        self.t = t


class EventDisplay:
    """Buzzer, LED and display of the simulated board: each feedback becomes an event line."""

    def __init__(self, board):
        self.board = board

    def show(self, pattern, lines):
        self.board.report({"ev": "feedback", "pattern": pattern, "lines": list(lines)})


class Board(DriversOnLinks):
    name = "unix_sim"
    root = ROOT

    def __init__(self):
        self.dev = flashdev.FlashDev(int(_env("FV_FLASH_BLOCKS", "1024")),
                                     path=_env("FV_FLASH", "flash.img"))
        flashdev.mount(self.dev, ROOT)
        self._provision(_env("FV_PROVISION"))
        self.rtc = SimRtc(int(_env("FV_RTC", "0")))
        self.display = EventDisplay(self)
        self.stopping = False
        self.reset_requested = False
        self._log_dev = None

    def _provision(self, src):
        """First boot of a blank reader: copy identity, key ring and configuration, as
        `fare deploy` copies them to a device."""
        if not src or "identity.cbor" in os.listdir(ROOT):
            return
        _copy_tree(src, ROOT)

    # -- the hardware the reader asks for ------------------------------------------------------

    def uart(self, role):
        """The UART for `role` ("qr", "nfc", "sync"), or None when not wired."""
        path = _env("FV_" + role.upper())
        if not path:
            return None
        import uart
        return uart.PtyUart(path)

    def log_device(self):
        """The trip log's raw flash partition (its own image file, as an esp32.Partition)."""
        if self._log_dev is None:
            self._log_dev = flashdev.FlashDev(int(_env("FV_LOG_BLOCKS", "256")),
                                              path=_env("FV_LOG_FLASH", "triplog.img"))
        return self._log_dev

    def time_source(self):
        return self.rtc.seconds

    def time_setter(self):
        return self.rtc.set

    def random(self, n):
        return os.urandom(n)

    def feed_watchdog(self):
        pass

    def report(self, event):
        # streamed: an INFO event is most of a KB, and the reader's heap may have no such block
        json.dump(event, sys.stdout)
        sys.stdout.write("\n")

    def reset(self):
        """A reboot (a crash, or the depot's REBOOT): the process ends with RESET_EXIT and the
        bench (host_tools/sim/simreader) starts it again from the same flash, as the chip would
        restart."""
        try:
            sys.stdout.flush()
        except OSError:
            pass
        sys.exit(RESET_EXIT)

    # -- the bench (stdin control channel) -------------------------------------------------

    def tasks(self, reader):
        hole = _env("FV_FRAGMENT")
        if hole:   # the reader made everything it keeps: cut up what is left
            import heapfrag
            self._ballast = heapfrag.fragment(int(hole))
            self.report({"ev": "heap", "fragmented": int(hole),
                         "largest": heapfrag.largest_free(4 * int(hole))})
        return [self._bench(reader)]

    async def _bench(self, reader):
        import asyncio
        stdin = open(0, "rb")
        poller = select.poll()
        poller.register(stdin, select.POLLIN)
        while not self.stopping:
            if not poller.poll(0):
                await asyncio.sleep_ms(2)
                continue
            line = stdin.readline()  # the bench always writes whole lines
            if not line:
                self.stopping = True  # the bench went away: stop like a power-off
                break
            self._command(reader, line)

    def _command(self, reader, line):
        try:
            cmd = json.loads(line)
        except ValueError:
            self.report({"ev": "error", "error": "bad bench command"})
            return
        c = cmd.get("cmd")
        if c == "rtc":
            self.rtc.set(int(cmd["t"]))
            self.report({"ev": "rtc", "t": self.rtc.t})
        elif c == "info":
            ev = reader.info()
            ev["ev"] = "info"
            self.report(ev)
        elif c == "fault":
            # The bench breaks a part: "log_flash" makes the trip log's flash fail from now on
            # (until the next power-up), as a worn-out or disconnected chip would.
            if cmd.get("what") == "log_flash" and self._log_dev is not None:
                self._log_dev.dead = True
            if cmd.get("what") == "crash":  # a bug strikes inside the loop
                raise RuntimeError("crash injected by the bench")
            if cmd.get("what") == "raise":
                # the next call of module.name runs out of heap (error "MemoryError") or meets a
                # flash error ("OSError"): an install that fails on the reader's side at a chosen
                # point; it works again after that
                exc = MemoryError("injected by the bench") if cmd.get("error") == "MemoryError" \
                    else OSError(5)
                _fail_once(cmd["module"], cmd["name"], exc)
            if cmd.get("what") == "flash_cut":
                # the power fails after `after` more program/erase operations of the file flash
                # (later ones fail with EIO; the bench then kills the process: a power cut at a
                # chosen point of an install)
                self.dev.cut_after = self.dev.ops + int(cmd.get("after", 0))
            self.report({"ev": "fault", "what": cmd.get("what")})
        elif c == "stop":
            self.stopping = True
        else:
            self.report({"ev": "error", "error": "unknown bench command %r" % c})
