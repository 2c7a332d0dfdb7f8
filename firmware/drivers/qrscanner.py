# UART QR scanner module (GM65 class): each decoded code arrives as one line ending in the
# module's suffix (CR by default on the GM65; CR LF or LF when configured so).
#
#   scanner = QrScanner(uart)
#   text = scanner.poll()        # one complete line (str), or None
#   scanner.dropped, scanner.drops, scanner.last_drop
#   scanner.use_fast_baud(set_baud, 9600)   # at start-up: find the module, move it to 115200
#
# Lines are bounded (max_len): an oversize line is dropped whole and the reader resyncs on the
# next terminator. A line with bytes outside printable ASCII is dropped ("binary": line noise, a
# module answer, a code that is not ours). A partial line left without its end for stale_ms is
# dropped when new bytes come ("stale": a glitch before a real code). Empty lines are ignored.
#
# Configuration commands (GM65 serial protocol, the "zone bit" table of its manual):
#   host -> module  7E 00 <type> <len> <addr hi> <addr lo> <data...> <CRC hi> <CRC lo>
#                   type 0x07 read zone bits (data = number of bytes), 0x08 write, 0x09 save to
#                   flash; CRC-16/XMODEM over type..data (the module also accepts AB CD = no CRC)
#   module -> host  02 00 00 <len> <data...> <CRC hi> <CRC lo>  (CRC over 00 00 <len> <data>)
# Only a minimal, documented set is used: trigger a scan (zone 0x0002 = 01), the read mode (bits
# 1..0 of zone 0x0000), the baud rate (zones 0x002A-0x002B), save. Run them at start-up, before
# codes are scanned: bytes that are not the answer are discarded while waiting for it.
# use_fast_baud() builds on them: the GM65 ships at 9600 baud, where a ride code alone takes
# about half a second on the wire (docs/performance.md).
from drivers.ticks import ticks_ms as _ticks_ms, ticks_diff as _ticks_diff, sleep_ms as _sleep_ms

MAX_LINE = 1024

# drop reasons
OVERSIZE = "oversize"
BINARY = "binary"
STALE = "stale"
IO = "io"

# GM65 command types and zone addresses
T_READ = 0x07
T_WRITE = 0x08
T_SAVE = 0x09
ZONE_MODE = 0x0000        # bits 1..0: read mode
ZONE_TRIGGER = 0x0002     # write 01: scan once (command-trigger mode)
ZONE_BAUD = 0x002A        # 2 bytes, little endian divisor
MODE_MANUAL = 0
MODE_COMMAND = 1          # scans only when triggered by the host
MODE_CONTINUOUS = 2
MODE_INDUCTION = 3
BAUD_DIVISORS = {9600: 0x0139, 115200: 0x001A}   # the two rates documented with their values
FAST_BAUD = 115200
FACTORY_BAUD = 9600

# use_fast_baud() outcomes
BAUD_FAST = "fast"            # the module answered at 115200 already: nothing changed
BAUD_SWITCHED = "switched"    # it answered at 9600; now at 115200, saved to its flash
BAUD_SLOW = "slow"            # it answered at 9600 but did not move: the link stays at 9600
BAUD_NO_ANSWER = "no_answer"  # no answer at either speed: the link is left as configured
BAUD_ERROR = "error"          # setting the host UART's speed raised: left as configured


def crc16_xmodem(data, crc=0):
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def build_command(kind, addr, data):
    body = bytes((kind, len(data), addr >> 8, addr & 0xFF)) + bytes(data)
    c = crc16_xmodem(body)
    return b"\x7e\x00" + body + bytes((c >> 8, c & 0xFF))


def parse_reply(buf):
    """(data, consumed) for the first complete reply in buf; (None, k) when more bytes are
    needed after discarding k leading bytes that cannot start one; data is False for a reply
    whose CRC fails."""
    i = buf.find(b"\x02\x00\x00")
    if i < 0:
        return None, max(0, len(buf) - 2)
    if len(buf) < i + 4:
        return None, i
    n = buf[i + 3]
    end = i + 4 + n + 2
    if len(buf) < end:
        return None, i
    data = bytes(buf[i + 4:i + 4 + n])
    c = crc16_xmodem(buf[i + 1:i + 4 + n])
    if (buf[end - 2] << 8 | buf[end - 1]) != c:
        return False, end
    return data, end


