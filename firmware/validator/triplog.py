# Power-safe trip log on a raw flash region (an esp32.Partition, or FlashDev in tests).
#
# Why raw flash and not a littlefs file: a flushed littlefs append rewrites the file's last block,
# about one 4 KiB erase per tap (45 ms typical, 400 ms worst case on the ESP32's SPI flash); here a
# tap costs one program of the record's own bytes; the erases are done ahead of time, a few at a time
# by housekeeping() while the reader is idle. Figures in docs/performance.md, layout in docs/triplog.md.
#
# Layout of the region (blocks of 4 KiB):
#   blocks 0, 1   ack watermark: append-only 32-byte entries, the two blocks used in turn
#   blocks 2..    segments: a 24-byte header, then records back to back in erased flash
# Every byte is programmed once after an erase and never rewritten, so a record is valid exactly when
# its CRC and its expected sequence number check; a torn write fails the CRC and is dropped on boot.
# After a boot nothing is programmed into a block that has not been erased since that boot: a write
# or erase cut by the power may leave cells that read 0xFF now and flip later, so neither the old
# tail segment nor the ack block in use is written again, and free segments are erased before use.
import binascii
import hashlib
import struct
from array import array

VERSION = 1

# --- trip record -------------------------------------------------------------------------------
REC_MARK = 0x54  # "T"
REC_FMT = ">BBHIIIBBBBQQIIIBH16s"
REC_FIXED = 67  # struct.calcsize(REC_FMT)
CRC_SIZE = 4
LINK_SIZE = 16
CRED_SIZE = 16
MAX_RAW = 1024  # ride codes are at most 400 bytes (tokens.MAX_CODE), NFC transcripts about as much
MIN_RECORD = REC_FIXED + CRC_SIZE
MAX_RECORD = REC_FIXED + CRED_SIZE + MAX_RAW + CRC_SIZE
FLAG_KEYED = 0x01  # the chain link is an HMAC under the reader's log key

KINDS = ("", "qr", "nfc")  # code = index
_U8 = 0xFF
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF

# --- segment header and ack entry --------------------------------------------------------------
SEG_MAGIC = b"TLSG"
SEG_FMT = ">4sBBHIII"  # magic, version, flags, reserved, counter, reader_id, first_seq
SEG_HEADER = 24  # 20 + CRC
ACK_MARK = 0x41  # "A"
ACK_FMT = ">BBHII16s"  # mark, version, reserved, ack_seq, reader_id, link
ACK_SIZE = 32  # 28 + CRC
META_BLOCKS = 2

# what a segment holds, one byte each in TripLog._state
FREE = 0   # looks blank, but not erased since this boot: erased when the ring comes near it
DIRTY = 1  # free, but holds reclaimed records or garbage: erased by housekeeping
READY = 2  # erased since this boot, nothing written: the only state a segment is opened from
LIVE = 3   # holds records not yet reclaimed
READY_AHEAD = 2  # segments that housekeeping keeps READY for the next appends

_GENESIS_LABEL = b"FVTL genesis"
_BLANK_HEADER = b"\xff" * SEG_HEADER


class RecordError(ValueError):
    """Bytes that are not a well-formed trip record (or a record field out of range)."""


class ChainError(ValueError):
    """A record list whose hash chain or sequence does not follow on; `index` is the first bad one."""

    def __init__(self, index, why):
        super().__init__("record %d: %s" % (index, why))
        self.index = index


class LogError(Exception):
    """The log cannot work: wrong reader's flash, geometry, or an unreadable acknowledged record."""


class LogFull(LogError):
    """No room for the record without overwriting unacknowledged ones: service, log full."""


# --- pure functions (also used by the depot on CPython) -----------------------------------------

def genesis(reader_id):
    """The chain value that the first record of a reader commits to."""
    return hashlib.sha256(_GENESIS_LABEL + struct.pack(">I", reader_id)).digest()[:LINK_SIZE]


def _check(v, top, name):
    if v is True or v is False:  # a decision may come as a bool (not an int on MicroPython)
        v = int(v)
    if not isinstance(v, int) or v < 0 or v > top:
        raise RecordError("trip record field %s out of range: %r" % (name, v))
    return v


