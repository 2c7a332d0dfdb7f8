# PN532 NFC front end on its high-speed UART (HSU): the host-controller frame protocol and an
# ISO/IEC 14443-4 APDU exchange for the validator. Frame layout, commands and status codes are
# from the PN532 user manual (NXP UM0701-02); the code is ours.
#
#   reader = PN532(uart)              # uart: read/readinto/write/any, like machine.UART
#   reader.begin()                    # wake-up, SAMConfiguration, firmware check, parameters,
#                                     # retry limits
#   reader.ready, reader.error        # True after begin() worked; else why it did not
#   target = reader.poll()            # a Target, or None when no card or phone is in the field
#   resp = reader.exchange(apdu)      # response bytes (data + SW1 SW2), or NfcError
#
# Every failure (no answer, checksum errors past the retries, the phone gone, a status error) is
# one NfcError; the validator maps it to reasons.NFC_FAILED. Input is parsed in a bounded buffer
# and never grows it; garbage before a frame is skipped. Every wait is bounded on the injected
# clock: a write the link does not accept (write_timeout_ms), and each command as a whole
# (command_deadline_ms), whatever the chip keeps sending.
from drivers.ticks import ticks_ms as _ticks_ms, ticks_diff as _ticks_diff, sleep_ms as _sleep_ms

TFI_HOST = 0xD4     # frame from the host controller to the PN532
TFI_PN532 = 0xD5    # frame from the PN532 to the host
TFI_ERROR = 0x7F    # the application-level error frame: 00 00 FF 01 FF 7F 81 00

ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
# HSU wake-up: 0x55 0x55 then zeros keep the line busy while the PN532 leaves power-down
WAKEUP = b"\x55\x55" + bytes(14)

MAX_LEN = 265       # TFI + 264 bytes of packet data: the PN532 firmware's limit (extended frames)
MAX_APDU = 262      # InDataExchange DataOut: command byte + Tg + 262 = 264

CMD_GET_FIRMWARE_VERSION = 0x02
CMD_SET_PARAMETERS = 0x12
CMD_SAM_CONFIGURATION = 0x14
CMD_RF_CONFIGURATION = 0x32
CMD_IN_DATA_EXCHANGE = 0x40
CMD_IN_LIST_PASSIVE_TARGET = 0x4A
CMD_IN_RELEASE = 0x52

# parser events
EV_ACK = 1
EV_NACK = 2
EV_FRAME = 3        # payload: bytes TFI + data (checksums verified)
EV_BAD = 4          # payload: "lcs", "dcs" or "length"

# InDataExchange / InRelease status byte: bits 5..0 error code, bit 6 MI (more data to fetch),
# bit 7 NAD present. Error codes (UM0701 table "Error code list"):
STATUS_NAMES = {
    0x01: "target timeout",            # the card or phone did not answer: moved away
    0x02: "CRC error",
    0x03: "parity error",
    0x04: "bit count error",
    0x05: "framing error",
    0x06: "bit collision",
    0x07: "buffer too small",
    0x09: "RF buffer overflow",
    0x0A: "RF field not on in time",
    0x0B: "RF protocol error",
    0x0D: "overheating",
    0x0E: "internal buffer overflow",
    0x10: "invalid parameter",
    0x12: "command not supported by target",
    0x13: "wrong data format",
    0x14: "authentication error",
    0x23: "UID check byte wrong",
    0x25: "invalid device state",
    0x26: "operation not allowed",
    0x27: "command not acceptable in this context",
    0x29: "target released",
    0x2A: "card exchanged",
    0x2B: "card disappeared",
    0x2C: "NFCID3 mismatch",
    0x2D: "over-current",
    0x2E: "NAD missing",
}
GONE_STATUSES = (0x01, 0x29, 0x2A, 0x2B)

# NfcError kinds
NO_ACK = "no_ack"          # the PN532 did not acknowledge the command (after the resends)
TIMEOUT = "timeout"        # acknowledged, but no response in time (the command was aborted)
CHECKSUM = "checksum"      # responses kept failing their checksums (after the NACKs)
PROTOCOL = "protocol"      # syntax-error frame, malformed or oversized response
CARD = "card"              # the PN532 reported a status error from the target (see .status)
NO_TARGET = "no_target"    # exchange() without a target in the field
IO = "io"                  # the UART itself failed, or did not take a write in time
DEADLINE = "deadline"      # the command's overall deadline passed (a chip that keeps talking
                           # without answering: stale frames, ACKs, noise)
