# Fakes for the driver tests on MicroPython (no test functions here): a millisecond clock the
# tests move, a byte buffer the host reads like a UART, a PN532 played from a script, and a chip
# that never stops talking. Also imported by the CPython driver tests (tests/firmware/test_drivers.py).
from drivers import pn532


class Clock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t

    def idle(self):
        self.t += 1


class RxBuffer:
    """The host-facing half of a fake UART: bytes queued in `rx`, read like machine.UART."""

    def any(self):
        return len(self.rx)

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        if not n:
            return None
        buf[:n] = self.rx[:n]
        self.rx[0:n] = b""
        return n


class ScriptUart(RxBuffer):
    """A PN532 played from a script: for each command frame the host writes, the next entry of
    `replies` (bytes, or a function of the command body) is queued for the host to read."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.rx = bytearray()
        self.writes = []
        self.keep = True
        self.parser = pn532.FrameParser()

    def write(self, data):
        data = bytes(data)
        if self.keep:
            self.writes.append(data)
        self.parser.feed(data)
        while True:
            ev = self.parser.next()
            if ev is None:
                break
            if ev[0] == pn532.EV_FRAME and self.replies:
                r = self.replies.pop(0)
                self.rx.extend(r(ev[1]) if callable(r) else r)
        return len(data)


def resp(cmd, data=b""):
    return pn532.encode_frame(bytes((0xD5, cmd + 1)) + data)


TARGET = bytes.fromhex("01010004200408a1b2c30578807002")


class EndlessUart:
    """A chip that keeps talking: after the host's first write, `stream` is read again and again
    for ever, each piece taking 1 ms on the wire (on the test's clock)."""

    def __init__(self, clock, stream, first=b""):
        self.clock = clock
        self.stream = stream
        self.first = first
        self.pending = b""
        self.writes = []
        self.started = False

    def write(self, data):
        self.writes.append(bytes(data))
        if not self.started:
            self.started = True
            self.pending = self.first
        return len(data)

    def any(self):
        if not self.started:
            return 0
        if not self.pending:
            self.pending = self.stream
            self.clock.t += 1
        return len(self.pending)

    def readinto(self, buf):
        n = min(len(buf), self.any())
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n
