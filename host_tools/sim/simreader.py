"""A simulated reader: the real firmware (firmware/main.py) on the MicroPython binary with the
unix_sim board, its flash a littlefs image file, its UARTs ptys.

The host drives it like a bench technician would: the QR scanner emulator types ride codes into
the scanner pty, the PN532 emulator carries a phone or card on the NFC pty, the depot tool talks
on the sync pty. The board's control channel (the process's stdin/stdout, one JSON object per
line) sets the simulated RTC and reports what the rider sees: one `tap` event per decision, with
the decision latency measured on the reader.

Power cuts are real: the process is killed with SIGKILL, whatever it is doing, and a new process
boots from the same flash image.
"""
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from host_tools.fleet import mpybuild

ROOT = Path(__file__).resolve().parents[2]
MICROPYTHON = str(Path(sys.executable).with_name("micropython"))
ESP32_HEAP = 110 * 1024
# Loading bytecode into the heap leaves holes between modules that a frozen build does not
# have; this allowance keeps the simulation from failing on fragmentation a device never sees.
LOAD_HOLES = 16 * 1024
_code_heaps = {}


# The firmware is run through a link named FW in the reader's directory, and its flash images by
# relative names: the module paths and file names are strings in MicroPython's heap, and with
# absolute paths the heap's layout would depend on where the repository is checked out.
FW = "fw"


def link_firmware(workdir, tree):
    """Point `workdir`/fw at the compiled firmware `tree`."""
    link = Path(workdir) / FW
    if os.path.islink(link) and os.readlink(link) == str(tree):
        return
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(str(tree), str(link))


