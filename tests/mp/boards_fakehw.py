# Stand-ins for the esp32 port's hardware modules (machine, esp32, neopixel), so that the ESP32
# boards' own logic runs on the unix port: every constructor and call is recorded, a fake
# PN532 answers on the fake I2C bus the way the chip does in I2C mode (status byte, one frame
# per read transaction, padding after the frame), and a fake DS3231 keeps its registers as the
# chip does (register pointer, clear-only flags).
import sys

calls = []  # (what, args...) in call order


def record(*what):
    calls.append(what)


def find(name):
    return [c for c in calls if c[0] == name]


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 2
    PULL_DOWN = 1
    levels = {}  # pin number -> level read by value()

    def __init__(self, n, mode=-1, pull=-1):
        self.n = n
        self._v = Pin.levels.get(n, 1)
        record("Pin", n, mode, pull)

    def value(self, v=None):
        if v is None:
            return Pin.levels.get(self.n, self._v)
        self._v = v
        record("Pin.value", self.n, v)


class PWM:
    def __init__(self, pin, freq=0, duty_u16=0):
        self.pin = pin
        self._freq = freq
        self._duty = duty_u16
        record("PWM", pin.n, freq, duty_u16)

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = f
        record("PWM.freq", self.pin.n, f)

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        self._duty = d
        record("PWM.duty_u16", self.pin.n, d)


class UART:
    def __init__(self, uart_id, baudrate=115200, tx=None, rx=None, timeout=0, rxbuf=256,
                 txbuf=256):
        self.id = uart_id
        self.kw = {"baudrate": baudrate, "tx": tx, "rx": rx, "timeout": timeout, "rxbuf": rxbuf,
                   "txbuf": txbuf}
        record("UART", uart_id, self.kw)

    def init(self, baudrate=None):
        self.kw["baudrate"] = baudrate
        record("UART.init", self.id, baudrate)


class RTC:
    def __init__(self):
        self.dt = None

    def datetime(self, t=None):
        if t is None:
            return self.dt
        self.dt = t
        record("RTC.datetime", t)


class WDT:
    def __init__(self, timeout=5000):
        self.timeout = timeout
        record("WDT", timeout)

    def feed(self):
        record("WDT.feed", self.timeout)


class I2C:
    def __init__(self, bus, scl=None, sda=None, freq=400000):
        self.bus = bus
        self.targets = {}  # address -> object with write(data) and read(n) -> bytes
        record("I2C", bus, scl.n, sda.n, freq)
        I2C.last = self

    def scan(self):
        return sorted(self.targets)

    def writeto(self, addr, buf):
        t = self.targets.get(addr)
        if t is None or t.nack_writes:
            if t is not None:
                t.nack_writes -= 1
            raise OSError(19)  # ENODEV: no ACK of the address
        record("I2C.writeto", addr, bytes(buf))
        t.write(bytes(buf))
        return len(buf)

    def readfrom_into(self, addr, buf):
        t = self.targets.get(addr)
        if t is None or t.fail_reads:
            if t is not None:
                t.fail_reads -= 1
            raise OSError(19)
        data = t.read(len(buf))
        record("I2C.read", addr, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i] if i < len(data) else 0

    def _mem_target(self, addr):
        t = self.targets.get(addr)
        if t is None or t.fail:
            if t is not None:
                t.fail -= 1
            raise OSError(19)
        return t

    def readfrom_mem_into(self, addr, memaddr, buf):
        data = self._mem_target(addr).read_mem(memaddr, len(buf))
        record("I2C.readfrom_mem", addr, memaddr, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto_mem(self, addr, memaddr, buf):
        self._mem_target(addr).write_mem(memaddr, bytes(buf))
        record("I2C.writeto_mem", addr, memaddr, bytes(buf))


class FakeDs3231:
    """The DS3231's 19 registers as the chip keeps them: a transfer starts at the register
    given and wraps after 0x12; OSF and the alarm flags in the status register can only be
    cleared, BSY only read. As after its first power-up, OSF is set. `fail`: this many next
    transfers are not acknowledged."""

    def __init__(self):
        self.regs = bytearray(19)
        self.regs[0x0E] = 0x1C  # control at power-up: oscillator on, INTCN, 8.192 kHz
        self.regs[0x0F] = 0x88  # status at power-up: OSF, EN32kHz
        self.fail = 0

    def read_mem(self, reg, n):
        return bytes(self.regs[(reg + i) % 19] for i in range(n))

    def write_mem(self, reg, data):
        for i, b in enumerate(data):
            r = (reg + i) % 19
            if r == 0x0F:
                old = self.regs[r]
                b = (old & b & 0x83) | (b & 0x08) | (old & 0x04)
            self.regs[r] = b

    def battery_out(self):
        """The coin cell flat or removed while the board had no power: OSF set."""
        self.regs[0x0F] |= 0x80


class FakePn532I2C:
    """The PN532's I2C side: frames queued with respond() are read one per transaction, after a
    status byte 0x01; with nothing queued the status is 0x00."""

    def __init__(self, padding=0x00):
        self.written = []
        self.queue = []
        self.padding = padding
        self.nack_writes = 0
        self.fail_reads = 0
        self.auto = None  # optional function(frame) -> list of frames to queue (a tiny chip)

    def write(self, data):
        self.written.append(data)
        if self.auto is not None:
            self.queue.extend(self.auto(data))

    def respond(self, *frames):
        self.queue.extend(frames)

    def read(self, n):
        if not self.queue:
            return b"\x00" * n
        frame = self.queue.pop(0)
        out = b"\x01" + frame
        return out + bytes([self.padding]) * max(0, n - len(out))


def reset():
    record("reset")


_cause = [1]


def reset_cause():
    return _cause[0]


class _Machine:
    pass


machine = _Machine()
for _name, _obj in (("Pin", Pin), ("PWM", PWM), ("UART", UART), ("RTC", RTC), ("WDT", WDT),
                    ("I2C", I2C), ("reset", reset), ("reset_cause", reset_cause)):
    setattr(machine, _name, _obj)
machine.PWRON_RESET = 1
machine.HARD_RESET = 2
machine.WDT_RESET = 3
machine.DEEPSLEEP_RESET = 4
machine.SOFT_RESET = 5


class NeoPixel:
    def __init__(self, pin, n):
        self.pin = pin
        self.px = [(0, 0, 0)] * n
        record("NeoPixel", pin.n, n)

    def __setitem__(self, i, v):
        self.px[i] = v

    def write(self):
        record("NeoPixel.write", self.px[0])


class _Neopixel:
    NeoPixel = NeoPixel


class Partition:
    TYPE_APP = 0
    TYPE_DATA = 1
    table = {}  # label -> block device

    @staticmethod
    def find(type=0, subtype=0xFF, label=None):
        record("Partition.find", type, label)
        dev = Partition.table.get(label)
        return [dev] if dev is not None else []


class _Esp32:
    Partition = Partition


def install(board_dir):
    """Put the fakes in sys.modules and the board's folders first on sys.path."""
    sys.modules["machine"] = machine
    sys.modules["neopixel"] = _Neopixel()
    sys.modules["esp32"] = _Esp32()
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    repo = here + "/../.."
    sys.path.insert(0, repo + "/boards/common")
    sys.path.insert(0, repo + "/boards/" + board_dir)
