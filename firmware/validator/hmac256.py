# HMAC-SHA256 (RFC 2104) from hashlib.sha256, because MicroPython has no hmac module.
# The key pads are computed once per key; each tag then costs two SHA-256 runs (hardware on ESP32).
import hashlib

BLOCK = 64
SIZE = 32


class Hmac:
    def __init__(self, key):
        key = bytes(key)
        if len(key) > BLOCK:
            key = hashlib.sha256(key).digest()
        key = key + bytes(BLOCK - len(key))
        self._ipad = bytes(b ^ 0x36 for b in key)
        self._opad = bytes(b ^ 0x5C for b in key)

    def tag(self, *parts):
        """HMAC-SHA256 of the concatenation of `parts` (bytes-like), without joining them."""
        h = hashlib.sha256(self._ipad)
        for p in parts:
            h.update(p)
        return hashlib.sha256(self._opad + h.digest()).digest()


def hmac_sha256(key, msg):
    return Hmac(key).tag(msg)


def equal(a, b):
    """Constant-time comparison of two byte strings (no early exit on the first difference)."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0
