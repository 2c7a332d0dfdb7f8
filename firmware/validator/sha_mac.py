# HMAC-SHA256 (RFC 2104) from hashlib.sha256: MicroPython has no hmac module. On the ESP32 the
# SHA-256 rounds run in hardware, so a MAC costs about four compressions plus a few allocations.
import hashlib

_BLOCK = 64


def _pad(key, byte):
    return bytes([b ^ byte for b in key])


def hmac_sha256(key, msg):
    """HMAC-SHA256 of `msg` (bytes or memoryview) under `key` (bytes). Returns 32 bytes."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = bytes(key) + bytes(_BLOCK - len(key))
    inner = hashlib.sha256(_pad(key, 0x36))
    inner.update(msg)
    outer = hashlib.sha256(_pad(key, 0x5C))
    outer.update(inner.digest())
    return outer.digest()
