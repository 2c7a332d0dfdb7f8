"""MicroPython's unix port served on a pty, so that mpremote (and `fare deploy`) can talk to it
exactly as to a board on a USB serial port.

The interpreter runs with its stdin/stdout on one pty (its REPL, raw REPL and raw-paste mode work
as on a board); a relay thread copies bytes between that pty and a second one, whose slave path
is the "serial port" handed to mpremote. Two ptys, because mpremote must open a path and the
interpreter must own a terminal.

The unix port's file system is the host's: the interpreter starts in `root`, so `fs cp` with
relative paths lands there, like a board's flash.
"""
import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path

MICROPYTHON = str(Path(sys.executable).with_name("micropython"))


class UnixPortOnPty:
    """`with UnixPortOnPty(root) as dev: ... dev.port ...` — `port` is the pty path to give to
    mpremote. `env` adds environment variables (MICROPYPATH is cleared unless given, so only
    what is deployed into `root` can be imported)."""

    def __init__(self, root, heap="110k", env=None, micropython=MICROPYTHON):
        self.root = Path(root)
        self.heap = heap
        self.env = env or {}
        self.micropython = micropython
        self.proc = None
        self.port = None
        self._fds = []
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        a_master, a_slave = pty.openpty()
        # Output as the interpreter writes it: no "\n" -> "\r\n" on the way out, or mpremote
        # would see "raw REPL; CTRL-B to exit\r\r\n". Signals stay on, so Ctrl-C interrupts.
        attrs = termios.tcgetattr(a_slave)
        attrs[1] &= ~termios.OPOST
        termios.tcsetattr(a_slave, termios.TCSANOW, attrs)
        b_master, b_slave = pty.openpty()
        tty.setraw(b_slave)
        env = dict(os.environ)
        env.pop("MICROPYPATH", None)
        env.update(self.env)

        def controlling_tty():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [self.micropython, "-X", "heapsize=" + self.heap],
            stdin=a_slave, stdout=a_slave, stderr=a_slave, cwd=str(self.root), env=env,
            preexec_fn=controlling_tty, close_fds=True)
        os.close(a_slave)
        self._fds = [a_master, b_master, b_slave]
        self.port = os.ttyname(b_slave)
        self.banner = self._wait_for_prompt(a_master)
        self._thread = threading.Thread(target=self._relay, args=(a_master, b_master),
                                        daemon=True)
        self._thread.start()
        return self

    def _wait_for_prompt(self, fd, timeout=30.0):
        """Hand out the port only once the REPL is up: bytes sent before the interpreter has
        put its terminal in raw mode would be echoed and Ctrl-C would kill it."""
        got = b""
        end = time.monotonic() + timeout
        while b">>> " not in got:
            left = end - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("MicroPython did not start on the pty: %r" % got[-300:])
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                try:
                    got += os.read(fd, 4096)
                except OSError:
                    continue
        return got

    def _relay(self, a, b):
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([a, b], [], [], 0.2)
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # the interpreter exited (EIO on its pty)
                    return
                if not data:
                    return
                os.write(b if fd == a else a, data)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