# NO_ACK, IO and DEADLINE say the chip itself is unreachable or confused: `ready` turns False


class NfcError(Exception):
    """The one error of this driver. `kind` is one of the constants above; `status` the PN532
    status code for CARD errors (0 otherwise)."""

    def __init__(self, kind, detail="", status=0):
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail
        self.status = status

    @property
    def card_gone(self):
        return self.kind == CARD and self.status in GONE_STATUSES


def encode_frame(body):
    """The frame carrying `body` (TFI + data, 1..MAX_LEN bytes); an extended frame above 255."""
    n = len(body)
    if n < 1 or n > MAX_LEN:
        raise ValueError("frame body length")
    dcs = (-sum(body)) & 0xFF
    if n <= 255:
        head = bytes((0x00, 0x00, 0xFF, n, (-n) & 0xFF))
    else:
        hi = n >> 8
        lo = n & 0xFF
        head = bytes((0x00, 0x00, 0xFF, 0xFF, 0xFF, hi, lo, (-(hi + lo)) & 0xFF))
    return head + bytes(body) + bytes((dcs, 0x00))


def encode_command(cmd, params=b""):
    return encode_frame(bytes((TFI_HOST, cmd)) + bytes(params))


class FrameParser:
    """Incremental parser of PN532 frames in a fixed buffer (no allocation but the frames it
    returns). Bytes come in with feed(data) or readinto(space(n)) + commit(n), at most room()
    at a time; next() returns (event, payload) or None when more bytes are needed. Bytes before
    a start code are skipped (counted in `skipped`); after a bad length checksum the parser
    resyncs on the next start code, after a bad data checksum past the whole frame."""

    def __init__(self, max_len=MAX_LEN):
        self.max_len = max_len
        # room for one whole extended frame plus a read chunk of garbage in front of it
        self.cap = max_len + 80
        self._buf = bytearray(self.cap)
        self._mv = memoryview(self._buf)
        self._s = 0                  # unparsed bytes are _buf[_s:_e]
        self._e = 0
        self.skipped = 0
        self.bad = 0

    def __len__(self):
        return self._e - self._s

    def room(self):
        return self.cap - (self._e - self._s)

    def space(self, n):
        """A writable view of up to n free bytes at the end (moves pending bytes to the front)."""
        s = self._s
        if s:
            k = self._e - s
            self._mv[0:k] = self._mv[s:self._e]
            self._s = 0
            self._e = k
        return self._mv[self._e:min(self.cap, self._e + n)]

    def commit(self, n):
        self._e += n

    def feed(self, data):
        n = min(len(data), self.room())
        if n > 0:
            self.space(n)[:n] = data[:n]
            self._e += n
        return n

    def clear(self):
        self._s = self._e = 0

    def next(self):
        b = self._buf
        s = self._s
        e = self._e
        i = b.find(b"\x00\xff", s, e)
        if i < 0:
            # nothing that starts a frame: keep a trailing 0x00, it may be half a start code
            k = e - 1 if e > s and b[e - 1] == 0 else e
            self.skipped += k - s
            self._s = k
            return None
        self.skipped += i - s
        self._s = i
        # b[i:i+2] is the start code 00 FF
        if e - i < 4:
            return None
        l0 = b[i + 2]
        l1 = b[i + 3]
        if (l0 == 0x00 and l1 == 0xFF) or (l0 == 0xFF and l1 == 0x00):
            k = i + 4
            if k < e and b[k] == 0:
                k += 1                                 # postamble, when already here
            self._s = k
            return (EV_ACK, None) if l0 == 0 else (EV_NACK, None)
        if l0 == 0xFF and l1 == 0xFF:                  # extended: FF FF LENM LENL LCS
            if e - i < 7:
                return None
            hi = b[i + 4]
            lo = b[i + 5]
            if (hi + lo + b[i + 6]) & 0xFF:
                return self._bad(i + 1, "lcs")
            n = hi << 8 | lo
            hdr = i + 7
        else:
            if (l0 + l1) & 0xFF:
                return self._bad(i + 1, "lcs")
            n = l0
            hdr = i + 4
        if n == 0 or n > self.max_len:
            return self._bad(i + 1, "length")
        end = hdr + n                                  # index of DCS
        if e <= end:
            return None
        body = bytes(self._mv[hdr:end])
        ok = (sum(body) + b[end]) & 0xFF == 0
        k = end + 1
        if k < e and b[k] == 0:
            k += 1                                     # postamble
        if not ok:
            return self._bad(k, "dcs")
        self._s = k
        return (EV_FRAME, body)

    def _bad(self, k, why):
        self.bad += 1
        self._s = k
        return (EV_BAD, why)