def _bytes_field(v, top, name):
    if not isinstance(v, (bytes, bytearray)) or len(v) > top:
        raise RecordError("trip record field %s must be bytes of length <= %d" % (name, top))
    return v


def _link(body, keyed, key):
    if keyed:
        from validator.hmac256 import Hmac
        key = key if isinstance(key, Hmac) else Hmac(key)
        return key.tag(body)[:LINK_SIZE]
    return hashlib.sha256(body).digest()[:LINK_SIZE]


def _encode(rec, seq, reader_id, prev_link, key, out=None):
    # into `out` (a buffer of MAX_RECORD bytes: the log's own, made once) or a new bytearray
    kind = rec.get("kind", "")
    if kind not in KINDS:
        raise RecordError("trip record kind must be 'qr', 'nfc' or ''")
    cred = _bytes_field(rec.get("cred_id", b""), CRED_SIZE, "cred_id")
    if len(cred) not in (0, CRED_SIZE):
        raise RecordError("trip record cred_id must be 16 bytes or empty")
    raw = _bytes_field(rec.get("raw", b""), MAX_RAW, "raw")
    if not isinstance(prev_link, (bytes, bytearray)) or len(prev_link) != LINK_SIZE:
        raise RecordError("prev_link must be %d bytes" % LINK_SIZE)
    n = REC_FIXED + len(cred) + len(raw) + CRC_SIZE
    buf = bytearray(n) if out is None else memoryview(out)[:n]
    struct.pack_into(
        REC_FMT, buf, 0, REC_MARK, VERSION, n, _check(seq, _U32, "seq"),
        _check(reader_id, _U32, "reader_id"), _check(rec["time"], _U32, "time"),
        _check(rec["decision"], _U8, "decision"), _check(rec["reason"], _U8, "reason"),
        KINDS.index(kind), FLAG_KEYED if key is not None else 0,
        _check(rec.get("account", 0), _U64, "account"), _check(rec.get("counter", 0), _U64, "counter"),
        _check(rec.get("fare", 0), _U32, "fare"), _check(rec.get("line", 0), _U32, "line"),
        _check(rec.get("stop", 0), _U32, "stop"), len(cred), len(raw), prev_link)
    buf[REC_FIXED:REC_FIXED + len(cred)] = cred
    buf[REC_FIXED + len(cred):n - CRC_SIZE] = raw
    mv = memoryview(buf)
    struct.pack_into(">I", buf, n - CRC_SIZE, binascii.crc32(mv[:n - CRC_SIZE]))
    return buf


def encode(rec, seq, reader_id, prev_link, key=None):
    """The stored bytes of one record (see docs/triplog.md). Raises RecordError (a ValueError) for a
    field out of range."""
    return bytes(_encode(rec, seq, reader_id, prev_link, key))


def _parse(buf):
    """Header tuple of a well-formed record that fills `buf` exactly; RecordError otherwise."""
    n = len(buf)
    if n < MIN_RECORD or n > MAX_RECORD:
        raise RecordError("trip record length %d out of range" % n)
    h = struct.unpack_from(REC_FMT, buf, 0)
    if h[0] != REC_MARK or h[1] != VERSION:
        raise RecordError("not a version %d trip record" % VERSION)
    clen, rlen = h[15], h[16]
    if h[2] != n or n != REC_FIXED + clen + rlen + CRC_SIZE:
        raise RecordError("trip record length fields disagree")
    if clen not in (0, CRED_SIZE) or rlen > MAX_RAW or h[8] >= len(KINDS) or h[9] & ~FLAG_KEYED:
        raise RecordError("trip record field out of range")
    if binascii.crc32(memoryview(buf)[:n - CRC_SIZE]) != struct.unpack_from(">I", buf, n - CRC_SIZE)[0]:
        raise RecordError("trip record checksum mismatch")
    return h


