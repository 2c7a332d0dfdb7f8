"""ECDSA P-256 signature verification (pure MicroPython).

API (stable; tokens.py and keyring.py call these):
  verify(public_key, digest, signature) -> bool
  verify_recoverable(public_key, digest, signature, recid) -> bool
  FixedBase(public_key, table=None)       a fixed base (issuer key); raises ValueError if bad
  verify_fixed(fixed_base, digest, signature) -> bool
  decode_point(public_key) -> (x, y) or None
All verify functions return False, never raise, for any malformed input.
(Interim implementation: the fast versions follow.)
"""
P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b
GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296
GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5


def decode_point(pub):
    """SEC1 compressed or uncompressed point -> (x, y), or None if invalid."""
    try:
        n = len(pub)
    except Exception:
        return None
    if not isinstance(pub, (bytes, bytearray)):
        return None
    if n == 65 and pub[0] == 4:
        x = int.from_bytes(pub[1:33], "big")
        y = int.from_bytes(pub[33:65], "big")
        if x >= P or y >= P or (y * y - (x * x * x - 3 * x + B)) % P:
            return None
        return x, y
    if n == 33 and pub[0] in (2, 3):
        x = int.from_bytes(pub[1:33], "big")
        if x >= P:
            return None
        rhs = (x * x * x - 3 * x + B) % P
        y = pow(rhs, (P + 1) // 4, P)
        if y * y % P != rhs:
            return None
        if (y & 1) != (pub[0] & 1):
            y = P - y
        return x, y
    return None


def _double(X1, Y1, Z1):
    if Z1 == 0 or Y1 == 0:
        return 0, 1, 0
    p = P
    zz = Z1 * Z1 % p
    m = 3 * (X1 - zz) * (X1 + zz) % p
    yy = Y1 * Y1 % p
    s = 4 * X1 * yy % p
    X3 = (m * m - 2 * s) % p
    Y3 = (m * (s - X3) - 8 * yy * yy) % p
    Z3 = 2 * Y1 * Z1 % p
    return X3, Y3, Z3


def _add(X1, Y1, Z1, X2, Y2, Z2):
    if Z1 == 0:
        return X2, Y2, Z2
    if Z2 == 0:
        return X1, Y1, Z1
    p = P
    z1z1 = Z1 * Z1 % p
    z2z2 = Z2 * Z2 % p
    u1 = X1 * z2z2 % p
    u2 = X2 * z1z1 % p
    s1 = Y1 * Z2 * z2z2 % p
    s2 = Y2 * Z1 * z1z1 % p
    h = (u2 - u1) % p
    r = (s2 - s1) % p
    if h == 0:
        if r == 0:
            return _double(X1, Y1, Z1)
        return 0, 1, 0
    hh = h * h % p
    hhh = h * hh % p
    v = u1 * hh % p
    X3 = (r * r - hhh - 2 * v) % p
    Y3 = (r * (v - X3) - s1 * hhh) % p
    Z3 = h * Z1 * Z2 % p
    return X3, Y3, Z3


def _verify_r(public_key, digest, signature):
    """True if `signature` (64 bytes r||s) over the 32-byte `digest` verifies under `public_key`
    (SEC1, 33 or 65 bytes). False, never an exception, for any malformed input."""
    try:
        if len(digest) != 32 or len(signature) != 64:
            return False
    except TypeError:
        return False
    q = decode_point(public_key)
    if q is None:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < N and 0 < s < N):
        return False
    e = int.from_bytes(digest, "big")
    w = pow(s, N - 2, N)
    u1 = e * w % N
    u2 = r * w % N
    gq = _add(GX, GY, 1, q[0], q[1], 1)
    X, Y, Z = 0, 1, 0
    for i in range(255, -1, -1):
        X, Y, Z = _double(X, Y, Z)
        b1 = (u1 >> i) & 1
        b2 = (u2 >> i) & 1
        if b1 and b2:
            X, Y, Z = _add(X, Y, Z, *gq)
        elif b1:
            X, Y, Z = _add(X, Y, Z, GX, GY, 1)
        elif b2:
            X, Y, Z = _add(X, Y, Z, q[0], q[1], 1)
    if Z == 0:
        return False
    zi = pow(Z, P - 2, P)
    x = X * zi * zi % P
    y = Y * zi * zi * zi % P
    if x % N != r:
        return False
    return (y & 1) | (2 if x != r else 0)


def verify(public_key, digest, signature):
    """True if `signature` (64 bytes r||s) over the 32-byte `digest` verifies under `public_key`
    (SEC1, 33 or 65 bytes). False, never an exception, for any malformed input."""
    try:
        return _verify_r(public_key, digest, signature) is not False
    except Exception:
        return False


def verify_recoverable(public_key, digest, signature, recid):
    """verify(), and the signature's R point must match `recid` (bit 0: y parity, bit 1: x = r + n)."""
    try:
        if type(recid) is not int or not 0 <= recid <= 3:
            return False
        got = _verify_r(public_key, digest, signature)
        return got is not False and got == recid
    except Exception:
        return False


class FixedBase:
    """A public key used as a fixed base (issuer key), with its precomputed table (optional)."""

    def __init__(self, public_key, table=None):
        if decode_point(public_key) is None:
            raise ValueError("bad public key")
        self.public_key = bytes(public_key)
        self.table = table


def verify_fixed(fixed_base, digest, signature):
    try:
        return verify(fixed_base.public_key, digest, signature)
    except Exception:
        return False
