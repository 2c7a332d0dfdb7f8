"""The upload's records as staging rows: each depot row checked (it must be a well-formed trip
record of the reader and seq it is filed under) and packed in PostgreSQL's binary COPY format, or
turned into an incident row if it is not. The central columns come from the record's bytes, never
from the depot's columns."""
import hashlib
import struct
from binascii import crc32
from hashlib import sha256

from host_tools.common.fw import validator  # noqa: F401
from validator import triplog as tl

MAX_KEPT = tl.MAX_RECORD  # bytes of a hostile depot row kept in its incident

_REC = struct.Struct(tl.REC_FMT)
_KINDS = tl.KINDS
_MIN, _MAX, _FIXED, _CRC = tl.MIN_RECORD, tl.MAX_RECORD, tl.REC_FIXED, tl.CRC_SIZE
_MARK, _VERSION, _CRED, _MAX_RAW = tl.REC_MARK, tl.VERSION, tl.CRED_SIZE, tl.MAX_RAW
_NOT_FLAGS = ~tl.FLAG_KEYED


def fields(raw):
    """The header fields of a stored trip record, checked exactly as validator.triplog.decode
    checks them (the tests hold the two to the same answers), without building its dict or
    slicing the ride code: the upload's inner loop. Raises tl.RecordError."""
    n = len(raw)
    if n < _MIN or n > _MAX:
        raise tl.RecordError("trip record length %d out of range" % n)
    h = _REC.unpack_from(raw)
    if h[0] != _MARK or h[1] != _VERSION:
        raise tl.RecordError("not a version %d trip record" % _VERSION)
    clen, rlen = h[15], h[16]
    if h[2] != n or n != _FIXED + clen + rlen + _CRC:
        raise tl.RecordError("trip record length fields disagree")
    if (clen and clen != _CRED) or rlen > _MAX_RAW or h[8] > 2 or h[9] & _NOT_FLAGS:
        raise tl.RecordError("trip record field out of range")
    if crc32(memoryview(raw)[:n - _CRC]) != int.from_bytes(raw[n - _CRC:], "big"):
        raise tl.RecordError("trip record checksum mismatch")
    return h


def _u(v):
    """An integer from a depot column (SQLite stores whatever it was given)."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("not an integer: %r" % (v,))
    return v


def bad_row(reason, rid, seq, raw, now):
    """An incident row for a depot row that is not a good record of its reader."""
    data = raw if isinstance(raw, (bytes, bytearray)) else str(raw).encode()
    h = hashlib.sha256(data).hexdigest()[:32]
    rid = rid if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid < 1 << 63 else None
    seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 1 << 63 else None
    detail = "%s (depot row reader %s seq %s, %d bytes)" % (reason, rid, seq, len(data))
    return ("record/%s/%s/%s" % (rid, seq, h), rid, "bad_record", seq, seq, detail[:1000],
            now, bytes(data[:MAX_KEPT]))


# One staging row in PostgreSQL's binary COPY format: a field count, then each field as its
# length and bytes (big-endian); the variable fields (kind, cred_id, record) come in few sizes, so
# one Struct per (kind, cred_id) size packs all but the record in one call.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"
_KIND_BYTES = [k.encode() for k in _KINDS]
_ROWS = {}
_I64 = 1 << 63
_U64 = 1 << 64


def _row_struct(klen, clen):
    key = (klen, clen)
    st = _ROWS.get(key)
    if st is None:
        st = _ROWS[key] = struct.Struct(
            ">h" + "iq" * 2 + "i16s" + "iq" + "ih" * 2 + "i%ds" % klen + "iq" * 2 + "i%ds" % clen
            + "iq" * 3 + "i?" + "iq" + "i")
    return st


def encode_row(rid, seq, raw, received_at, now):
    """(staging row in binary COPY format, None) for a good depot row, (None, incident row) for
    any other."""
    try:
        if not (type(rid) is int and type(seq) is int and type(received_at) is int):
            rid, seq, received_at = _u(rid), _u(seq), _u(received_at)
        if type(raw) is not bytes:
            raise tl.RecordError("raw is %s, not bytes" % type(raw).__name__)
        h = fields(raw)
    except (ValueError, TypeError) as e:  # RecordError is a ValueError
        return None, bad_row("does not decode as a trip record: %s" % e, rid, seq, raw, now)
    if h[4] != rid or h[3] != seq:
        return None, bad_row("the record is reader %d's seq %d, filed as reader %d's seq %d"
                          % (h[4], h[3], rid, seq), rid, seq, raw, now)
    if not 0 <= received_at < _I64:
        return None, bad_row("received_at out of range", rid, seq, raw, now)
    # h: (mark, version, length, seq, reader, time, decision, reason, kind, flags, account,
    #     counter, fare, line, stop, cred_len, raw_len, prev_link); u64s go as int8 bit patterns
    kind = _KIND_BYTES[h[8]]
    clen = h[15]
    acct, ctr = h[10], h[11]
    st = _ROWS.get((len(kind), clen)) or _row_struct(len(kind), clen)
    return st.pack(
        16, 8, rid, 8, seq, 16, sha256(raw).digest()[:16], 8, h[5], 2, h[6], 2, h[7],
        len(kind), kind, 8, acct - _U64 if acct >= _I64 else acct,
        8, ctr - _U64 if ctr >= _I64 else ctr, clen, raw[_FIXED:_FIXED + clen],
        8, h[12], 8, h[13], 8, h[14], 1, h[9] & 1 == 1, 8, received_at, len(raw)) + raw, None
