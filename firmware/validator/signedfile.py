# Files the depot pushes (key ring, deny list, configuration) travel in one signed envelope:
#
#   header (19 bytes, big-endian): magic "FVS1" | kind u8 | key_id u16 | version u32 |
#                                  created u32 | body_len u32
#   body (body_len bytes)
#   signature (64 bytes r||s): ECDSA P-256 by the operator key `key_id` over SHA-256(header || body)
#
# The reader verifies a file streaming from flash, so a multi-megabyte deny list needs no RAM.
import hashlib
import struct

from validator import iobuf, p256, watchdog

MAGIC = b"FVS1"
HEADER = ">4sBHIII"
HEADER_SIZE = 19
SIG_SIZE = 64

KEYRING = 1
DENYLIST = 2
DENYLIST_DELTA = 3
CONFIG = 4
KIND_NAMES = {KEYRING: "keyring", DENYLIST: "denylist", DENYLIST_DELTA: "denylist_delta",
              CONFIG: "config"}

# Why a file is refused (strings: they go back to the depot and into its report)
OK = "OK"
MALFORMED = "MALFORMED"
WRONG_KIND = "WRONG_KIND"
UNKNOWN_KEY = "UNKNOWN_KEY"
KEY_EXPIRED = "KEY_EXPIRED"
BAD_SIGNATURE = "BAD_SIGNATURE"
OLD_VERSION = "OLD_VERSION"



class Header:
    def __init__(self, kind, key_id, version, created, body_len):
        self.kind = kind
        self.key_id = key_id
        self.version = version
        self.created = created
        self.body_len = body_len


def parse_header(data):
    if len(data) < HEADER_SIZE:
        return None
    magic, kind, key_id, version, created, body_len = struct.unpack(HEADER, data[:HEADER_SIZE])
    if magic != MAGIC or kind not in KIND_NAMES:
        return None
    return Header(kind, key_id, version, created, body_len)


def verify_file(path, operator_keys, kind, now=None):
    """Check the envelope of the file at `path`. `operator_keys` maps key id -> (public key,
    valid_until or 0 for no expiry). Returns (reason, Header or None)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE)
            h = parse_header(head)
            if h is None:
                return MALFORMED, None
            if h.kind != kind:
                return WRONG_KIND, h
            key = operator_keys.get(h.key_id)
            if key is None:
                return UNKNOWN_KEY, h
            if key[1] and now is not None and now > key[1]:
                return KEY_EXPIRED, h
            digest = hashlib.sha256(head)
            left = h.body_len
            mv = memoryview(iobuf.get())   # (no block of its own after boot)
            while left:
                n = f.readinto(mv[:min(len(mv), left)])
                if not n:
                    return MALFORMED, h
                digest.update(mv[:n])
                left -= n
                watchdog.kick()
            sig = f.read(SIG_SIZE + 1)
    except OSError:
        return MALFORMED, None
    if len(sig) != SIG_SIZE:
        return MALFORMED, h
    if not p256.verify(key[0], digest.digest(), sig):
        return BAD_SIGNATURE, h
    return OK, h


def open_body(path):
    """Open a verified file positioned at the start of its body."""
    f = open(path, "rb")
    f.seek(HEADER_SIZE)
    return f
