"""In-process link between the depot client (host_tools.depot.synclink) and the reader's SyncServer
running on CPython, with a deterministic clock and fault injection on the byte streams. Used by
the CPython sync tests to sweep link faults over every frame of a whole sync quickly; the same
faults over real ptys with the MicroPython reader are sampled in tests/depot/test_sync_e2e.py.
(No test functions here.)"""


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class Stream:
    """One direction of the cable. Records every byte offered and the frame boundaries (`ends`:
    offsets of the delimiter that ends each frame), and applies at most one fault:
    ("drop", p) loses byte p; ("flip", p) flips bit 0 of byte p; ("dup", p) sends the bytes of the
    frame around p again right after byte p; ("close", p) loses byte p and everything after it,
    in both directions (see Link.dead). The place p is a byte offset in the stream, or
    ("frame", i, where): in the i-th frame, where = "end" (its closing delimiter) or an offset
    from the frame's start (for runs whose bytes are not known beforehand)."""

    def __init__(self, link, fault=None):
        self.link = link
        self.fault = fault
        self.pos = 0
        self.frame_start = 0
        self.ends = []
        self.fired = False

    def carry(self, data):
        out = bytearray()
        hist = self.link.history(self)
        for b in bytes(data):
            p = self.pos
            self.pos += 1
            hist.append(b)
            if not self.link.dead:
                f = self.fault
                if f is None or self.fired or not self._at(f[1], p, b):
                    out.append(b)
                else:
                    self.fired = True
                    if f[0] == "flip":
                        out.append(b ^ 0x01)
                    elif f[0] == "dup":
                        out.append(b)
                        out += hist[self.frame_start:p + 1]
                    elif f[0] == "close":
                        self.link.dead = True
                    # "drop": nothing
            if b == 0 and p > self.frame_start:  # the delimiter that ends a frame
                self.ends.append(p)
                self.frame_start = p + 1
        return bytes(out)

    def _at(self, where, p, b):
        if not isinstance(where, tuple):
            return where == p
        _, i, at = where
        if len(self.ends) != i:
            return False
        if at == "end":
            return b == 0 and p > self.frame_start
        return p - self.frame_start == at


class Link:
    """Both directions; `dead` after a close fault (until a new Link is made)."""

    def __init__(self, up_fault=None, down_fault=None):
        self.dead = False
        self.up = Stream(self, up_fault)      # host -> reader
        self.down = Stream(self, down_fault)  # reader -> host
        self._hist = {id(self.up): bytearray(), id(self.down): bytearray()}

    def history(self, stream):
        return self._hist[id(stream)]


class ServerUart:
    def __init__(self):
        self.rx = bytearray()
        self.tx = bytearray()

    def read(self, n):
        if not self.rx:
            return None
        d = bytes(self.rx[:n])
        del self.rx[:n]
        return d

    def write(self, b):
        self.tx += b
        return len(b)


class LoopbackPort:
    """What SyncLink sees as a serial port. Writing runs the server until it is idle; reading
    returns what came back, or advances the fake clock by `timeout` when there is nothing."""

    def __init__(self, server, link, clock, timeout=0.05):
        self.server = server
        self.uart = server.uart
        self.link = link
        self.clock = clock
        self.timeout = timeout
        self.rx = bytearray()
        self.baudrate = 115200

    def write(self, data):
        self.uart.rx += self.link.up.carry(data)
        for _ in range(100000):
            if not self.server.poll():
                break
        if self.uart.tx:
            out = bytes(self.uart.tx)
            self.uart.tx = bytearray()
            self.rx += self.link.down.carry(out)
        return len(data)

    @property
    def in_waiting(self):
        return len(self.rx)

    def read(self, n):
        if not self.rx:
            self.clock.t += self.timeout
            return b""
        d = bytes(self.rx[:n])
        del self.rx[:n]
        return d

    def close(self):
        pass
