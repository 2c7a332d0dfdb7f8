# P-256 field and point arithmetic for validator.p256 (internal; the API is in p256.py).
#
# A point is Jacobian (X, Y, Z): x = X/Z^2, y = Y/Z^3; Z == 0 is the point at infinity.
# Coordinates are kept reduced in [0, p): the exceptional-case tests of the additions rely on it.
# Comments instead of docstrings: MicroPython parses docstrings, which costs RAM at import.

P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b
GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296
GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5
SQRT_EXP = (P + 1) // 4  # p = 3 mod 4


try:  # CPython (host tools, tests) has a C modular inverse; MicroPython's pow(x, -1, m) is 0
    _POW_INV = pow(3, -1, 7) == 5
except Exception:
    _POW_INV = False


# x^-1 mod m (m prime, x not 0 mod m) by the extended Euclidean algorithm: 4-5x faster on
# MicroPython than Fermat's pow(x, m - 2, m).
def inv(x, m):
    if _POW_INV:
        return pow(x, -1, m)
    a, b = m, x % m
    ta, tb = 0, 1  # a = ta * x, b = tb * x (mod m)
    while b > 1:
        q, a = divmod(a, b)
        ta -= q * tb
        if a <= 1:
            if a:
                return ta % m
            break
        q, b = divmod(b, a)
        tb -= q * ta
    if b == 1:
        return tb % m
    raise ValueError("not invertible")


# Inverses mod p of the nonzero values zs with one inversion (Montgomery's trick).
def batch_inv(zs):
    p = P
    n = len(zs)
    pre = [0] * n
    acc = 1
    for i in range(n):
        acc = acc * zs[i] % p
        pre[i] = acc
    a = inv(acc, p)
    out = [0] * n
    for i in range(n - 1, 0, -1):
        out[i] = a * pre[i - 1] % p
        a = a * zs[i] % p
    out[0] = a
    return out


def is_bytes(b):
    return isinstance(b, (bytes, bytearray))


# SEC1 compressed (33 bytes) or uncompressed (65 bytes) point -> (x, y), or None.
def decode_point(public_key):
    try:
        if not is_bytes(public_key):
            return None
        n = len(public_key)
        p = P
        if n == 65 and public_key[0] == 4:
            x = int.from_bytes(public_key[1:33], "big")
            y = int.from_bytes(public_key[33:65], "big")
            if x >= p or y >= p or (y * y - x * x * x + 3 * x - B) % p:
                return None
            return x, y
        if n == 33 and public_key[0] in (2, 3):
            x = int.from_bytes(public_key[1:33], "big")
            y = lift_x(x, public_key[0] & 1)
            if y is None:
                return None
            return x, y
    except MemoryError:
        raise
    except Exception:
        pass
    return None


# The y of the curve point with this x and y parity, or None.
def lift_x(x, odd):
    p = P
    if x >= p:
        return None
    rhs = (x * x * x - 3 * x + B) % p
    y = pow(rhs, SQRT_EXP, p)
    if y * y % p != rhs:
        return None
    if (y & 1) != odd:
        y = p - y  # rhs != 0 on P-256 (no point of order 2), so y != 0 and the parities differ
    return y


def encode_uncompressed(x, y):
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


# Doubling, a = -3 (3X^2 + aZ^4 = 3(X - Z^2)(X + Z^2)).
def dbl(X, Y, Z):
    p = P
    if not Z:
        return 0, 1, 0
    d = Z * Z % p
    g = Y * Y % p
    b = X * g % p
    a = 3 * (X - d) * (X + d) % p
    X3 = (a * a - 8 * b) % p
    return X3, (a * (4 * b - X3) - 8 * g * g) % p, 2 * Y * Z % p


# (X1, Y1, Z1) + affine (x2, y2); complete: infinity, equal and opposite points handled.
def madd(X1, Y1, Z1, x2, y2):
    p = P
    if not Z1:
        return x2, y2, 1
    zz = Z1 * Z1 % p
    h = x2 * zz % p - X1
    r = y2 * zz % p * Z1 % p - Y1
    if not h:
        if not r:
            return dbl(x2, y2, 1)
        return 0, 1, 0
    hh = h * h % p
    hhh = h * hh % p
    v = X1 * hh % p
    X3 = (r * r - hhh - 2 * v) % p
    return X3, (r * (v - X3) - Y1 * hhh) % p, Z1 * h % p


# Affine (x, y) of a Jacobian point that is not infinity.
def to_affine(X, Y, Z):
    zi = inv(Z, P)
    zi2 = zi * zi % P
    return X * zi2 % P, Y * zi2 % P * zi % P
