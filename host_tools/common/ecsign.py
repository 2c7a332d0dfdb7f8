"""ECDSA P-256 signing on the host (python-ecdsa), deterministic (RFC 6979).

`sign_digest` also returns the recovery id of the signature's R point (bit 0: y parity, bit 1:
R.x = r + n), which ride codes carry so the reader can use accelerated verification."""
import hashlib

from ecdsa import NIST256p, SigningKey
from ecdsa.ellipticcurve import PointJacobi
from ecdsa.util import sigencode_string

CURVE = NIST256p
N = CURVE.order
G = CURVE.generator


def new_key():
    return SigningKey.generate(curve=CURVE, hashfunc=hashlib.sha256)


def public_bytes(key, compressed=True):
    vk = key.get_verifying_key() if hasattr(key, "get_verifying_key") else key
    return vk.to_string("compressed" if compressed else "uncompressed")


def sign_digest(signing_key, digest):
    """(64-byte r||s signature, recovery id 0..3) over a 32-byte digest."""
    sig = signing_key.sign_digest_deterministic(digest, hashfunc=hashlib.sha256,
                                                sigencode=sigencode_string)
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    e = int.from_bytes(digest, "big")
    w = pow(s, -1, N)
    q = signing_key.get_verifying_key().pubkey.point
    R = G * (e * w % N) + q * (r * w % N)
    recid = (R.y() & 1) | (2 if R.x() != r else 0)
    return sig, recid