def heap_for(tree):
    """The heap the simulated reader gets: the ESP32's 110 KB for data plus the firmware's code.
    On the unix port the bytecode is loaded into the heap; on a device it is frozen in flash and
    costs no RAM. So the reader's data must fit in 110 KB here as on the device."""
    if tree not in _code_heaps:
        with tempfile.TemporaryDirectory(prefix="fv-code-") as d:
            link_firmware(d, tree)
            out = subprocess.run([MICROPYTHON, "-X", "heapsize=4m", FW + "/main.py", "--code-heap"],
                                 capture_output=True, text=True, check=True, cwd=d,
                                 env=dict(os.environ, MICROPYPATH=FW + ":.frozen"))
        _code_heaps[tree] = int(out.stdout.split()[-1])
    return "%dk" % ((_code_heaps[tree] + ESP32_HEAP + LOAD_HOLES + 1023) // 1024)


def heap_with_margin(margin, tree=None):
    """The simulated reader's heap less `margin` bytes: a reader that still works in it has that
    much to spare (tests/sim/test_heap_day.py runs the long day so)."""
    tree = tree or mpybuild.build("unix_sim")
    return "%dk" % (int(heap_for(tree)[:-1]) - (margin + 1023) // 1024)


FLASH_BLOCKS = 512   # 2 MiB littlefs, what an ESP32 with 4 MB flash leaves for files
LOG_BLOCKS = 128     # 512 KiB raw partition for the trip log


RESET_EXIT = 75   # the simulated board's reset (boards/unix_sim/board.py)
MAX_BOOTS = 1000  # a reader that reboots for ever is dead, not alive


class ReaderDied(RuntimeError):
    pass


class SimReader:
    """One simulated reader process. `workdir` holds its flash image and its event log."""

    def __init__(self, workdir, heap=None, flash_blocks=FLASH_BLOCKS, log_blocks=LOG_BLOCKS, qr_port=None,
                 nfc_port=None, sync_port=None, provision_dir=None, timeout=30.0, env=None):
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.flash = self.workdir / "flash.img"
        self.log_flash = self.workdir / "triplog.img"
        self.log_blocks = log_blocks
        self.rtc = 0
        self.heap = heap
        self.flash_blocks = flash_blocks
        self.ports = {"qr": qr_port, "nfc": nfc_port, "sync": sync_port}
        self.provision_dir = Path(provision_dir) if provision_dir else None
        self.timeout = timeout
        self.env = dict(env or {})   # more FV_ settings of the board (e.g. FV_FRAGMENT)
        self.proc = None
        self.events = queue.Queue()
        self.boot_event = None
        self.stderr_tail = []
        self.boots = 0
        self.faults = []  # fault and crash events the reader reported
        self.history = []  # the latest events, in order (feedback, taps, ...)

    # -- process --------------------------------------------------------------------------

    def start(self):
        """Power the reader up; returns its "ready" event."""
        self.events = queue.Queue()
        self._spawn()
        self.boot_event = self.wait_event("ready")
        return self.boot_event

    def _spawn(self):
        env = dict(os.environ)
        tree = mpybuild.build("unix_sim")  # precompiled, as deployed to a board
        link_firmware(self.workdir, tree)
        env["MICROPYPATH"] = FW + ":.frozen"
        env["FV_FLASH"] = self.flash.name          # relative to the reader's directory (cwd)
        env["FV_FLASH_BLOCKS"] = str(self.flash_blocks)
        env["FV_LOG_FLASH"] = self.log_flash.name
        env["FV_LOG_BLOCKS"] = str(self.log_blocks)
        env["FV_RTC"] = str(self.rtc)  # the battery-backed RTC kept its time through the cut
        for name, port in self.ports.items():
            if port:
                env["FV_" + name.upper()] = str(port)
        if self.provision_dir:
            env["FV_PROVISION"] = str(self.provision_dir)
        env.update(self.env)
        self.proc = subprocess.Popen(
            [MICROPYTHON, "-X", "heapsize=" + (self.heap or heap_for(tree)), FW + "/main.py"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=str(self.workdir), bufsize=0)
        threading.Thread(target=self._read_events, args=(self.proc, self.events), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True).start()
        self.boots += 1

    def _read_events(self, proc, events):
        for line in proc.stdout:
            line = line.decode("utf-8", "replace").strip()
            if not line.startswith("{"):
                self.stderr_tail.append(line + "\n")  # not an event: a traceback, a print
                del self.stderr_tail[:-60]
                continue
            try:
                events.put(json.loads(line))
            except ValueError:
                continue
        events.put({"ev": "exit"})

    def _read_stderr(self, proc):
        for line in proc.stderr:
            self.stderr_tail.append(line.decode("utf-8", "replace"))
            del self.stderr_tail[:-60]

    def wait_event(self, kind, timeout=None):
        """The next event of `kind`; other events in between are returned in order by
        `drain()`-style callers only if they ask for them, so keep one kind per wait."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("reader sent no %r event in time; stderr:\n%s"
                                   % (kind, "".join(self.stderr_tail[-30:])))
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            self.history.append(ev)
            del self.history[:-200]
            if ev.get("ev") == "exit":
                if self.proc.wait() == RESET_EXIT and self.boots < MAX_BOOTS:
                    self._spawn()  # the board rebooted: power it up again, keep waiting
                    continue
                raise ReaderDied("reader exited (code %s); stderr:\n%s"
                                 % (self.proc.poll(), "".join(self.stderr_tail[-30:])))
            if ev.get("ev") == kind:
                return ev
            if ev.get("ev") in ("fault", "crash"):
                self.faults.append(ev)
            if ev.get("ev") == "crash" and kind == "ready":
                raise ReaderDied("reader crashed while booting: %s; stderr:\n%s"
                                 % (ev.get("error"), "".join(self.stderr_tail[-30:])))

    def command(self, cmd, reply, **args):
        """Send a control command and wait for its reply event."""
        args["cmd"] = cmd
        self.proc.stdin.write((json.dumps(args) + "\n").encode())
        self.proc.stdin.flush()
        return self.wait_event(reply)

    def set_rtc(self, t):
        """Set the board's (battery-backed) RTC: the time the reader's clock reads from."""
        self.rtc = int(t)
        return self.command("rtc", "rtc", t=int(t))

    def info(self):
        return self.command("info", "info")

    def inject(self, what, **args):
        """A bench fault (boards/unix_sim/board.py), e.g. "raise" (module=, name=, error=
        "MemoryError" or "OSError": the next call of that function fails so)."""
        return self.command("fault", "fault", what=what, **args)

    def arm_flash_cut(self, after):
        """The power fails after `after` more program/erase operations of the file flash: later
        ones fail, and power_cut() then finishes the job."""
        return self.command("fault", "fault", what="flash_cut", after=int(after))

    def power_cut(self):
        """Cut the power: SIGKILL, whatever the reader is doing."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"cmd": "stop"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.power_cut()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