def decode(raw, key=None):
    """Fields of a stored record as a dict; RecordError (a ValueError) if it is not a well-formed
    record. `link` (what the next record commits to) is None for a keyed record decoded without
    the key."""
    h = _parse(raw)
    mv = memoryview(raw)
    clen = h[15]
    keyed = bool(h[9] & FLAG_KEYED)
    return {
        "version": h[1], "seq": h[3], "reader_id": h[4], "time": h[5], "decision": h[6],
        "reason": h[7], "kind": KINDS[h[8]], "keyed": keyed, "account": h[10], "counter": h[11],
        "fare": h[12], "line": h[13], "stop": h[14],
        "cred_id": bytes(mv[REC_FIXED:REC_FIXED + clen]),
        "raw": bytes(mv[REC_FIXED + clen:len(raw) - CRC_SIZE]),
        "prev_link": h[17],
        "link": None if keyed and key is None else _link(mv[:len(raw) - CRC_SIZE], keyed, key),
    }


def link(raw, key=None):
    """The chain value after this record (what the next record must carry as prev_link)."""
    h = _parse(raw)
    return _link(memoryview(raw)[:len(raw) - CRC_SIZE], bool(h[9] & FLAG_KEYED), key)


def chain_ok(prev_link, raw, key=None):
    """If `raw` is a well-formed record that commits to `prev_link`, return its own link (for the next
    record), else None. With `key` only keyed records pass, without it only unkeyed ones: the
    verifier, not the record, decides the mode."""
    try:
        h = _parse(raw)
    except ValueError:
        return None
    keyed = bool(h[9] & FLAG_KEYED)
    if keyed != (key is not None) or h[17] != bytes(prev_link):
        return None
    return _link(memoryview(raw)[:len(raw) - CRC_SIZE], keyed, key)


def verify_chain(prev_link, records, key=None, prev_seq=None):
    """Check that `records` (stored bytes, in order) follow `prev_link` (and `prev_seq`, if given)
    without a gap: each commits to the one before, sequence numbers rise by one, one reader.
    Returns (link, seq) after the last record; raises ChainError at the first break."""
    reader = None
    seq = prev_seq
    for i, raw in enumerate(records):
        nxt = chain_ok(prev_link, raw, key)
        if nxt is None:
            raise ChainError(i, "malformed or does not commit to the previous record")
        h = struct.unpack_from(REC_FMT, raw, 0)
        if seq is not None and h[3] != seq + 1:
            raise ChainError(i, "sequence %d does not follow %d" % (h[3], seq))
        if reader is not None and h[4] != reader:
            raise ChainError(i, "reader id changed")
        reader, seq, prev_link = h[4], h[3], nxt
    return prev_link, seq


# --- the log on flash ---------------------------------------------------------------------------

class _Segs:
    """The live segments, oldest first, as (index, counter, first seq) each, in arrays made once
    for every segment of the region: a list of small lists grew with the unacknowledged log
    (about 100 bytes of heap a segment, 12 KB for a full 512 KiB log) and scattered small blocks
    over the heap through the day."""

    def __init__(self, cap):
        self.cap = cap
        self.idx = array("H", bytes(2 * cap))
        self.counter = array("I", bytes(4 * cap))
        self.first = array("I", bytes(4 * cap))
        self.start = 0
        self.n = 0

    def __len__(self):
        return self.n

    def __getitem__(self, k):
        if k < 0:
            k += self.n
        if not 0 <= k < self.n:
            raise IndexError("segment")
        j = (self.start + k) % self.cap
        return self.idx[j], self.counter[j], self.first[j]

    def append(self, seg):
        if self.n >= self.cap:
            raise IndexError("more segments than the region has")
        j = (self.start + self.n) % self.cap
        self.idx[j], self.counter[j], self.first[j] = seg[0], seg[1], seg[2]
        self.n += 1

    def pop(self, k):
        # the oldest only (an acknowledgement frees segments from the front)
        if k != 0 or not self.n:
            raise IndexError("segment")
        seg = self[0]
        self.start = (self.start + 1) % self.cap
        self.n -= 1
        return seg

    def clear(self):
        self.start = self.n = 0


