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


# Half extended Euclid (p256._half_gcd, the same result) on multi-limb numbers: w is 4 numbers
# of 17 16-bit limbs, little-endian: a = n (put there by the caller), b = u (likewise), then
# the two coefficients (two's complement over 272 bits, written here). Euclid on (a, b) keeps
# a = ta * u, b = tb * u (mod n) and stops at the first remainder below 2^128. A remainder step
# x mod y subtracts q * (y << k) from x (and q * (ty << k) from tx) with q < 2^8 estimated from the
# top 22 bits, never too large (so x stays >= 0), until x < y: no division, no big quotient
# makes it slow. Returns 0 if the result is (ta, a), 1 if it is (tb, b). Every value is a limb,
# a limb times q plus a carry (< 2^24), a difference of limbs, or a top (< 2^22) shifted by at
# most 7: right on a 32-bit machine (a 3-limb window's bits above 32 may drop there; they are
# masked off anyway).
@micropython.viper
def half_gcd(w: ptr16) -> int:
    L = 17
    i = 0
    while i < L:                    # ta = 0, tb = 1
        w[2 * L + i] = 0
        w[3 * L + i] = 0
        i += 1
    w[3 * L] = 1
    x = 1                           # the operand just reduced (0: a, 1: b)
    while True:
        # is it below 2^128 (limbs 8 .. 16 zero)?
        xo = x * L
        i = 8
        while i < L:
            if int(w[xo + i]) != 0:
                break
            i += 1
        if i == L:
            return x
        x = 1 - x
        xo = x * L
        yo = (1 - x) * L
        txo = (2 + x) * L
        tyo = (3 - x) * L
        # the bit length of y (>= 129: it was checked above)
        by = 0
        i = L - 1
        while i >= 0:
            v = int(w[yo + i])
            if v != 0:
                by = 16 * i
                while v != 0:
                    by += 1
                    v = v >> 1
                break
            i -= 1
        # x = x mod y and tx -= q * ty
        while True:
            bx = 0
            i = L - 1
            while i >= 0:
                v = int(w[xo + i])
                if v != 0:
                    bx = 16 * i
                    while v != 0:
                        bx += 1
                        v = v >> 1
                    break
                i -= 1
            if bx < by:
                break
            k = bx - by - 7         # q * (y << k) with q < 2^8
            if k < 0:
                k = 0
            # X = x's top 22 bits, Y = those of y << k at the same place (>= 2^14), q = X / (Y + 1)
            # (Y << 7 < 2^30: no sign bit reached on a 32-bit machine)
            sp = bx - 22
            j = sp >> 4
            r = sp & 15
            X = (int(w[xo + j]) >> r) | (int(w[xo + j + 1]) << (16 - r))
            if r > 0:
                X = X | (int(w[xo + j + 2]) << (32 - r))
            X = X & 0x3fffff
            sp = sp - k
            j = sp >> 4
            r = sp & 15
            Y = (int(w[yo + j]) >> r) | (int(w[yo + j + 1]) << (16 - r))
            if r > 0:
                Y = Y | (int(w[yo + j + 2]) << (32 - r))
            Y = (Y & 0x3fffff) + 1
            q = 0
            b = 7
            while b >= 0:
                if X >= (Y << b):
                    X -= Y << b
                    q = q | (1 << b)
                b -= 1
            if q == 0:
                # only when k = 0 (else y << k is 7 bits shorter than x) and the tops are about
                # equal: x < y (done) or x < 2y (subtract y once)
                c = 0
                i = L - 1
                while i >= 0:
                    v = int(w[xo + i])
                    d = int(w[yo + i])
                    if v != d:
                        if v < d:
                            c = 1
                        break
                    i -= 1
                if c == 1:
                    break
                q = 1
            # x -= q * (y << k), tx -= q * (ty << k)
            kq = k >> 4
            kr = k & 15
            cx = 0
            ct = 0
            i = 0
            while i < L:
                s = 0
                t = 0
                if i - kq >= 0:
                    s = (int(w[yo + i - kq]) << kr) & 0xffff
                    t = (int(w[tyo + i - kq]) << kr) & 0xffff
                    if kr != 0 and i - kq - 1 >= 0:
                        s = s | (int(w[yo + i - kq - 1]) >> (16 - kr))
                        t = t | (int(w[tyo + i - kq - 1]) >> (16 - kr))
                s = q * s + cx      # the limb of q * (y << k) plus the carry and borrow so far
                d = int(w[xo + i]) - (s & 0xffff)
                cx = s >> 16
                if d < 0:
                    d += 0x10000
                    cx += 1
                w[xo + i] = d
                t = q * t + ct
                d = int(w[txo + i]) - (t & 0xffff)
                ct = t >> 16
                if d < 0:
                    d += 0x10000
                    ct += 1
                w[txo + i] = d
                i += 1
