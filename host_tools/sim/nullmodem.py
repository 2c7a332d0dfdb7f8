"""A null-modem cable between two ptys: each end is a tty path that pyserial (or the simulated
reader) opens like a USB-serial adapter; a thread copies bytes across. `fault` may rewrite
what crosses (drop, flip, duplicate bytes) to test a protocol against a bad cable."""
import os
import select
import threading
import tty


# bytes a cable holds for an end that does not read
BACKLOG = 1 << 20


class NullModem:
    def __init__(self, fault=None):
        self._m1, s1 = os.openpty()
        self._m2, s2 = os.openpty()
        for fd in (s1, s2):
            tty.setraw(fd)
        for fd in (self._m1, self._m2):
            # a pty takes about 14 KB: an end that stops reading (a port closed while the other
            # side still sends) must not stop the cable, so bytes wait here, not in a write
            os.set_blocking(fd, False)
        self.a = os.ttyname(s1)  # one end (e.g. the reader's sync UART)
        self.b = os.ttyname(s2)  # the other end (the depot PC's port)
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
                self._send(dst)
            for fd in writable:
                self._send(fd)

    def _send(self, fd):
        buf = self._out[fd]
        try:
            n = os.write(fd, buf)
        except BlockingIOError:
            return
        except OSError:
            n = len(buf)
        del buf[:n]

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
