# The GM65 baud start-up step on MicroPython (QrScanner.use_fast_baud), against a fake module on
# a UART whose speed both sides set: bytes pass only when the speeds agree, as on the wire. Fake
# millisecond clock, no wall-clock waits.
from drivers import qrscanner
from drivers_fakes import Clock, RxBuffer


def _drivers_board(links, speed=None):
    from drivers.links import DriversOnLinks

    class B(DriversOnLinks):
        def __init__(self):
            self.events = []

        def uart(self, role):
            return links.get(role)

        def report(self, event):
            self.events.append(event)

        def link_speed(self, role):
            return speed
    return B()


DIVISOR_BAUD = {0x0139: 9600, 0x001A: 115200}


class Gm65Uart(RxBuffer):
    """A GM65 on a UART. The host sets its side's speed with set_baud(); bytes pass only when
    both sides run at the same speed (else the module hears noise and the host gets framing
    garbage). `applies`: when a written speed takes effect: "reply" (the reply goes out at the
    old speed, then it switches), "save" (only once saved), "never"; `present` False: no module."""

    def __init__(self, module_baud=9600, host_baud=9600, applies="reply", present=True):
        self.zones = bytearray(0x40)
        self.zones[0x2A:0x2C] = bytes((0x39, 0x01)) if module_baud == 9600 else b"\x1a\x00"
        self.flash = bytes(self.zones)
        self.module_baud = module_baud
        self.host_baud = host_baud
        self.applies = applies
        self.present = present
        self.rx = bytearray()
        self.commands = []
        self.bauds_set = []
        self.fail_set = False

    def set_baud(self, baud):
        if self.fail_set:
            raise OSError(22)
        self.bauds_set.append(baud)
        self.host_baud = baud

    def power_cycle(self):
        self.zones[:] = self.flash
        self.module_baud = self._zone_baud()

    def _zone_baud(self):
        return DIVISOR_BAUD[self.zones[0x2A] | self.zones[0x2B] << 8]

    def scan(self, text):
        self._send(text.encode() + b"\r")

    def _send(self, data):
        self.rx.extend(data if self.module_baud == self.host_baud else b"\xf8" * len(data))

    def write(self, data):
        data = bytes(data)
        if not self.present or self.module_baud != self.host_baud:
            return len(data)
        assert data[:2] == b"\x7e\x00"
        kind, n, addr = data[2], data[3], data[4] << 8 | data[5]
        body = data[6:6 + n]
        assert qrscanner.crc16_xmodem(data[2:6 + n]) == data[6 + n] << 8 | data[7 + n]
        self.commands.append((kind, addr, body))
        done = bytes.fromhex("02000001003331")
        if kind == qrscanner.T_READ:
            d = bytes(self.zones[addr:addr + body[0]])
            c = qrscanner.crc16_xmodem(bytes((0, 0, len(d))) + d)
            self._send(b"\x02\x00\x00" + bytes((len(d),)) + d + bytes((c >> 8, c & 0xFF)))
        elif kind == qrscanner.T_WRITE:
            self.zones[addr:addr + n] = body
            self._send(done)
            if self.applies == "reply":
                self.module_baud = self._zone_baud()
        elif kind == qrscanner.T_SAVE:
            self.flash = bytes(self.zones)
            self._send(done)
            if self.applies == "save":
                self.module_baud = self._zone_baud()
        return len(data)


def gm65_scanner(u):
    c = Clock()
    return qrscanner.QrScanner(u, clock_ms=c, idle=c.idle), c


def test_factory_gm65_is_moved_to_115200_and_saved():
    for applies in ("reply", "save"):
        u = Gm65Uart(applies=applies)
        q, c = gm65_scanner(u)
        assert q.use_fast_baud(u.set_baud, 9600, timeout_ms=100) == qrscanner.BAUD_SWITCHED
        assert q.baud == u.host_baud == u.module_baud == 115200
        assert u.flash[0x2A:0x2C] == b"\x1a\x00"           # kept over power cycles
        assert c.t < 600                                   # bounded, on the fake clock
        u.scan("FV1:RIDE")
        assert q.poll() == "FV1:RIDE"
        # next power-up: the board opens the link at 9600 again; one read finds it at 115200
        u.power_cycle()
        u.host_baud = 9600
        u.commands = []
        q, c = gm65_scanner(u)
        assert q.use_fast_baud(u.set_baud, 9600, timeout_ms=100) == qrscanner.BAUD_FAST
        assert u.commands == [(qrscanner.T_READ, qrscanner.ZONE_BAUD, b"\x02")]
        assert q.baud == u.host_baud == 115200 and c.t == 0


def test_no_module_leaves_the_link_as_configured():
    for configured in (9600, 115200):
        u = Gm65Uart(host_baud=configured, present=False)
        q, c = gm65_scanner(u)
        assert q.use_fast_baud(u.set_baud, configured, timeout_ms=100) == qrscanner.BAUD_NO_ANSWER
        assert u.host_baud == configured and q.baud == configured
        assert 200 <= c.t < 220                            # two reads timed out, no more


def test_module_that_keeps_its_speed_stays_usable_at_9600():
    u = Gm65Uart(applies="never")
    q, c = gm65_scanner(u)
    assert q.use_fast_baud(u.set_baud, 9600, timeout_ms=100) == qrscanner.BAUD_SLOW
    assert q.baud == u.host_baud == u.module_baud == 9600
    assert c.t < 700
    u.scan("FV1:SLOW")
    assert q.poll() == "FV1:SLOW"


def test_host_uart_that_refuses_the_speed_is_not_fatal():
    u = Gm65Uart()
    u.fail_set = True
    q, c = gm65_scanner(u)
    assert q.use_fast_baud(u.set_baud, 9600, timeout_ms=100) == qrscanner.BAUD_ERROR
    assert u.host_baud == 9600 and q.baud_state == qrscanner.BAUD_ERROR


def test_qr_scanner_of_a_board_that_can_set_the_speed():
    # (the board's scanner runs on the real clock: a module that answers at once, no waits)
    u = Gm65Uart(module_baud=115200, host_baud=9600)
    b = _drivers_board({"qr": u}, speed=(u.set_baud, 9600))
    q = b.qr_scanner()
    assert q.baud == u.host_baud == 115200 and q.baud_state == qrscanner.BAUD_FAST
    assert b.events == [{"ev": "qr", "baud": 115200, "state": "fast"}]
    u2 = Gm65Uart()
    q2 = _drivers_board({"qr": u2}).qr_scanner()         # no speed control: left alone
    assert q2.baud is None and u2.commands == [] and u2.bauds_set == []
