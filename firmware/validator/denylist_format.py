# The deny list's file formats (docs/denylist.md), shared by the reader (denylist.py) and its
# installer (denylist_update.py), which both import this module and not each other's internals:
# constants, id hashing, sizes, the list header and index checks, small file helpers.
import hashlib
import os
import struct
import sys
from array import array

from validator import signedfile as sf

try:
    from micropython import const
except ImportError:  # CPython: the pure-logic tests and host tools
    def const(x):
        return x

LIST_MAGIC = b"FDL1"
DELTA_MAGIC = b"FDD1"
BODY_HEADER = ">4sBBBBII8s"
BODY_HEADER_SIZE = const(24)
DELTA_HEADER = ">4sIBBBBI8sI32sI"
DELTA_HEADER_SIZE = const(64)
RECORD_SIZE = const(8)
OP_ADD = const(1)
OP_REMOVE = const(2)

FP_BYTES = const(3)          # stored fingerprint: hash bits 24..47
MAX_GROUP_BITS = const(10)   # index in RAM: at most 1025 u32 = 4 KiB
# A group's count table is read per lookup and held whole while a delta merges: at most 512 bytes
# (1M entries: 128). 2^19 sub-buckets of 8 entries on average is 4.2M entries, more than the
# largest push (validator.sync.MAX_PUT) carries.
MAX_SUB_BITS = const(9)
MAX_BUCKET = const(255)      # entries per sub-bucket (one count byte)
MAX_INDEX = const((1 << MAX_GROUP_BITS) + 1)   # u32 entries of the largest index
MAX_COUNTS = const(1 << MAX_SUB_BITS)          # bytes of the largest count table
DAY = const(86400)

TAG_ACCOUNT = b"fare-validator/deny/account\x00"
TAG_CREDENTIAL = b"fare-validator/deny/credential\x00"

# Refusal reasons beyond those of signedfile (strings, reported back to the depot)
OK = sf.OK
MALFORMED = sf.MALFORMED
OLD_VERSION = sf.OLD_VERSION
WRONG_KIND = sf.WRONG_KIND
WRONG_BASE = "WRONG_BASE"      # a delta for another base version, or it does not fit the base
NO_SPACE = "NO_SPACE"          # flash full while writing the merged list
WRITE_FAILED = "WRITE_FAILED"  # flash error while writing (the installed list is untouched)

LIST_FILE = "list.fdl"
TMP_FILE = "list.tmp"
_U64 = 1 << 64


def hash_id(tag, salt, id_bytes):
    """The 32-byte digest an id is filed under (the host builder uses this too)."""
    h = hashlib.sha256(tag)
    h.update(salt)
    h.update(id_bytes)
    return h.digest()


def account_bytes(account):
    """8-byte big-endian form of an account id, or None if it is not an unsigned 64-bit int."""
    if not isinstance(account, int) or isinstance(account, bool) or account < 0 or account >= _U64:
        return None
    return account.to_bytes(8, "big")


def list_body_size(width, group_bits, sub_bits, count):
    g = 1 << group_bits
    return BODY_HEADER_SIZE + g * (1 << sub_bits) + count * width + 4 * (g + 1)


def new_index(n):
    return array("I", bytes(4 * n))


def index_from_le(idx, n):
    # The index is stored little-endian; every target so far is little-endian, but be correct anyway.
    # (Its own inverse: the merge also uses it to write an index.)
    if sys.byteorder != "little":
        for i in range(n):
            v = idx[i]
            idx[i] = (((v & 0xff) << 24) | ((v >> 8 & 0xff) << 16) | ((v >> 16 & 0xff) << 8)
                      | (v >> 24))


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def makedirs(path):
    cur = "/" if path.startswith("/") else ""
    for name in path.split("/"):
        if not name:
            continue
        cur = cur + name if (not cur or cur.endswith("/")) else cur + "/" + name
        if not exists(cur):
            os.mkdir(cur)


class Refused(Exception):
    """Why a file cannot be installed (args[0] is the reason string)."""


def read_list_header(f):
    """Parse the envelope and body headers of a list file open at 0; checks sizes."""
    h = sf.parse_header(f.read(sf.HEADER_SIZE))
    if h is None or h.kind != sf.DENYLIST:
        raise Refused(MALFORMED)
    raw = f.read(BODY_HEADER_SIZE)
    if len(raw) != BODY_HEADER_SIZE:
        raise Refused(MALFORMED)
    magic, width, gbits, sbits, zero, count, epoch, salt = struct.unpack(BODY_HEADER, raw)
    if (magic != LIST_MAGIC or width not in (3, 4) or gbits > MAX_GROUP_BITS
            or sbits > MAX_SUB_BITS or zero
            or count > (1 << (gbits + sbits)) * MAX_BUCKET):
        raise Refused(MALFORMED)
    if h.body_len != list_body_size(width, gbits, sbits, count):
        raise Refused(MALFORMED)
    if f.seek(0, 2) != sf.HEADER_SIZE + h.body_len + sf.SIG_SIZE:
        raise Refused(MALFORMED)
    return h, (width, gbits, sbits, count, epoch, salt)


def check_index(idx, n, count):
    """The first `n` entries of `idx` are a list's index: from 0 up to `count`, never down."""
    prev = 0
    if idx[0] != 0 or idx[n - 1] != count:
        raise Refused(MALFORMED)
    for i in range(1, n):
        v = idx[i]
        if v < prev:
            raise Refused(MALFORMED)
        prev = v
