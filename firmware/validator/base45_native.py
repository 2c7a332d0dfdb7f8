# Base45 decoding as native code (viper) for validator.base45: the ride code's 350 characters are
# decoded in a few microseconds instead of a loop of bytecode. MicroPython only (base45.py falls
# back to its Python loop on CPython). Every value stays below 45^3 = 91,125: right on a 32-bit
# machine (tests/firmware/test_p256_xtensa.py runs it on an Xtensa under qemu).
import micropython


# Decodes the n characters at src (n % 3 != 1) into out, with digit: byte -> digit (0..44,
# 255 outside the alphabet). Returns the bytes written, -1 for a character outside the alphabet,
# -2 for a group worth more than its bytes can hold.
@micropython.viper
def decode_into(src: ptr8, n: int, digit: ptr8, out: ptr8) -> int:
    i = 0
    j = 0
    while i + 2 < n:
        c = digit[src[i]]
        d = digit[src[i + 1]]
        e = digit[src[i + 2]]
        if c == 255 or d == 255 or e == 255:
            return -1
        v = c + 45 * d + 2025 * e
        if v > 65535:
            return -2
        out[j] = v >> 8
        out[j + 1] = v & 255
        j += 2
        i += 3
    if i < n:
        c = digit[src[i]]
        d = digit[src[i + 1]]
        if c == 255 or d == 255:
            return -1
        v = c + 45 * d
        if v > 255:
            return -2
        out[j] = v
        j += 1
    return j
