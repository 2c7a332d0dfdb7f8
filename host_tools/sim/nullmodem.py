"""A null-modem cable between two ptys: each end is a tty path that pyserial (or the simulated
reader) opens like a USB-serial adapter; a thread copies bytes across. `fault` may rewrite
what crosses (drop, flip, duplicate bytes) to test a protocol against a bad cable."""
import os
import select
import threading
import tty


# bytes a cable holds for an end that does not read
BACKLOG = 1 << 20


def raw_pty():
    """(master, slave, slave's path) of a new pty in raw mode. The master does not block: a pty
    takes about 14 KB, and a cable must not stop when an end stops reading (a port closed while
    the other side still sends); what an end has not taken waits in the cable's buffer."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


def send_pending(fd, buf):
    """Write what the non-blocking pty `fd` takes now of bytearray `buf`, and take that out of
    `buf` (all of it if the far side is gone)."""
    try:
        n = os.write(fd, buf)
    except BlockingIOError:
        return
    except OSError:
        n = len(buf)
    del buf[:n]


class NullModem:
    def __init__(self, fault=None):
        self._m1, s1, self.a = raw_pty()  # one end (e.g. the reader's sync UART)
        self._m2, s2, self.b = raw_pty()  # the other end (the depot PC's port)
        self._slaves = (s1, s2)  # kept open so the ends survive a close/reopen by either side
        self.fault = fault       # fault(direction, data) -> data; direction "ab" or "ba"
        self.bytes = {"ab": 0, "ba": 0}
        self._out = {self._m1: bytearray(), self._m2: bytearray()}  # carried, not yet taken
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        pairs = {self._m1: (self._m2, "ab"), self._m2: (self._m1, "ba")}
        while not self._stop:
            waiting = [fd for fd, buf in self._out.items() if buf]
            readable, writable, _ = select.select(list(pairs), waiting, [], 0.05)
            for fd in readable:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                dst, direction = pairs[fd]
                if self.fault is not None:
                    data = self.fault(direction, data)
                self.bytes[direction] += len(data)
                if len(self._out[dst]) < BACKLOG:
                    self._out[dst] += data
                # (else lost, as a receiver's FIFO overflows when nothing reads it)
                send_pending(dst, self._out[dst])
            for fd in writable:
                send_pending(fd, self._out[fd])

    def close(self):
        self._stop = True
        self._thread.join(timeout=2)
        for fd in (self._m1, self._m2) + self._slaves:
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
