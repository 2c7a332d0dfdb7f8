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
# a = ta * u, b = tb * u (mod n) and stops at the first remainder below 2^128, each remainder
# step done as subtractions of b shifted left (at most about 2 * 256 of them: no division, and
# no input makes it slow). Returns 0 if the result is (ta, a), 1 if it is (tb, b). Every value
# is a limb, a limb shifted by less than 16 bits, or a difference of limbs: right on a 32-bit
# machine.
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
        # x = x mod y and tx -= q * ty, by shifted subtractions
        while True:
            bx = 0                  # bit lengths of x and y
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
            if bx < by:
                break
            k = bx - by
            kq = k >> 4
            kr = k & 15
            # y << k > x? then one less (unless k = 0: x < y, done)
            c = 0
            i = L - 1
            while i >= 0:
                s = 0
                if i - kq >= 0:
                    s = (int(w[yo + i - kq]) << kr) & 0xffff
                    if kr != 0 and i - kq - 1 >= 0:
                        s = s | (int(w[yo + i - kq - 1]) >> (16 - kr))
                v = int(w[xo + i])
                if s != v:
                    if s > v:
                        c = 1
                    break
                i -= 1
            if c == 1:
                if k == 0:
                    break
                k -= 1
                kq = k >> 4
                kr = k & 15
            # x -= y << k and tx -= ty << k (two's complement: a borrow out of the top is dropped)
            bx = 0
            by = 0
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
                d = int(w[xo + i]) - s - bx
                bx = 0
                if d < 0:
                    d += 0x10000
                    bx = 1
                w[xo + i] = d
                d = int(w[txo + i]) - t - by
                by = 0
                if d < 0:
                    d += 0x10000
                    by = 1
                w[txo + i] = d
                i += 1