class QrScanner:
    CHUNK = 128
    READS_PER_POLL = 8        # a flooding line cannot keep poll() busy for ever

    def __init__(self, uart, max_len=MAX_LINE, clock_ms=None, stale_ms=500, idle=None,
                 terminators=b"\r\n"):
        self.uart = uart
        self.max_len = max_len
        self.clock_ms = clock_ms or _ticks_ms
        self.stale_ms = stale_ms
        self.idle = idle or _default_idle
        self._terms = [bytes((t,)) for t in terminators]
        self._chunk = bytearray(self.CHUNK)
        self._pos = 0
        self._end = 0
        # the line being received, in a buffer of its largest size made once (a line grown by
        # appending would leave a trail of smaller copies in the heap, every scan)
        self._line = bytearray(max_len)
        self._n = 0
        self._over = False        # the current line already passed max_len: discarding
        self._last = 0            # clock when the current partial line last grew
        self.baud = None          # host UART speed after use_fast_baud() (None: not run)
        self.baud_state = None    # its BAUD_* outcome
        self.lines = 0
        self.dropped = 0
        self.drops = {}
        self.last_drop = None

    def _drop(self, why):
        self.dropped += 1
        self.drops[why] = self.drops.get(why, 0) + 1
        self.last_drop = why

    def _read(self):
        try:
            n = self.uart.any()
            if not n:
                return 0
            mv = memoryview(self._chunk)
            got = self.uart.readinto(mv[:min(n, self.CHUNK)])
        except OSError:
            self._drop(IO)
            return 0
        self._pos = 0
        self._end = got or 0
        return self._end

    def poll(self):
        """One complete line as str, or None when there is none yet."""
        reads = 0
        while True:
            if self._pos >= self._end:
                if reads >= self.READS_PER_POLL or not self._read():
                    return None
                reads += 1
            line = self._scan()
            if line is not None:
                return line

    def _scan(self):
        c = self._chunk
        s = self._pos
        e = self._end
        j = e
        for t in self._terms:
            k = c.find(t, s, j)
            if k >= 0:
                j = k
        if j > s:
            now = self.clock_ms()
            if (self._n or self._over) and _ticks_diff(now, self._last) > self.stale_ms:
                self._n = 0
                self._over = False
                self._drop(STALE)
            self._last = now
            if not self._over:
                n = self._n + (j - s)
                if n > self.max_len:
                    self._over = True
                    self._n = 0
                else:
                    self._line[self._n:n] = memoryview(c)[s:j]
                    self._n = n
        if j >= e:
            self._pos = e
            return None
        self._pos = j + 1
        return self._finish()

    def _finish(self):
        line = memoryview(self._line)[:self._n]
        self._n = 0
        if self._over:
            self._over = False
            self._drop(OVERSIZE)
            return None
        if not line:
            return None                     # the LF of a CR LF pair, or a blank line
        if min(line) < 0x20 or max(line) > 0x7E:
            self._drop(BINARY)
            return None
        self.lines += 1
        return str(line, "ascii")

    def reset(self):
        """Forget a partial line and buffered input."""
        self._n = 0
        self._over = False
        self._pos = self._end = 0

    # --- GM65 configuration ---

    def command(self, kind, addr, data, timeout_ms=500):
        """Send one command; the data of the module's reply, or None (no valid reply in time).
        Input received meanwhile is discarded (do this before codes are scanned)."""
        self.reset()
        frame = build_command(kind, addr, data)
        try:
            self.uart.write(frame)
        except OSError:
            self._drop(IO)
            return None
        buf = bytearray()
        start = self.clock_ms()
        while _ticks_diff(self.clock_ms(), start) < timeout_ms:
            n = self._read()
            if n:
                buf.extend(memoryview(self._chunk)[:n])
                self._pos = self._end
                data_, k = parse_reply(buf)
                if data_ is not None:
                    # bytes after the reply (a code scanned right after a trigger) are lines:
                    # they all came in the last read, so they fit back into the chunk buffer
                    rest = len(buf) - k
                    self._chunk[0:rest] = buf[k:]
                    self._pos = 0
                    self._end = rest
                    return None if data_ is False else data_
                buf[0:k] = b""
                if len(buf) > 64:             # bounded: a reply is at most 4 + 255 + 2, ours 8
                    buf[0:len(buf) - 8] = b""
            else:
                self.idle()
        return None

    def write_zone(self, addr, data, timeout_ms=500):
        return self.command(T_WRITE, addr, data, timeout_ms) is not None

    def read_zone(self, addr, count=1, timeout_ms=500):
        d = self.command(T_READ, addr, bytes((count,)), timeout_ms)
        return d if d is not None and len(d) == count else None

    def trigger(self, timeout_ms=500):
        """Scan once (command-trigger mode)."""
        return self.write_zone(ZONE_TRIGGER, b"\x01", timeout_ms)

    def set_mode(self, mode, timeout_ms=500):
        cur = self.read_zone(ZONE_MODE, 1, timeout_ms)
        if cur is None:
            return False
        return self.write_zone(ZONE_MODE, bytes(((cur[0] & 0xFC) | (mode & 3),)), timeout_ms)

    def set_baud(self, baud, timeout_ms=500):
        """The module's UART speed (re-open the host UART at the new speed afterwards)."""
        d = BAUD_DIVISORS[baud]
        return self.write_zone(ZONE_BAUD, bytes((d & 0xFF, d >> 8)), timeout_ms)

    def save(self, timeout_ms=500):
        """Keep the zone bits over power cycles (the module's flash)."""
        return self.command(T_SAVE, 0x0000, b"\x00", timeout_ms) is not None

    def use_fast_baud(self, set_baud, configured, fast=FAST_BAUD, slow=FACTORY_BAUD,
                      timeout_ms=200):
        """Start-up step: find the module at `fast`, then at `slow` (it answers a zone-bit
        read only at its own speed); one found at `slow` is set to `fast` and saved. `set_baud(b)`
        sets the host UART's speed in place (esp32 port: `lambda b: uart.init(baudrate=b)`);
        `configured` is the speed it was opened at. Returns one of the BAUD_* outcomes, also
        kept in `baud_state`, with the host's speed afterwards in `baud`. Never raises; bounded
        by at most five command timeouts. Run it before codes are scanned."""
        self.baud = configured
        try:
            state = self._find_and_switch(set_baud, fast, slow, timeout_ms)
        except Exception:  # noqa: BLE001 -- a UART that refuses the speed: keep the start going
            state = BAUD_ERROR
        if state in (BAUD_NO_ANSWER, BAUD_ERROR):
            try:
                self._host_baud(set_baud, configured)
            except Exception:  # noqa: BLE001
                pass
        self.baud_state = state
        self.reset()
        return state

    def _host_baud(self, set_baud, baud):
        if baud != self.baud:
            set_baud(baud)
            self.baud = baud

    def _answers_at(self, set_baud, baud, timeout_ms):
        self._host_baud(set_baud, baud)
        return self.read_zone(ZONE_BAUD, 2, timeout_ms) is not None

    def _find_and_switch(self, set_baud, fast, slow, timeout_ms):
        if self._answers_at(set_baud, fast, timeout_ms):
            return BAUD_FAST
        if not self._answers_at(set_baud, slow, timeout_ms):
            return BAUD_NO_ANSWER
        # GM65-class modules answer a speed change at the old speed, then switch; saving at
        # the new speed proves the switch. A module that switches only once saved answers the
        # save at the old speed instead, and is checked at the new one after.
        self.set_baud(fast, timeout_ms)
        self._host_baud(set_baud, fast)
        if self.save(timeout_ms):
            return BAUD_SWITCHED
        self._host_baud(set_baud, slow)
        if self.save(timeout_ms) and self._answers_at(set_baud, fast, timeout_ms):
            return BAUD_SWITCHED
        if self._answers_at(set_baud, slow, timeout_ms):
            return BAUD_SLOW
        return BAUD_NO_ANSWER


def _default_idle():
    _sleep_ms(1)
