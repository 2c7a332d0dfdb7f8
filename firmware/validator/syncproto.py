# Messages of the depot protocol (docs/sync-protocol.md): one message per frame (validator.framing).
#
#   payload = type (1 byte) | CBOR item | tag (32 bytes, only when the type has the TAGGED bit)
#   request CBOR: [rid, cmd, args]        args: a map with text keys, per command
#   reply CBOR:   [rid, status, result]   status: text ("OK" or why not), result per command
#   tag = HMAC-SHA256(sync secret, DOMAIN | reader id (u32 BE) | reader nonce | host nonce
#                     | payload without the tag)
#
# The tag is over the exact bytes sent, so neither side needs a canonical re-encoding. The two
# nonces are the session: the reader draws a fresh one at every INFO, the host sends its own in the
# INFO request, so a recorded command cannot be replayed to the reader in a later session, nor a
# recorded answer to the host. Shared by the reader (sync.py) and the depot (host_tools/depot/synclink.py).
import struct

from validator import cbor
from validator.hmac256 import Hmac, equal

try:
    from micropython import const
except ImportError:  # CPython: the pure-logic tests and host tools
    def const(x):
        return x

PROTO = const(1)
DOMAIN = b"FVSYNC1"

REQUEST = const(0x10)
REPLY = const(0x20)
TAGGED = const(0x01)
TAG_SIZE = const(32)
NONCE_SIZE = const(16)

# commands
INFO = const(1)
GET_LOGS = const(2)
ACK = const(3)
PUT = const(4)
CHUNK = const(5)
COMMIT = const(6)
SET_TIME = const(7)
REBOOT = const(8)
COMMAND_NAMES = {INFO: "INFO", GET_LOGS: "GET_LOGS", ACK: "ACK", PUT: "PUT", CHUNK: "CHUNK",
                 COMMIT: "COMMIT", SET_TIME: "SET_TIME", REBOOT: "REBOOT"}
OPEN_COMMANDS = (INFO, GET_LOGS)  # everything else changes the reader and needs a valid tag

# statuses (text: they end up in the depot's report as they are)
OK = "OK"
MALFORMED = "MALFORMED"        # not a message: bad type byte, CBOR, structure, types or bounds
UNKNOWN_CMD = "UNKNOWN_CMD"
NO_SESSION = "NO_SESSION"      # an authenticated command before INFO opened a session
BAD_MAC = "BAD_MAC"            # missing or wrong tag
REPLAY = "REPLAY"              # request id not above the last authenticated one of the session
BAD_ARG = "BAD_ARG"            # well-formed but out of range (ack beyond the log, size over limit)
NO_UPLOAD = "NO_UPLOAD"        # CHUNK or COMMIT without a matching PUT
OFFSET = "OFFSET"              # CHUNK beyond what the reader holds; result tells where to resume
INCOMPLETE = "INCOMPLETE"      # COMMIT before every byte arrived
DIGEST = "DIGEST"              # COMMIT: the received bytes do not hash to the announced digest
MISMATCH = "MISMATCH"          # the envelope's kind or version is not what PUT announced
NO_SPACE = "NO_SPACE"
REFUSED = "REFUSED"            # the reader's installer or clock said no; result["reason"] says why
# The reader's own faults; nothing changed that matters, the same request may be tried again
# (an install keeps the staged upload: the next PUT of the same file resumes at its end), and
# result["error"] says what failed. INFO's "fault" keeps the last one.
OUT_OF_MEMORY = "OUT_OF_MEMORY"  # no heap for it (a bug: after boot the reader needs no block over 1 KiB)
FLASH_ERROR = "FLASH_ERROR"    # the flash failed a read or write
READER_ERROR = "READER_ERROR"  # any other fault of the reader

KINDS = ("denylist", "denylist_delta", "keyring", "config")
# where INFO reports the installed version of each kind
VERSION_FIELD = {"denylist": "deny", "denylist_delta": "deny", "keyring": "keyring",
                 "config": "config"}

U32 = 0xFFFFFFFF


class Session:
    """Computes and checks tags for one session; `rn`/`hn`: reader and host nonces."""

    def __init__(self, key, reader_id, rn, hn):
        self._mac = Hmac(key)
        self._prefix = DOMAIN + struct.pack(">I", reader_id & U32) + bytes(rn) + bytes(hn)

    def tag(self, body):
        return self._mac.tag(self._prefix, body)

    def check(self, body, tag):
        return equal(self._mac.tag(self._prefix, body), tag)


def encode_message(mtype, item, session=None):
    """Payload bytes of a message: `item` is the CBOR value ([rid, cmd, args] or
    [rid, status, result]); tagged when a session is given."""
    out = bytearray()
    out.append(mtype | (TAGGED if session is not None else 0))
    out += cbor.encode(item)
    if session is not None:
        out += session.tag(out)
    return out


def split_message(payload):
    """(type, cbor bytes, body without tag, tag or None) of a payload, or None if impossible."""
    if len(payload) < 2:
        return None
    mtype = payload[0]
    if mtype & ~TAGGED not in (REQUEST, REPLY):
        return None
    if mtype & TAGGED:
        if len(payload) < 2 + TAG_SIZE:
            return None
        n = len(payload) - TAG_SIZE
        mv = memoryview(payload)
        return mtype & ~TAGGED, mv[1:n], mv[:n], bytes(mv[n:])
    mv = memoryview(payload)
    return mtype, mv[1:], mv, None


def decode_item(data, max_items=64, views=False):
    """The [a, b, c] list of a message body (CBOR); None if malformed. `views`: byte strings are
    memoryviews of `data` (is_bytes() takes both)."""
    try:
        v = cbor.decode(data, max_depth=4, max_items=max_items, max_len=len(data), views=views)
    except ValueError:
        return None
    if not isinstance(v, list) or len(v) != 3:
        return None
    return v


def put_head(buf, pos, major, arg):
    """Write a CBOR head (major type, argument < 2**32) into bytearray `buf` at `pos`; returns
    the position after it. For building large answers in place."""
    m = major << 5
    if arg < 24:
        buf[pos] = m | arg
        return pos + 1
    if arg < 0x100:
        buf[pos] = m | 24
        buf[pos + 1] = arg
        return pos + 2
    if arg < 0x10000:
        buf[pos] = m | 25
        buf[pos + 1] = arg >> 8
        buf[pos + 2] = arg & 0xFF
        return pos + 3
    buf[pos] = m | 26
    buf[pos + 1] = arg >> 24
    buf[pos + 2] = (arg >> 16) & 0xFF
    buf[pos + 3] = (arg >> 8) & 0xFF
    buf[pos + 4] = arg & 0xFF
    return pos + 5


def is_bytes(v, size=None):
    """A byte string (bytes, or a memoryview from decode_item(views=True)), of `size` if given."""
    return isinstance(v, (bytes, memoryview)) and (size is None or len(v) == size)


def fault_status(e):
    """The status for the reader's own fault `e`."""
    if isinstance(e, MemoryError):
        return OUT_OF_MEMORY
    if isinstance(e, OSError):
        return FLASH_ERROR
    return READER_ERROR


def is_uint(v, top=U32):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top
