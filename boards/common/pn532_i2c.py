# A PN532 wired on I2C, seen by the PN532 driver as if it were on a UART.
#
# The original ESP32 has three UARTs and the REPL owns UART0, so on esp32_devkitc the QR scanner
# and the depot sync link take UART1/UART2 and the PN532 sits on I2C. The host-controller frames
# are the same on both interfaces (PN532 user manual, 6.2); what differs on I2C:
#   - the host writes one whole frame per I2C write transaction (the chip wakes on its address,
#     so the HSU wake-up preamble of 0x55 bytes is not sent);
#   - every I2C read starts with a status byte, bit 0 = a frame is ready; the chip then sends
#     the frame and pads the rest of the transaction, and a frame is consumed by one read.
# This link reads a ready frame in one transaction, keeps only the frame (trimming the padding
# with the frame's own length field) and hands it out through the UART methods the driver uses:
# write(buf), read(n), readinto(buf), any(). Reads never block: None when nothing is there.
import time

ADDRESS = 0x24
READY = 0x01
# Largest normal information frame: preamble, start code (2), LEN, LCS, 255 data bytes, DCS,
# postamble = 262 bytes, plus the status byte. One read transaction fetches this much.
MAX_READ = 263
_EXTENDED_MAX = 10 + 264  # an extended frame we accept (the driver limits APDUs far below this)


def frame_end(buf, start=0):
    """Length of the frame at the front of buf[start:] from its own length field, or None if
    the bytes do not begin like a PN532 frame (then the caller passes them on unchanged)."""
    n = len(buf)
    i = start
    # preamble: any number of 0x00 bytes, then the start code 0x00 0xFF
    while i < n and buf[i] == 0x00:
        i += 1
    if i == start or i >= n or buf[i] != 0xFF:
        return None
    i += 1  # past the start code
    if i + 2 > n:
        return None
    a, b = buf[i], buf[i + 1]
    if a == 0x00 and b == 0xFF:  # ACK: 00 FF, then postamble
        end = i + 3
    elif a == 0xFF and b == 0x00:  # NACK
        end = i + 3
    elif a == 0xFF and b == 0xFF:  # extended frame: FF FF LENM LENL LCS data DCS 00
        if i + 5 > n:
            return None
        ln = (buf[i + 2] << 8) | buf[i + 3]
        if (buf[i + 2] + buf[i + 3] + buf[i + 4]) & 0xFF or ln > _EXTENDED_MAX:
            return None
        end = i + 5 + ln + 2
    else:  # normal frame: LEN LCS data DCS 00
        if (a + b) & 0xFF:
            return None
        end = i + 2 + a + 2
    if end > n:
        return None
    return end - start


class Pn532I2CLink:
    """UART-shaped access to a PN532 on an I2C bus (machine.I2C or anything with writeto and
    readfrom_into). `irq` is an optional machine.Pin on the PN532's IRQ line (low = ready),
    which saves polling the bus."""

    def __init__(self, i2c, address=ADDRESS, irq=None, retry_ms=2):
        self.i2c = i2c
        self.address = address
        self.irq = irq
        self.retry_ms = retry_ms
        self._raw = bytearray(MAX_READ)
        self._buf = b""
        self.errors = 0  # bus errors seen (NACKed address, timeouts): for diagnostics

    # -- host -> PN532 ------------------------------------------------------------------------

    def write(self, data):
        """Send the frame in `data` (bytes before its start, e.g. HSU wake-up bytes, are
        dropped). Returns len(data) as a UART would, or 0 if the chip did not answer on the bus."""
        data = bytes(data)
        start = _frame_start(data)
        if start < 0:
            # a wake-up sequence on its own: on I2C addressing the chip wakes it
            self._xfer_write(b"")
            return len(data)
        if self._xfer_write(data[start:]):
            return len(data)
        return 0

    def _xfer_write(self, frame):
        for attempt in range(2):  # a sleeping PN532 may NACK its address once while waking
            try:
                self.i2c.writeto(self.address, frame)
                return True
            except OSError:
                self.errors += 1
                time.sleep_ms(self.retry_ms)
        return False

    # -- PN532 -> host ------------------------------------------------------------------------

    def _fetch(self):
        if self._buf:
            return
        if self.irq is not None and self.irq.value():
            return  # IRQ high: nothing ready, no bus traffic
        raw = self._raw
        try:
            self.i2c.readfrom_into(self.address, raw)
        except OSError:
            self.errors += 1
            return
        if not raw[0] & READY:
            return
        n = frame_end(raw, 1)
        if n is None:
            # not a frame we can delimit: hand the bytes over and let the driver resync
            self._buf = bytes(raw[1:])
        else:
            self._buf = bytes(raw[1:1 + n])

    def any(self):
        self._fetch()
        return len(self._buf)

    def read(self, n=-1):
        self._fetch()
        if not self._buf:
            return None
        if n is None or n < 0 or n >= len(self._buf):
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def readinto(self, buf, nbytes=-1):
        want = len(buf) if nbytes is None or nbytes < 0 else min(nbytes, len(buf))
        data = self.read(want)
        if not data:
            return None
        buf[:len(data)] = data
        return len(data)


def _frame_start(data):
    """Index of the frame's preamble byte (the 0x00 before the 0x00 0xFF start code), or -1."""
    i = data.find(b"\x00\xff")
    if i < 0:
        return -1
    return i - 1 if i > 0 and data[i - 1] == 0 else i
