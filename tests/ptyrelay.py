"""A serial cable made of two ptys and a relay thread, with fault injection. The reader process
opens `reader_path` for the whole test; each `connect(fault)` plugs in a new host side (a new pty,
`host_path`, which pyserial opens) and the relay copies bytes both ways through the fault
injector of tests/sync_loopback.py (drop, flip, dup, close at a byte offset). A "close" fault
pulls the cable: the host side's pty is closed, so the host's serial port fails, and the reader
hears nothing more until the next connect(). (No test functions here.)"""
import os
import select
import threading
import time

from host_tools.sim.nullmodem import raw_pty, send_pending
from sync_loopback import Link


class PtyRelay:
    def __init__(self):
        self.r_master, self.r_slave, self.reader_path = raw_pty()
        self.h_master = None
        self.h_slave = None
        self.host_path = None
        self.link = None
        self.to_reader = bytearray()   # carried, not yet taken by the reader's pty
        self.to_host = bytearray()     # carried, not yet taken by the host's pty
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def connect(self, up_fault=None, down_fault=None):
        """A new host side; returns its path. up = host -> reader, down = reader -> host."""
        with self._lock:
            self._close_host()
            self.h_master, self.h_slave, self.host_path = raw_pty()
            self.link = Link(up_fault, down_fault)
        return self.host_path

    def _close_host(self):
        for fd in (self.h_master, self.h_slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.h_master = self.h_slave = None
        del self.to_host[:]  # what the old cable still carried to the host is lost with it

    def _run(self):
        while not self._stop.is_set():
            with self._lock:
                reads = [self.r_master] + ([self.h_master] if self.h_master is not None else [])
                writes = [fd for fd, buf in ((self.r_master, self.to_reader),
                                             (self.h_master, self.to_host))
                          if fd is not None and buf]
            try:
                readable, writable, _ = select.select(reads, writes, [], 0.05)
            except (OSError, ValueError):
                continue
            with self._lock:
                for fd in readable:
                    if fd != self.r_master and fd != self.h_master:
                        # closed by connect() while select() waited: its number may be another
                        # file's now (a pipe, a database), whose read would block us for ever
                        continue
                    try:
                        data = os.read(fd, 4096)
                    except OSError:
                        continue
                    if self.link is None or self.h_master is None:
                        continue  # no cable plugged in: the bytes are lost
                    if fd == self.r_master:
                        self.to_host += self.link.down.carry(data)
                        send_pending(self.h_master, self.to_host)
                    elif fd == self.h_master:
                        self.to_reader += self.link.up.carry(data)
                        send_pending(self.r_master, self.to_reader)
                    if self.link.dead:
                        # the cable is pulled: what it carried so far arrives, then the host's
                        # port breaks
                        _flush(self.h_master, self.to_host, 1.0)
                        self._close_host()
                        break
                for fd in writable:
                    if fd == self.r_master:
                        send_pending(fd, self.to_reader)
                    elif fd == self.h_master:
                        send_pending(fd, self.to_host)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            self._close_host()
        for fd in (self.r_master, self.r_slave):
            try:
                os.close(fd)
            except OSError:
                pass


def _flush(fd, buf, seconds):
    """Write `buf` out, waiting up to `seconds` in all for the pty to take it."""
    deadline = time.monotonic() + seconds
    while buf and time.monotonic() < deadline:
        select.select([], [fd], [], 0.05)
        send_pending(fd, buf)
