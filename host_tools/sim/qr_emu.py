"""A GM65-class UART QR scanner module on a pty: it "types" decoded codes into the pty, each
followed by the module's suffix, and answers the module's serial configuration commands.

    emu = QrEmulator(suffix=b"\\r")
    emu.start()                   # emu.path is the slave side: give it to the firmware
    emu.scan("FV1:...")           # one decoded code
    emu.send_raw(b"\\x00\\xff")     # line noise
    emu.oversize(5000)            # a line longer than any reader accepts
    emu.wait_sent()               # everything queued is in the pty
    emu.stop()

Options: `chunk` (write lines in pieces of this many bytes, `pause_s` apart: partial reads),
`require_trigger` (codes wait for the host's trigger command, like command-trigger mode).

Commands from the host (GM65 serial protocol): 7E 00 <type> <len> <addr hi> <addr lo> <data>
<CRC hi> <CRC lo> with type 0x07 read zone bits, 0x08 write, 0x09 save; CRC-16/XMODEM over
type..data, or AB CD for "no CRC". Answer: 02 00 00 <len> <data> <CRC> (CRC over 00 00 <len>
<data>); a write or save answers data 00. Frames with a wrong CRC get no answer.
"""
import binascii
import collections
import os
import select
import threading
import time

from host_tools.sim.ptydevice import PtyDevice

SUFFIXES = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n", "none": b""}

ZONE_MODE = 0x0000
ZONE_TRIGGER = 0x0002
ZONE_BAUD = 0x002A


def crc(data):
    return binascii.crc_hqx(bytes(data), 0)


def reply(data):
    body = bytes([0x00, 0x00, len(data)]) + bytes(data)
    c = crc(body)
    return b"\x02" + body + bytes([c >> 8, c & 0xFF])


def command(kind, addr, data, no_crc=False):
    """A host command frame (for tests and tools that talk to a real module)."""
    body = bytes([kind, len(data), addr >> 8, addr & 0xFF]) + bytes(data)
    c = 0xABCD if no_crc else crc(body)
    return b"\x7e\x00" + body + bytes([c >> 8, c & 0xFF])


class QrEmulator(PtyDevice):
    THREAD_NAME = "qr-emu"

    def __init__(self, suffix=b"\r", chunk=None, pause_s=0.002, require_trigger=False,
                 link=None, log=None):
        self.suffix = suffix
        self.chunk = chunk
        self.pause_s = pause_s
        self.require_trigger = require_trigger
        PtyDevice.__init__(self, link, log)
        self._lock = threading.Lock()
        self._out = collections.deque()      # (bytes, needs_trigger)
        self._idle = threading.Event()
        self._idle.set()
        self._triggers = 0
        # zone bits: continuous mode, 9600 baud (divisor 0x0139), as shipped
        self.zones = bytearray(0x100)
        self.zones[ZONE_MODE] = 0x02
        self.zones[ZONE_BAUD] = 0x39
        self.zones[ZONE_BAUD + 1] = 0x01
        self.commands = []                   # (type, addr, data) of valid host commands
        self.bad_commands = 0
        self.saves = 0
        self.triggers = 0

    # --- control (any thread) ---

    def scan(self, text, suffix=None):
        data = text.encode() if isinstance(text, str) else bytes(text)
        self._queue(data + (self.suffix if suffix is None else suffix), True)

    def send_raw(self, data):
        self._queue(bytes(data), False)

    def oversize(self, n, suffix=None):
        self._queue(b"A" * n + (self.suffix if suffix is None else suffix), True)

    def _queue(self, data, is_code):
        with self._lock:
            self._idle.clear()
            self._out.append((data, is_code and self.require_trigger))

    def wait_sent(self, timeout=10):
        """True once every queued byte is written to the pty."""
        return self._idle.wait(timeout)

    # --- life cycle ---


    # --- the module ---

    def _run(self):
        inbuf = bytearray()
        while not self._stop.is_set():
            r, _, _ = select.select([self._master], [], [], 0.01)
            if r:
                try:
                    data = os.read(self._master, 4096)
                except OSError:
                    data = b""
                    time.sleep(0.01)
                if data:
                    self._trace("<- " + data.hex())
                    inbuf.extend(data)
                    self._commands(inbuf)
            self._write_pending()

    def _write_pending(self):
        with self._lock:
            if not self._out:
                self._idle.set()
                return
            data, needs_trigger = self._out[0]
            if needs_trigger:
                if self._triggers == 0:
                    return
                self._triggers -= 1
            self._out.popleft()
        step = self.chunk or len(data) or 1
        for i in range(0, len(data), step):
            self._write_all(data[i:i + step])
            if self.chunk and i + step < len(data):
                time.sleep(self.pause_s)
        self._trace("-> %d bytes" % len(data))

    def _write_all(self, data):
        mv = memoryview(data)
        while mv and not self._stop.is_set():
            _, w, _ = select.select([], [self._master], [], 0.05)
            if w:
                n = os.write(self._master, mv)
                mv = mv[n:]

    def _commands(self, buf):
        while True:
            i = buf.find(b"\x7e\x00")
            if i < 0:
                del buf[:max(0, len(buf) - 1)]
                return
            del buf[:i]
            if len(buf) < 6:
                return
            kind, n, addr = buf[2], buf[3], buf[4] << 8 | buf[5]
            end = 6 + n + 2
            if len(buf) < end:
                return
            data = bytes(buf[6:6 + n])
            c = buf[end - 2] << 8 | buf[end - 1]
            body = bytes(buf[2:6 + n])
            del buf[:end]
            if c != 0xABCD and c != crc(body):
                self.bad_commands += 1
                continue
            self.commands.append((kind, addr, data))
            self._execute(kind, addr, data)

    def _execute(self, kind, addr, data):
        span = (data[0] or 1) if kind == 0x07 and data else len(data)
        if addr + span > len(self.zones):                # outside the zone table
            self.bad_commands += 1
            return
        if kind == 0x07 and len(data) == 1:              # read zone bits
            self._write_all(reply(self.zones[addr:addr + span]))
        elif kind == 0x08:                               # write zone bits
            self.zones[addr:addr + len(data)] = data
            if addr == ZONE_TRIGGER and data[:1] == b"\x01":
                with self._lock:
                    self._triggers += 1
                self.triggers += 1
                self.zones[ZONE_TRIGGER] = 0
            self._write_all(reply(b"\x00"))
        elif kind == 0x09:                               # save to flash
            self.saves += 1
            self._write_all(reply(b"\x00"))
        else:
            self.bad_commands += 1
