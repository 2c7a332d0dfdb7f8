# Base45 (RFC 9285): the byte encoding that keeps a QR code in alphanumeric mode.
# Every 2 bytes (a 16-bit big-endian number n) become 3 characters c, d, e with n = c + 45*d + 45*45*e;
# a last single byte becomes 2 characters. Decoding is strict: a character outside the alphabet,
# a length of 3k+1, or a group worth more than its bytes can hold raises ValueError.

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

# byte value of a character -> its digit (0..44), 255 for characters outside the alphabet
_DIGIT = bytearray(b"\xff" * 256)
for _i in range(45):
    _DIGIT[ord(ALPHABET[_i])] = _i
del _i


try:  # MicroPython: the decoding loop as native code
    from validator.base45_native import decode_into as _native
except ImportError:  # CPython (host tools, tests): the loop below
    _native = None


class Base45Error(ValueError):
    pass


def decode(text):
    """Bytes encoded by the base45 `text` (str, bytes or bytearray)."""
    if isinstance(text, str):
        try:
            text = text.encode("ascii")
        except Exception:
            raise Base45Error("not base45")
    elif not isinstance(text, (bytes, bytearray, memoryview)):
        raise Base45Error("not base45")
    n = len(text)
    if n % 3 == 1:
        raise Base45Error("bad length")
    out = bytearray(n // 3 * 2 + (1 if n % 3 else 0))
    digit = _DIGIT
    if _native is not None:
        j = _native(text, n, digit, out)
        if j < 0:
            raise Base45Error("bad character" if j == -1 else "group too large")
        return bytes(out)
    j = 0
    for i in range(0, n - 2, 3):
        c = digit[text[i]]
        d = digit[text[i + 1]]
        e = digit[text[i + 2]]
        if c == 255 or d == 255 or e == 255:
            raise Base45Error("bad character")
        v = c + 45 * d + 2025 * e
        if v > 0xFFFF:
            raise Base45Error("group too large")
        out[j] = v >> 8
        out[j + 1] = v & 0xFF
        j += 2
    if n % 3:
        c = digit[text[n - 2]]
        d = digit[text[n - 1]]
        if c == 255 or d == 255:
            raise Base45Error("bad character")
        v = c + 45 * d
        if v > 0xFF:
            raise Base45Error("group too large")
        out[j] = v
    return bytes(out)


def encode(data):
    """Base45 text (str) of `data`. (One block of the text's size: a list of one-character
    strings would ask a reader's heap for a block eight times larger.)"""
    a = ALPHABET.encode()
    n = len(data)
    out = bytearray(n // 2 * 3 + (n % 2) * 2)
    j = 0
    for i in range(0, n - 1, 2):
        v = (data[i] << 8) | data[i + 1]
        out[j] = a[v % 45]
        out[j + 1] = a[(v // 45) % 45]
        out[j + 2] = a[v // 2025]
        j += 3
    if n % 2:
        v = data[n - 1]
        out[j] = a[v % 45]
        out[j + 1] = a[v // 45]
    return out.decode()