class TripLog:
    """Append-only trip log on blocks [first_block, first_block + blocks) of a block device with
    the extended interface (readblocks/writeblocks with offset, ioctl 4/5/6). Recovers on open."""

    def __init__(self, dev, reader_id, first_block=0, blocks=None, key=None, warn_free=None):
        self._dev = dev
        self.reader_id = _check(reader_id, _U32, "reader_id")
        self._key = key
        if key is not None:
            from validator.hmac256 import Hmac
            self._mac = Hmac(key)  # the key pads once, not per record
        else:
            self._mac = None
        bs = dev.ioctl(5, 0)
        if blocks is None:
            blocks = dev.ioctl(4, 0) - first_block
        if blocks < META_BLOCKS + 2 or bs < SEG_HEADER + MAX_RECORD or bs % ACK_SIZE:
            raise LogError("trip log region too small: %d blocks of %d bytes" % (blocks, bs))
        self._bs = bs
        self._meta0 = first_block
        self._seg0 = first_block + META_BLOCKS
        self._nseg = blocks - META_BLOCKS
        self._buf = bytearray(MAX_RECORD)  # scratch for one record read; never handed out
        self._wbuf = bytearray(MAX_RECORD)  # the record being appended (no block per tap)
        self._state = bytearray(self._nseg)  # FREE, DIRTY, READY or LIVE per segment
        self._segs = _Segs(self._nseg)
        self._ndirty = 0
        self.capacity = self._nseg * (bs - SEG_HEADER)
        self.warn_free = self.capacity // 5 if warn_free is None else warn_free
        self._recover()

    # -- public state --
    @property
    def first_seq(self):
        """First unacknowledged sequence number (last_seq + 1 when nothing is pending)."""
        return self.ack_seq + 1

    @property
    def ack_link(self):
        """The chain value after record ack_seq (genesis when nothing is acknowledged): where the
        depot's chain continues."""
        return self._ack_link

    @property
    def pending(self):
        return self.last_seq - self.ack_seq

    @property
    def free_bytes(self):
        tail = self._bs - self._tail_off if self._tail_ok else 0
        return tail + (self._nseg - len(self._segs)) * (self._bs - SEG_HEADER)

    @property
    def state(self):
        """"full" when a maximum-size record might not fit, "nearly_full" below warn_free bytes."""
        if len(self._segs) == self._nseg and (
                not self._tail_ok or self._bs - self._tail_off < MAX_RECORD):
            return "full"
        if self.free_bytes < self.warn_free:
            return "nearly_full"
        return "ok"

    # -- flash access --
    def _read(self, blk, off, n):
        mv = memoryview(self._buf)[:n]
        self._dev.readblocks(blk, mv, off)
        return mv

    # -- recovery --
    def _recover(self):
        self._recover_ack()
        heads = []
        top = 0
        for i in range(self._nseg):
            mv = self._read(self._seg0 + i, 0, SEG_HEADER)
            if mv != _BLANK_HEADER:
                self._state[i] = DIRTY  # until it turns out LIVE below
            if binascii.crc32(mv[:SEG_HEADER - 4]) != struct.unpack_from(">I", mv, SEG_HEADER - 4)[0]:
                continue
            magic, ver, _, _, counter, rid, first = struct.unpack_from(SEG_FMT, mv, 0)
            if magic != SEG_MAGIC or ver != VERSION:
                continue
            if rid != self.reader_id:
                raise LogError("trip log belongs to reader %d, not %d" % (rid, self.reader_id))
            heads.append((counter, i, first))
            top = max(top, counter)
        heads.sort()
        self._counter = top
        # A segment is dead (free) when every record it can hold is acknowledged: its successor
        # starts at or below ack_seq + 1. The newest segment (the tail) always stays.
        self._segs.clear()
        for k in range(len(heads)):
            counter, i, first = heads[k]
            if k + 1 < len(heads) and heads[k + 1][2] - 1 <= self.ack_seq:
                continue
            self._segs.append([i, counter, first])
            self._state[i] = LIVE
        self._ndirty = sum(1 for st in self._state if st == DIRTY)
        self.last_seq, self._last_link = self.ack_seq, self._ack_link
        # The tail is never appended to after a boot: a record write cut by the power may have
        # left cells after the last good record that read 0xFF now and 0 later. The next record
        # opens a fresh segment, whose first_seq also hides a torn record that later reads whole.
        self._tail_ok = False
        self._tail_off = self._bs
        if not self._segs:
            return
        # The last good record: the end of the tail segment, or of an older one if the tail is empty.
        for k in range(len(self._segs) - 1, -1, -1):
            end, seq, lnk = self._scan_end(k)
            if seq:
                if seq > self.last_seq:
                    self.last_seq, self._last_link = seq, lnk
                break
        # Never hand out a number at or below one that a segment was opened for.
        self.last_seq = max(self.last_seq, self._segs[-1][2] - 1)

    def _recover_ack(self):
        best = None  # (ack_seq, block, end offset of the valid run in that block, link)
        for b in range(META_BLOCKS):
            off = 0
            while off + ACK_SIZE <= self._bs:
                mv = self._read(self._meta0 + b, off, ACK_SIZE)
                if binascii.crc32(mv[:ACK_SIZE - 4]) != struct.unpack_from(">I", mv, ACK_SIZE - 4)[0]:
                    break
                mark, ver, _, seq, rid, lnk = struct.unpack_from(ACK_FMT, mv, 0)
                if mark != ACK_MARK or ver != VERSION:
                    break
                if rid != self.reader_id:
                    raise LogError("trip log belongs to reader %d, not %d" % (rid, self.reader_id))
                off += ACK_SIZE
                if best is None or seq >= best[0]:
                    best = [seq, b, off, lnk]
            if best is not None and best[1] == b:
                best[2] = off  # append after the whole valid run of the block
        if best is None:
            best = (0, 0, 0, genesis(self.reader_id))
        self.ack_seq, self._meta_blk, self._meta_off, self._ack_link = best
        # Like the tail: the next entry goes to the other block, erased first (a cut entry write
        # may have left weak cells after the last good entry).
        self._meta_ok = False
        self._spare_ready = False  # the other ack block, erased since this boot

    def _records(self, k, start=0):
        """Yield (offset, length, seq) of the valid records of live segment k with seq >= start, the
        record's bytes in self._buf. Stops at the first record that is torn, corrupt, out of
        sequence, or beyond what the next segment starts with, except that a corrupt record
        followed by the next one in sequence is stepped over."""
        i, _, seq = self._segs[k]
        upper = self._segs[k + 1][2] - 1 if k + 1 < len(self._segs) else _U32
        blk = self._seg0 + i
        off = SEG_HEADER
        while seq <= upper:
            n = self._length_at(blk, off)
            if not n:
                return
            if not self._valid(blk, off, n, seq):
                # Damaged after it was written (flash wear) but its length reads right: go on
                # after it if the next record follows on, so that the records after it stay
                # readable and their numbers are not handed out again on a boot. (A torn record
                # is never followed by another: after a cut the next one opens a new segment.)
                nxt = self._length_at(blk, off + n) if seq < upper else 0
                if not nxt or not self._valid(blk, off + n, nxt, seq + 1):
                    return
            elif seq >= start:
                yield off, n, seq
            off += n
            seq += 1

    def _length_at(self, blk, off):
        """The length field of a record at `off`, if one can start there, else 0."""
        if off + MIN_RECORD > self._bs:
            return 0
        head = self._read(blk, off, 4)
        if head[0] != REC_MARK:
            return 0
        n = (head[2] << 8) | head[3]
        return n if MIN_RECORD <= n <= MAX_RECORD and off + n <= self._bs else 0

    def _valid(self, blk, off, n, seq):
        """Whether record `seq` of this reader is at `off`, whole (its bytes then in self._buf)."""
        try:
            h = _parse(self._read(blk, off, n))
        except ValueError:
            return False
        return h[3] == seq and h[4] == self.reader_id

    def _scan_end(self, k):
        """(end offset, last seq or 0, link after it) of live segment k."""
        end, last, n = SEG_HEADER, 0, 0
        for off, n, seq in self._records(k):
            end, last = off + n, seq
        if not last:
            return end, 0, None
        return end, last, self._link_of(self._read(self._seg0 + self._segs[k][0], end - n, n))

    def _link_of(self, rec):
        keyed = bool(rec[19] & FLAG_KEYED)
        if keyed and self._key is None:
            raise LogError("keyed trip log opened without its key")
        return _link(rec[:len(rec) - CRC_SIZE], keyed, self._mac)

    # -- append --
    def append(self, rec):
        """Write one record and return its sequence number once it is on flash. Raises LogFull
        (nothing written) when it does not fit, RecordError for a field out of range, OSError if
        the flash fails (the record is then absent or dropped as torn on the next boot)."""
        seq = self.last_seq + 1
        data = _encode(rec, seq, self.reader_id, self._last_link, self._key, self._wbuf)
        n = len(data)
        nxt = _link(memoryview(data)[:n - CRC_SIZE], self._mac is not None, self._mac)
        if not self._tail_ok or self._tail_off + n > self._bs:
            self._open_segment(seq)
        blk = self._seg0 + self._segs[-1][0]
        self._tail_ok = False  # until the write is known complete, the tail is not clean
        self._dev.writeblocks(blk, data, self._tail_off)
        self._tail_off += n
        self._tail_ok = True
        self.last_seq, self._last_link = seq, nxt
        return seq

    def _open_segment(self, first_seq):
        i = self._pick_free()
        if i < 0:
            raise LogFull("trip log full: %d records not acknowledged" % self.pending)
        blk = self._seg0 + i
        if self._state[i] != READY:
            self._erase_segment(i)  # one erase in this tap: housekeeping had not got here
        self._counter += 1
        hdr = bytearray(SEG_HEADER)
        struct.pack_into(SEG_FMT, hdr, 0, SEG_MAGIC, VERSION, 0, 0, self._counter, self.reader_id,
                         first_seq)
        struct.pack_into(">I", hdr, SEG_HEADER - 4, binascii.crc32(memoryview(hdr)[:SEG_HEADER - 4]))
        self._tail_ok = False
        self._dev.writeblocks(blk, hdr, 0)
        self._segs.append([i, self._counter, first_seq])
        self._state[i] = LIVE
        self._tail_off = SEG_HEADER
        self._tail_ok = True

    def _pick_free(self):
        # Round the ring from the tail, so that erases spread over the whole region.
        start = self._segs[-1][0] + 1 if self._segs else 0
        for j in range(self._nseg):
            i = (start + j) % self._nseg
            if self._state[i] != LIVE:
                return i
        return -1

    # -- read and acknowledge --
    def read(self, from_seq, max_bytes):
        """Stored bytes of unacknowledged records from `from_seq` on, in order, at most `max_bytes`
        in total but always at least one record if there is one (MAX_RECORD bounds its size)."""
        out = []
        total = 0
        start = max(from_seq, self.ack_seq + 1)
        if start > self.last_seq:
            return out
        for k in range(len(self._segs)):
            if k + 1 < len(self._segs) and self._segs[k + 1][2] <= start:
                continue
            for off, n, seq in self._records(k, start):
                if out and total + n > max_bytes:
                    return out
                out.append(bytes(memoryview(self._buf)[:n]))
                total += n
        return out

    def ack(self, upto_seq, erase=False):
        """The depot holds every record up to `upto_seq`: store the watermark (atomically: one
        CRC-checked entry) and free the segments it covers. Their erasing is left to
        housekeeping() (or to the append that reaches one first); erase=True does it all now,
        without a bound (tests and benchmarks only). Acks at or below the watermark are ignored."""
        if upto_seq <= self.ack_seq:
            return
        if upto_seq > self.last_seq:
            raise ValueError("ack %d beyond the last record %d" % (upto_seq, self.last_seq))
        lnk = self._link_after(upto_seq)
        entry = bytearray(ACK_SIZE)
        struct.pack_into(ACK_FMT, entry, 0, ACK_MARK, VERSION, 0, upto_seq, self.reader_id, lnk)
        struct.pack_into(">I", entry, ACK_SIZE - 4, binascii.crc32(memoryview(entry)[:ACK_SIZE - 4]))
        if self._meta_ok and self._meta_off + ACK_SIZE <= self._bs:
            b, off = self._meta_blk, self._meta_off
        else:
            # Switch to the other block; the current one keeps the latest entry until this lands.
            b, off = 1 - self._meta_blk, 0
            if not self._spare_ready:
                self._dev.ioctl(6, self._meta0 + b)
            self._spare_ready = False  # from now on the block just left
        self._meta_ok = False
        self._dev.writeblocks(self._meta0 + b, entry, off)
        self._meta_blk, self._meta_off, self._meta_ok = b, off + ACK_SIZE, True
        self.ack_seq, self._ack_link = upto_seq, lnk
        while len(self._segs) > 1 and self._segs[1][2] - 1 <= upto_seq:
            self._state[self._segs.pop(0)[0]] = DIRTY
            self._ndirty += 1
        if erase:
            self.housekeeping(self._nseg + META_BLOCKS)

    def housekeeping(self, max_erases=1):
        """Erase at most `max_erases` blocks ahead of need, so that appends and acks find erased
        flash: first the next READY_AHEAD segments the appends will open, then the spare ack
        block, then every reclaimed segment. Call it from an idle loop; each erase blocks for one
        4 KiB flash erase (45 ms typical, 400 ms worst case on the ESP32). Returns how many blocks
        still wait for an erase (0: nothing to do, and no flash access, until the next ack, the
        next segment opened, or the next boot)."""
        done = 0
        for i in self._ahead():
            if self._state[i] != READY and done < max_erases:
                self._erase_segment(i)
                done += 1
        if not self._spare_ready and done < max_erases:
            self._dev.ioctl(6, self._meta0 + 1 - self._meta_blk)
            self._spare_ready = True
            done += 1
        if self._ndirty and done < max_erases:
            start = self._segs[-1][0] + 1 if self._segs else 0
            for j in range(self._nseg):
                i = (start + j) % self._nseg
                if self._state[i] == DIRTY:
                    if done == max_erases:
                        break
                    self._erase_segment(i)
                    done += 1
        left = self._ndirty + (0 if self._spare_ready else 1)
        for i in self._ahead():
            if self._state[i] == FREE:
                left += 1
        return left

    def _ahead(self):
        """The next READY_AHEAD segments that appends will open, in order."""
        out = []
        start = self._segs[-1][0] + 1 if self._segs else 0
        for j in range(self._nseg):
            i = (start + j) % self._nseg
            if self._state[i] != LIVE:
                out.append(i)
                if len(out) == READY_AHEAD:
                    break
        return out

    def _erase_segment(self, i):
        self._dev.ioctl(6, self._seg0 + i)
        if self._state[i] == DIRTY:
            self._ndirty -= 1
        self._state[i] = READY

    def _link_after(self, seq):
        """The chain value after record `seq`: computed from the record itself, so that a damaged
        record after it does not stop the depot from acknowledging up to it."""
        if seq == self.last_seq:
            return self._last_link
        rec = self._find(seq)
        if rec is not None:
            return self._link_of(rec)
        # Record seq itself unreadable: what record seq + 1 committed to is the same value.
        rec = self._find(seq + 1)
        if rec is not None:
            return bytes(struct.unpack_from(REC_FMT, rec, 0)[17])
        raise LogError("records %d and %d are unreadable; cannot acknowledge up to %d"
                       % (seq, seq + 1, seq))

    def _find(self, seq):
        """Record `seq` (a view of self._buf), or None if it is not readable."""
        for k in range(len(self._segs)):
            if k + 1 < len(self._segs) and self._segs[k + 1][2] <= seq:
                continue  # seq belongs to a later segment
            for off, n, s in self._records(k, seq):
                if s == seq:
                    return memoryview(self._buf)[:n]
                break
            return None
        return None

def wipe(dev, first_block=0, blocks=None):
    """Erase a trip log region (provisioning a new reader id only: sequence numbers restart)."""
    if blocks is None:
        blocks = dev.ioctl(4, 0) - first_block
    for b in range(first_block, first_block + blocks):
        dev.ioctl(6, b)