class Target:
    """A passive ISO 14443 type A target found by InListPassiveTarget."""

    def __init__(self, tg, sens_res, sel_res, uid, ats):
        self.tg = tg
        self.sens_res = sens_res     # 2 bytes (ATQA)
        self.sel_res = sel_res       # SAK
        self.uid = uid               # NFCID1, 4, 7 or 10 bytes
        self.ats = ats               # b"" when the target is not ISO 14443-4

    @property
    def iso14443_4(self):
        return bool(self.sel_res & 0x20)

    def __repr__(self):
        return "Target(tg=%d uid=%s sak=%02x ats=%s)" % (
            self.tg, _hex(self.uid), self.sel_res, _hex(self.ats))


def _hex(b):
    return "".join("%02x" % x for x in b)


def parse_list_passive_106a(data):
    """Target of an InListPassiveTarget answer (data after the command byte: NbTg, ...), or None
    when no target was found. A malformed answer is a PROTOCOL NfcError."""
    if len(data) < 1:
        raise NfcError(PROTOCOL, "empty target list")
    if data[0] == 0:
        return None
    # Tg, SENS_RES (2), SEL_RES, NFCIDLength, NFCID1, then ATS (its first byte is its length)
    if len(data) < 6:
        raise NfcError(PROTOCOL, "short target data")
    tg = data[1]
    sens_res = bytes(data[2:4])
    sel_res = data[4]
    n = data[5]
    if n not in (4, 7, 10) or len(data) < 6 + n:
        raise NfcError(PROTOCOL, "bad UID length")
    uid = bytes(data[6:6 + n])
    rest = data[6 + n:]
    ats = b""
    if rest:
        tl = rest[0]
        if tl < 1 or tl > len(rest):
            raise NfcError(PROTOCOL, "bad ATS length")
        ats = bytes(rest[:tl])
    return Target(tg, sens_res, sel_res, uid, ats)


