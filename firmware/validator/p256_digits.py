# The scalar digits of validator.p256 as native code (viper): a verify's NAF and comb digits in a
# few microseconds instead of loops of bytecode. MicroPython only (p256.py and p256_fixed.py keep
# the same loops in Python for CPython, and tests compare the two). Every value stays below 2^25:
# right on a 32-bit machine (tests/firmware/test_p256_xtensa.py runs these on an Xtensa).
import micropython


# Width-w NAF digits of the number whose little-endian bytes are kb (end = its bit length
# bound: 8 * bytes; kb has 2 bytes more), d & 0xff into out[0..end], the positions of the
# nonzero digits ascending into pos (u16). out must be zero. Returns their number.
@micropython.viper
def naf_into(kb: ptr8, end: int, w: int, out: ptr8, pos: ptr16) -> int:
    full = 1 << w
    half = full >> 1
    mask = full - 1
    i = 0
    carry = 0
    n = 0
    while i <= end:
        j = i >> 3
        sh = i & 7
        s = ((kb[j] >> sh) & 1) + carry
        if (s & 1) == 0:
            carry = s >> 1
            i += 1
            continue
        u = (((kb[j] | (kb[j + 1] << 8)) >> sh) & mask) + carry
        if u >= half:
            out[i] = (u - full) & 0xff
            carry = 1
        else:
            out[i] = u
            carry = 0
        pos[n] = i
        n += 1
        i += w
    return n


# Signed comb digits (p256_fixed.comb_digits: the same digits) of the number whose 35
# little-endian bytes are kb, for windows of w bits over pieces of L bits, as i16 into out.
# Returns their number.
@micropython.viper
def comb_into(kb: ptr8, w: int, L: int, out: ptr16) -> int:
    nw = 0          # windows per piece, ceil(L / w) (no division: it would call the runtime)
    while nw * w < L:
        nw += 1
    topw = L - (nw - 1) * w
    full = 1 << w
    half = full >> 1
    carry = 0
    o = 0
    start = 0
    while start < 256:
        p = start
        i = 0
        while i < nw:
            wi = w
            if i == nw - 1:
                wi = topw
            j = p >> 3
            u = (((kb[j] | (kb[j + 1] << 8) | (kb[j + 2] << 16)) >> (p & 7))
                 & ((1 << wi) - 1)) + carry
            if wi == w and u > half:
                u -= full
                carry = 1
            else:
                carry = 0
            out[o] = u & 0xffff
            o += 1
            p += w
            i += 1
        start += L
    return o
