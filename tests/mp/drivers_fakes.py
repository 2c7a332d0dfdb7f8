# Fakes for the driver tests on MicroPython (no test functions here): a millisecond clock the
# tests move, a byte buffer the host reads like a UART, and a PN532 played from a script.
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