class PN532:
    """The PN532 on a UART. `clock_ms()` gives milliseconds (default time.ticks_ms) and `idle()`
    is called while waiting for bytes (default: sleep 1 ms); both are injectable so that tests
    control time. Timeouts and retry counts are plain attributes, settable at any time."""

    CHUNK = 128

    def __init__(self, uart, clock_ms=None, idle=None, ack_timeout_ms=50,
                 response_timeout_ms=1000, poll_timeout_ms=300, retries=2, passive_retries=1,
                 max_response=1024, write_timeout_ms=100, command_deadline_ms=1500):
        self.uart = uart
        self.clock_ms = clock_ms or _ticks_ms
        self.idle = idle or _default_idle
        self.ack_timeout_ms = ack_timeout_ms
        self.response_timeout_ms = response_timeout_ms   # InDataExchange: the phone computes
        self.poll_timeout_ms = poll_timeout_ms
        # the most one write may wait for the link to take bytes (an I2C chip that does not
        # acknowledge its address takes none)
        self.write_timeout_ms = write_timeout_ms
        # the most one command() may take from its first write, resends and NACKs included;
        # raised to the command's own response timeout + (retries + 1) ACK waits when lower
        self.command_deadline_ms = command_deadline_ms
        self.retries = retries                 # resends of a command, NACKs for a response
        self.passive_retries = passive_retries  # MxRtyPassiveActivation: how long a poll looks
        self.max_response = max_response       # bytes of one APDU response, chained parts included
        self.parser = FrameParser()
        self.target = None
        self.firmware = None
        self.ready = False     # begin() succeeded and no command found the chip gone since
        self.error = None      # the exception of the last failed begin() (None after a good one)
        # counters for diagnostics (the reader reports them; tests check them)
        self.resends = 0
        self.nacks_sent = 0
        self.aborts = 0
        self.ignored = 0

    # --- transport ---

    def _write(self, data):
        start = self.clock_ms()
        try:
            mv = memoryview(data)
            off = 0
            while off < len(data):
                n = self.uart.write(mv[off:])
                if n is None:     # machine.UART may return None if nothing was accepted
                    n = 0
                off += n
                if n == 0:
                    if _ticks_diff(self.clock_ms(), start) >= self.write_timeout_ms:
                        raise OSError(110)     # ETIMEDOUT: the link takes no bytes
                    self.idle()
        except OSError as e:
            self.ready = False
            raise NfcError(IO, "write: %s" % e)

    def _fill(self):
        """Read what the UART holds (at most the parser's room); returns the byte count."""
        p = self.parser
        room = min(p.room(), self.CHUNK)
        if room <= 0:
            return 0
        try:
            avail = self.uart.any()
            if not avail:
                return 0
            n = self.uart.readinto(p.space(min(room, avail)))
        except OSError as e:
            self.ready = False
            raise NfcError(IO, "read: %s" % e)
        if not n:
            return 0
        p.commit(n)
        return n

    def _drain(self):
        """Forget stale input (late answers to an aborted command) before a new command."""
        self.parser.clear()
        for _ in range(16):
            if not self._fill():
                break
            self.parser.clear()

    def _wait(self, timeout_ms):
        """Next parser event within timeout_ms, or None."""
        # the clock is read after every read too: bytes that never make a frame cannot hold it
        start = self.clock_ms()
        while True:
            ev = self.parser.next()
            if ev is not None:
                return ev
            if timeout_ms <= 0:
                return None
            n = self._fill()
            if _ticks_diff(self.clock_ms(), start) >= timeout_ms:
                timeout_ms = 0        # parse what was just read, then give up
            elif not n:
                self.idle()

    def wakeup(self):
        self._write(WAKEUP)

    def abort(self):
        """An ACK frame from the host aborts the command the PN532 is executing."""
        self._write(ACK)
        self.aborts += 1

    # --- commands ---

    def command(self, cmd, params=b"", timeout_ms=None):
        """Send a command; return the response data after the response code (cmd + 1).
        Resends on NACK, a garbled ACK or no ACK; NACKs a garbled response."""
        if timeout_ms is None:
            timeout_ms = self.response_timeout_ms
        frame = encode_command(cmd, params)
        want = cmd + 1
        # one deadline for the whole call (see __init__): ignored frames, ACKs and NACKs do not
        # start fresh waits past it
        start = self.clock_ms()
        deadline = max(self.command_deadline_ms,
                       timeout_ms + (self.retries + 1) * self.ack_timeout_ms)
        ev = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.resends += 1
            self._drain()
            self._write(frame)
            ev = self._wait(self._left(cmd, start, deadline, self.ack_timeout_ms))
            while ev is not None and ev[0] == EV_FRAME and not self._answers(ev[1], want):
                self.ignored += 1                     # stale frame of an earlier command
                ev = self._wait(self._left(cmd, start, deadline, self.ack_timeout_ms))
            if ev is not None and (ev[0] == EV_ACK or ev[0] == EV_FRAME):
                break
        else:
            self.ready = False
            raise NfcError(NO_ACK, "command 0x%02x" % cmd)
        if ev[0] == EV_ACK:
            ev = None          # the response is still to come
        nacks = 0
        while True:
            if ev is None:
                ev = self._wait(self._left(cmd, start, deadline, timeout_ms))
            if ev is None:
                self.abort()
                raise NfcError(TIMEOUT, "command 0x%02x" % cmd)
            kind, body = ev
            ev = None
            if kind == EV_FRAME:
                if body[0] == TFI_ERROR:
                    raise NfcError(PROTOCOL, "syntax error frame")
                if self._answers(body, want):
                    return body[2:]
                self.ignored += 1
            elif kind == EV_BAD:
                if nacks >= self.retries:
                    raise NfcError(CHECKSUM, "command 0x%02x" % cmd)
                nacks += 1
                self.nacks_sent += 1
                self._write(NACK)                     # the PN532 sends its response again
            # ACK or NACK frames while waiting for the response: ignore

    def _left(self, cmd, start, deadline, timeout_ms):
        """timeout_ms, or less when the command's deadline comes first; NfcError once past it."""
        n = deadline - _ticks_diff(self.clock_ms(), start)
        if n <= 0:
            self.ready = False
            self.abort()          # whatever the chip is doing for this command: stop it
            raise NfcError(DEADLINE, "command 0x%02x" % cmd)
        return min(timeout_ms, n)

    @staticmethod
    def _answers(body, want):
        return (len(body) >= 2 and body[0] == TFI_PN532 and body[1] == want) or body[0] == TFI_ERROR

    def begin(self):
        """Wake the PN532 (HSU), put it in normal mode, check it is a PN532, set its parameters
        and limit how long InListPassiveTarget looks for a card. Returns (IC, version, revision,
        support)."""
        # Sets `ready`; a failure leaves it False, keeps the exception in `error` and raises it
        # (an NfcError for anything the chip or link does). Call it again at any time: a chip
        # that was absent or confused is started from scratch.
        self.ready = False
        self.target = None
        try:
            self.wakeup()
            self.command(CMD_SAM_CONFIGURATION, b"\x01\x14\x01", self.poll_timeout_ms)  # normal
            fw = self.firmware_version()
            if fw[0] != 0x32:
                raise NfcError(PROTOCOL, "not a PN532 (IC 0x%02x)" % fw[0])
            # SetParameters (UM0701 7.2.9) flags 0x10: fAutomaticRATS only. The PN532 then runs
            # ISO-DEP itself (RATS after InListPassiveTarget, the ATS in its answer, I-blocks in
            # InDataExchange); NAD and CID in InDataExchange, no preamble/postamble and the
            # target-mode flags stay off. The chip comes up with automatic RATS on, but the whole
            # byte is set here: a chip that came up otherwise, or that another host configured,
            # would fail every APDU (status 0x01). (No named constant: on the unix port's 110 KB
            # test heap each new name costs a string-pool slot.)
            self.command(CMD_SET_PARAMETERS, b"\x10", self.poll_timeout_ms)
            self.set_passive_retries(self.passive_retries)
        except Exception as e:
            self.error = e
            raise
        self.firmware = fw
        self.error = None
        self.ready = True
        return fw

    def firmware_version(self):
        d = self.command(CMD_GET_FIRMWARE_VERSION, b"", self.poll_timeout_ms)
        if len(d) != 4:
            raise NfcError(PROTOCOL, "firmware version")
        return (d[0], d[1], d[2], d[3])

    def set_passive_retries(self, n):
        """RFConfiguration MaxRetries: MxRtyATR 0xFF, MxRtyPSL 1, MxRtyPassiveActivation n
        (0xFF would make InListPassiveTarget wait for a card forever)."""
        self.command(CMD_RF_CONFIGURATION, bytes((0x05, 0xFF, 0x01, n & 0xFF)),
                     self.poll_timeout_ms)
        self.passive_retries = n

    def poll(self):
        """InListPassiveTarget, one target, 106 kbps type A. Returns the Target (kept as
        self.target for exchange()) or None when nothing is in the field."""
        self.target = None
        try:
            d = self.command(CMD_IN_LIST_PASSIVE_TARGET, b"\x01\x00", self.poll_timeout_ms)
        except NfcError as e:
            if e.kind == TIMEOUT:      # still looking when we gave up: no card (aborted)
                return None
            raise
        t = parse_list_passive_106a(d)
        self.target = t
        return t

    def exchange(self, apdu):
        """Send a command APDU to the current target (InDataExchange) and return its response
        (data + SW1 SW2). Chained answers (MI bit) are fetched up to max_response bytes. Any
        failure raises NfcError and forgets the target: poll again for the next tap."""
        t = self.target
        if t is None:
            raise NfcError(NO_TARGET)
        if not 0 < len(apdu) <= MAX_APDU:
            raise NfcError(PROTOCOL, "APDU length %d" % len(apdu))
        try:
            tg = bytes((t.tg,))
            d = self.command(CMD_IN_DATA_EXCHANGE, tg + bytes(apdu))
            out = None
            while True:
                if len(d) < 1:
                    raise NfcError(PROTOCOL, "no status byte")
                st = d[0]
                code = st & 0x3F
                if code:
                    raise NfcError(CARD, STATUS_NAMES.get(code, "status 0x%02x" % code), code)
                if (len(out) if out else 0) + len(d) - 1 > self.max_response:
                    raise NfcError(PROTOCOL, "response too long")
                if not st & 0x40 and out is None:
                    return d[1:]                              # one part: the usual case
                if out is None:
                    out = bytearray()
                out.extend(memoryview(d)[1:])
                if not st & 0x40:
                    return bytes(out)
                d = self.command(CMD_IN_DATA_EXCHANGE, tg)    # MI: fetch the next part
        except NfcError:
            self.target = None
            raise

    def release(self):
        """InRelease of the current target (the phone may end its session)."""
        t = self.target
        self.target = None
        if t is not None:
            d = self.command(CMD_IN_RELEASE, bytes((t.tg,)), self.poll_timeout_ms)
            if d and d[0] & 0x3F:
                raise NfcError(CARD, "release", d[0] & 0x3F)


def _default_idle():
    _sleep_ms(1)
