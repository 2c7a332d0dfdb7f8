# Serial framing of the depot protocol (docs/sync-protocol.md, "Framing"). Pure logic: the reader
# and the depot host (through host_tools.fw) use this one implementation.
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
    """The wire bytes of one frame carrying `payload`."""
    body = bytearray(payload)
    c = crc32(body)
    body.append(c & 0xFF)
    body.append((c >> 8) & 0xFF)
    body.append((c >> 16) & 0xFF)
    body.append(c >> 24)
    out = bytearray(DELIM)
    out += cobs_encode(body)
    out += DELIM
    return out


def max_wire_size(payload_len):
    """Upper bound of the wire size of a frame with a payload of `payload_len` bytes."""
    body = payload_len + CRC_SIZE
    return body + body // 254 + 1 + 2


def decode_body(enc):
    """Payload of one frame body (the bytes between two delimiters), or None if damaged."""
    body = cobs_decode(enc)
    if body is None or len(body) < CRC_SIZE:
        return None
    n = len(body) - CRC_SIZE
    got = body[n] | (body[n + 1] << 8) | (body[n + 2] << 16) | (body[n + 3] << 24)
    payload = body[:n]
    if crc32(payload) != got:
        return None
    return bytes(payload)


class FrameDecoder:
    """Reassembles frames from a byte stream that may be cut, noisy or duplicated. `feed(data)`
    returns the list of good payloads completed by `data`; damaged or oversized frames are
    counted in `bad` and dropped. Memory is bounded by the largest encoded frame."""

    def __init__(self, max_payload=MAX_PAYLOAD):
        self.max_payload = max_payload
        self.max_body = max_wire_size(max_payload) - 2
        self.buf = bytearray()
        self.skipping = False  # an oversized frame is being skipped up to its delimiter
        self.good = 0
        self.bad = 0

    def reset(self):
        self.buf = bytearray()
        self.skipping = False

    def feed(self, data):
        out = []
        data = bytes(data)
        i = 0
        n = len(data)
        while i < n:
            j = data.find(DELIM, i)
            end = n if j < 0 else j
            if not self.skipping:
                if len(self.buf) + (end - i) > self.max_body:
                    self.skipping = True
                    self.buf = bytearray()
                    self.bad += 1
                else:
                    self.buf += data[i:end]
            if j < 0:
                break
            # a delimiter: the bytes held so far form one frame body (or nothing)
            if self.skipping:
                self.skipping = False
            elif self.buf:
                p = decode_body(self.buf)
                if p is None:
                    self.bad += 1
                else:
                    self.good += 1
                    out.append(p)
                self.buf = bytearray()
            i = j + 1
        return out
