"""A serial cable made of two ptys and a relay thread, with fault injection. The reader process
opens `reader_path` for the whole test; each `connect(fault)` plugs in a new host side (a new pty,
`host_path`, which pyserial opens) and the relay copies bytes both ways through the fault
injector of tests/sync_loopback.py (drop, flip, dup, close at a byte offset). A "close" fault
pulls the cable: the host side's pty is closed, so the host's serial port fails, and the reader
hears nothing more until the next connect(). (No test functions here.)"""
import os
import select
import threading
import tty

from sync_loopback import Link


def _pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


class PtyRelay:
    def __init__(self):
        self.r_master, self.r_slave, self.reader_path = _pty()
        self.h_master = None
        self.h_slave = None
        self.host_path = None
        self.link = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def connect(self, up_fault=None, down_fault=None):
        """A new host side; returns its path. up = host -> reader, down = reader -> host."""
        with self._lock:
            self._close_host()
            self.h_master, self.h_slave, self.host_path = _pty()
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

    def _run(self):
        while not self._stop.is_set():
            with self._lock:
                fds = [self.r_master] + ([self.h_master] if self.h_master is not None else [])
            try:
                ready, _, _ = select.select(fds, [], [], 0.05)
            except (OSError, ValueError):
                continue
            with self._lock:
                for fd in ready:
                    try:
                        data = os.read(fd, 4096)
                    except OSError:
                        continue
                    if self.link is None or self.h_master is None:
                        continue  # no cable plugged in: the bytes are lost
                    if fd == self.r_master:
                        out, dst = self.link.down.carry(data), self.h_master
                    elif fd == self.h_master:
                        out, dst = self.link.up.carry(data), self.r_master
                    else:
                        continue
                    if out:
                        _write_all(dst, out)
                    if self.link.dead:
                        self._close_host()  # the cable is pulled: the host's port breaks

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


def _write_all(fd, data):
    mv = memoryview(data)
    while mv:
        try:
            n = os.write(fd, mv)
        except BlockingIOError:
            select.select([], [fd], [], 0.1)
            continue
        except OSError:
            return
        mv = mv[n:]
