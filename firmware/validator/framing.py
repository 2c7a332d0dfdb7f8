# Serial framing of the depot protocol (docs/sync-protocol.md, "Framing"). Pure logic: the reader
# and the depot host (through host_tools.common.fw) use this one implementation.
#
#   wire frame = 0x00 | COBS(payload | CRC-32(payload), 4 bytes little-endian) | 0x00
#
# COBS removes every 0x00 from the frame body, so 0x00 only ever delimits frames: after line noise
# or a cut cable the receiver throws away what it holds at the next 0x00 and is in step again.
# The leading 0x00 flushes a half frame left over from a broken link before the new frame starts.
# CRC-32 is the IEEE/zlib one (binascii.crc32), computed over the payload.
try:
    from binascii import crc32 as _crc32
except ImportError:  # a firmware built without MICROPY_PY_BINASCII_CRC32
    _crc32 = None

DELIM = b"\x00"
CRC_SIZE = 4
MAX_PAYLOAD = 4608  # default bound on a decoded payload: 4 KiB of records plus headers


def _crc32_py(data, crc=0):
    # Bitwise CRC-32 (reflected polynomial 0xEDB88320); only used when binascii has no crc32.
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def crc32(data):
    if _crc32 is None:
        return _crc32_py(data)
    return _crc32(data) & 0xFFFFFFFF


def cobs_encode(data):
    """COBS-encode `data` (bytes-like); the result contains no 0x00."""
    data = bytes(data)
    n = len(data)
    out = bytearray()
    i = 0
    while True:
        lim = i + 254 if i + 254 < n else n
        j = data.find(DELIM, i, lim)
        if j >= 0:  # block ends at a zero, which the code byte stands for
            out.append(j - i + 1)
            out += data[i:j]
            i = j + 1
        else:
            out.append(lim - i + 1)
            out += data[i:lim]
            i = lim
            if lim == n:
                return out
            # else: a full 254-byte block without zero (code 0xFF), no implied zero


def cobs_decode(enc):
    """Inverse of cobs_encode; None if `enc` is not valid COBS."""
    enc = bytes(enc)
    m = len(enc)
    out = bytearray()
    i = 0
    while i < m:
        c = enc[i]
        end = i + c
        if c == 0 or end > m:
            return None
        out += enc[i + 1:end]
        i = end
        if c != 0xFF and i < m:
            out.append(0)
    return out


def encode(payload):
    """The wire bytes of one frame carrying `payload` (allocates; the reader uses encode_into)."""
    buf = bytearray(len(payload) + CRC_SIZE)
    buf[:len(payload)] = payload
    out = bytearray(max_wire_size(len(payload)))
    return out[:encode_into(buf, len(payload), out)]


def encode_into(buf, n, out):
    """Frame the payload buf[:n] into `out` (a bytearray of at least max_wire_size(n) bytes)
    without allocating buffers: `buf` (a bytearray) must have CRC_SIZE spare bytes after n, where
    the CRC goes. Returns the frame's length in `out`."""
    c = crc32(memoryview(buf)[:n])
    buf[n] = c & 0xFF
    buf[n + 1] = (c >> 8) & 0xFF
    buf[n + 2] = (c >> 16) & 0xFF
    buf[n + 3] = c >> 24
    m = n + CRC_SIZE
    src = memoryview(buf)
    dst = memoryview(out)
    out[0] = 0
    o = 1
    i = 0
    while True:
        lim = i + 254 if i + 254 < m else m
        j = buf.find(DELIM, i, lim)
        end = j if j >= 0 else lim
        k = end - i
        out[o] = k + 1
        dst[o + 1:o + 1 + k] = src[i:end]
        o += 1 + k
        if j >= 0:
            i = j + 1  # the zero is implied by the code byte
        else:
            i = lim
            if lim == m:
                break
    out[o] = 0
    return o + 1


def max_wire_size(payload_len):
    """Upper bound of the wire size of a frame with a payload of `payload_len` bytes."""
    body = payload_len + CRC_SIZE
    return body + body // 254 + 1 + 2


def decode_body(enc):
    """Payload of one frame body (the bytes between two delimiters), or None if damaged."""
    buf = bytearray(enc)
    n = _decode_in_place(buf, len(buf))
    return None if n is None else bytes(buf[:n])


def _decode_in_place(buf, n):
    """COBS-decode buf[:n] in place and check the CRC; the payload length, or None if damaged.
    Decoding never makes the data longer, so the output never overtakes the input."""
    i = 0
    o = 0
    while i < n:
        c = buf[i]
        end = i + c
        if c == 0 or end > n:
            return None
        k = c - 1
        if k:
            buf[o:o + k] = buf[i + 1:end]  # the right side is a copy: overlap is safe
        o += k
        i = end
        if c != 0xFF and i < n:
            buf[o] = 0
            o += 1
    if o < CRC_SIZE:
        return None
    o -= CRC_SIZE
    got = buf[o] | (buf[o + 1] << 8) | (buf[o + 2] << 16) | (buf[o + 3] << 24)
    if crc32(memoryview(buf)[:o]) != got:
        return None
    return o


class FrameDecoder:
    """Reassembles frames from a byte stream that may be cut, noisy or duplicated. Damaged or
    oversized frames are counted in `bad` and dropped; memory is one buffer of the largest
    encoded frame (`buf`, which the reader shares with its transmit side).

    Two ways to use it: `push(data)` then `next()` until None, each good payload a memoryview
    into the buffer that is valid until the next call (no allocation: the reader); or
    `feed(data)` -> list of payload copies (the host)."""

    def __init__(self, max_payload=MAX_PAYLOAD, buf=None):
        self.max_payload = max_payload
        self.max_body = max_wire_size(max_payload) - 2
        self.buf = buf if buf is not None else bytearray(self.max_body)
        if len(self.buf) < self.max_body:
            raise ValueError("frame buffer too small")
        self.n = 0             # bytes of the current frame body held
        self.skipping = False  # an oversized frame is being skipped up to its delimiter
        self._in = None
        self._ip = 0
        self.good = 0
        self.bad = 0

    def reset(self):
        self.n = 0
        self.skipping = False
        self._in = None

    def push(self, data):
        """Take in a chunk of received bytes (bytes or bytearray); next() consumes it."""
        self._in = data
        self._ip = 0

    def next(self):
        data = self._in
        if data is None:
            return None
        size = len(data)
        while self._ip < size:
            i = self._ip
            j = data.find(DELIM, i)
            end = size if j < 0 else j
            k = end - i
            if not self.skipping and k:
                if self.n + k > self.max_body:
                    self.skipping = True
                    self.n = 0
                    self.bad += 1
                else:
                    self.buf[self.n:self.n + k] = data[i:end]
                    self.n += k
            if j < 0:
                break
            self._ip = j + 1
            if self.skipping:
                self.skipping = False
            elif self.n:
                n = self.n
                self.n = 0
                m = _decode_in_place(self.buf, n)
                if m is None:
                    self.bad += 1
                else:
                    self.good += 1
                    return memoryview(self.buf)[:m]
        self._in = None
        return None

    def feed(self, data):
        """The payloads (copies) completed by `data`."""
        out = []
        self.push(bytes(data))
        while True:
            p = self.next()
            if p is None:
                return out
            out.append(bytes(p))
