# Installing a received deny list or delta (DenyList.install); imported only when a file arrives.
#
# Every path keeps the installed list.fdl untouched until one final rename, which littlefs makes
# atomic: a power cut leaves the old list or the new one, and at worst a temporary file that
# DenyList() removes. A full list is checked (signature, version, structure) where it was
# received and renamed into place, so flash never holds a third copy. A delta is merged with the
# installed list into list.tmp group by group, read back and compared with the result digest the
# signed delta carries, then renamed.
#
# RAM: nothing is allocated here beyond small objects; the buffers are the DenyList's own, made at
# boot (validator/denylist.py). A merge rewrites the index in RAM in place (group g's new start is
# written once its old one is read), so a failed merge reloads the installed list from flash.
import hashlib
import os
import struct

from validator import signedfile as sf, watchdog
from validator.denylist_format import (
    BODY_HEADER, BODY_HEADER_SIZE, DELTA_HEADER, DELTA_HEADER_SIZE, DELTA_MAGIC, LIST_MAGIC,
    MALFORMED, MAX_BUCKET, NO_SPACE, OK, OLD_VERSION, OP_ADD, OP_REMOVE, RECORD_SIZE, WRITE_FAILED,
    WRONG_BASE, Refused, index_from_le, read_list_header, remove_quietly, list_body_size)

try:
    from micropython import const
except ImportError:  # CPython: the pure-logic tests
    def const(x):
        return x

_ENOSPC = const(28)
_INDEX_PIECE = const(128)   # index entries checked at a time (512 bytes of the I/O buffer)


def install(dl, path, operator_keys, now=None):
    """Install the full list or delta at `path` into `dl`. Returns OK or why not; anything else
    the reader's own (MemoryError, an OSError outside the writes) propagates, with dl as it was
    (the installed list reloaded from flash, no temporary file) and `path` untouched."""
    try:
        with open(path, "rb") as f:
            h = sf.parse_header(f.read(sf.HEADER_SIZE))
    except OSError:
        return MALFORMED
    if h is None:
        return MALFORMED
    try:
        if h.kind == sf.DENYLIST_DELTA:
            return _install_delta(dl, path, operator_keys, now)
        return _install_full(dl, path, operator_keys, now)
    except BaseException:
        remove_quietly(dl.tmp)
        if dl._f is None:   # closed for the rename: open what is installed now
            dl._load()
        raise


def _install_full(dl, path, operator_keys, now):
    reason, h = sf.verify_file(path, operator_keys, sf.DENYLIST, now)
    if reason != OK:
        return reason
    if h.version <= dl.version:
        return OLD_VERSION
    try:
        _check_full(dl, path)
    except (Refused, OSError, ValueError) as e:
        return e.args[0] if isinstance(e, Refused) else MALFORMED
    dl._close()
    try:
        try:
            os.rename(path, dl.path)
        except OSError:
            # the file arrived on another filesystem: copy, check the copy, then rename
            _copy_file(path, dl.tmp, dl.io)
            reason, h2 = sf.verify_file(dl.tmp, operator_keys, sf.DENYLIST, now)
            if reason != OK or h2.version != h.version:
                raise Refused(WRITE_FAILED)
            os.rename(dl.tmp, dl.path)
    except (Refused, OSError) as e:
        remove_quietly(dl.tmp)
        dl._load()
        return _write_reason(e)
    dl._load()
    return OK if dl.version == h.version else WRITE_FAILED


def _install_delta(dl, path, operator_keys, now):
    reason, h = sf.verify_file(path, operator_keys, sf.DENYLIST_DELTA, now)
    if reason != OK:
        return reason
    if h.version <= dl.version:
        return OLD_VERSION
    if dl._f is None:
        return WRONG_BASE
    try:
        with open(path, "rb") as df:
            df.seek(sf.HEADER_SIZE)
            digest = _merge(dl, df, h)
        _verify_body(dl.tmp, digest, dl.io)
        dl._close()
        os.rename(dl.tmp, dl.path)
    except (Refused, OSError, ValueError) as e:
        remove_quietly(dl.tmp)
        dl._load()
        return _write_reason(e)
    except BaseException:
        dl._load()   # the merge rewrote the index in RAM: the installed list's, from flash
        raise
    dl._load()
    return OK if dl.version == h.version else WRITE_FAILED


def _merge(dl, df, h):
    """Write the installed list + the delta to dl.tmp, group by group; return the result digest
    the delta promises. Rewrites dl's index in RAM into the new list's (the caller reloads the
    installed list if the merge fails)."""
    head = df.read(DELTA_HEADER_SIZE)
    if len(head) != DELTA_HEADER_SIZE:
        raise Refused(MALFORMED)
    (magic, base, w, gbits, sbits, zero, epoch, salt, rcount, rdigest,
     nrec) = struct.unpack(DELTA_HEADER, head)
    if magic != DELTA_MAGIC or zero or h.body_len != DELTA_HEADER_SIZE + RECORD_SIZE * nrec:
        raise Refused(MALFORMED)
    if (base != dl.version or w != dl.width or gbits != dl._gbits or sbits != dl._sbits
            or epoch != dl.epoch_day or salt != dl._salt):
        raise Refused(WRONG_BASE)
    G = 1 << gbits
    S = dl._ssize
    smask = S - 1
    if rcount > G * S * MAX_BUCKET:
        raise Refused(MALFORMED)
    src = dl._f
    idx = dl._idx   # old group starts, overwritten with the new ones as the merge goes
    buf = dl.io
    recs = _Records(df, nrec, w, dl.records)
    out = open(dl.tmp, "wb")
    try:
        out.write(struct.pack(sf.HEADER, sf.MAGIC, sf.DENYLIST, h.key_id, h.version, h.created,
                              list_body_size(w, gbits, sbits, rcount)))
        out.write(struct.pack(BODY_HEADER, LIST_MAGIC, w, gbits, sbits, 0, rcount, epoch, salt))
        ocmv = dl._cmv[:S]       # the lookup buffers are free while installing
        ocnt = dl._cbuf
        ebuf = dl._ebuf
        emv = dl._emv
        ncnt = dl.counts
        nmv = memoryview(ncnt)[:S]
        base_off = sf.HEADER_SIZE + BODY_HEADER_SIZE
        total = 0
        old_start = 0   # idx[g] before the merge wrote group g's new start there
        more = recs.next()
        for g in range(G):
            watchdog.kick()
            old_end = idx[g + 1]
            n_old = old_end - old_start
            goff = base_off + g * S + old_start * w
            old_start = old_end
            if not more or (recs.bucket >> sbits) != g:
                _copy(src, goff, n_old * w + S, out, buf)   # entries and count table as they are
                total += n_old
                idx[g + 1] = total
                continue
            src.seek(goff + n_old * w)
            if src.readinto(ocmv) != S:
                raise Refused(MALFORMED)
            nmv[:] = ocmv
            cursor = 0      # old entries of this group already copied out
            loaded = -1     # the sub-bucket whose old entries are in ebuf
            n_new = n_old
            while more and (recs.bucket >> sbits) == g:
                s = recs.bucket & smask
                start = sum(ocmv[:s])
                k = ocnt[s]
                end = start + k
                if end > n_old:
                    raise Refused(MALFORMED)
                if loaded != s:
                    src.seek(goff + start * w)
                    if src.readinto(emv[:k * w]) != k * w:
                        raise Refused(MALFORMED)
                    loaded = s
                fp = recs.fp
                ex = recs.exp
                # first old entry of the sub-bucket, not yet copied, that is >= the record
                p = cursor if cursor > start else start
                while p < end:
                    j = (p - start) * w
                    v = (ebuf[j] << 16) | (ebuf[j + 1] << 8) | ebuf[j + 2]
                    if v < fp or (v == fp and w == 4 and ebuf[j + 3] < ex):
                        p += 1
                    else:
                        break
                if p > cursor:
                    _copy(src, goff + cursor * w, (p - cursor) * w, out, buf)
                if recs.op == OP_ADD:
                    if ncnt[s] == MAX_BUCKET:
                        raise Refused(MALFORMED)
                    out.write(recs.entry(w))
                    ncnt[s] += 1
                    n_new += 1
                else:
                    j = (p - start) * w
                    if (p >= end or ((ebuf[j] << 16) | (ebuf[j + 1] << 8) | ebuf[j + 2]) != fp
                            or (w == 4 and ebuf[j + 3] != ex)):
                        raise Refused(WRONG_BASE)   # removing what the base does not hold
                    p += 1
                    ncnt[s] -= 1
                    n_new -= 1
                cursor = p
                more = recs.next()
            if cursor < n_old:
                _copy(src, goff + cursor * w, (n_old - cursor) * w, out, buf)
            out.write(nmv)
            total += n_new
            idx[g + 1] = total
        if more or recs.left:
            raise Refused(MALFORMED)   # records out of order or beyond the last bucket
        if total != rcount:
            raise Refused(WRONG_BASE)
        index_from_le(idx, G + 1)     # no-op on little-endian targets
        out.write(dl._idxv[:G + 1])
        _zeros(out, sf.SIG_SIZE, buf)
        out.flush()
    finally:
        out.close()
    return rdigest


class _Records:
    """Delta records through a small buffer, checked to come in file order."""

    def __init__(self, f, n, width, buf):
        self.f = f
        self.left = n
        self.width = width  # 3: entries without expiry, whose records carry an expiry of 0
        self.buf = buf
        self.mv = memoryview(buf)
        self.pos = 0
        self.end = 0
        self.bucket = -1
        self.fp = 0
        self.exp = 0
        self.op = 0

    def next(self):
        if not self.left:
            return False
        if self.pos >= self.end:
            want = min(self.left * RECORD_SIZE, len(self.buf))
            if self.f.readinto(self.mv[:want]) != want:
                raise Refused(MALFORMED)
            self.pos = 0
            self.end = want
        b = self.buf
        j = self.pos
        bucket = (b[j] << 16) | (b[j + 1] << 8) | b[j + 2]
        fp = (b[j + 3] << 16) | (b[j + 4] << 8) | b[j + 5]
        ex = b[j + 6]
        op = b[j + 7]
        if (op != OP_ADD and op != OP_REMOVE) or (ex and self.width == 3):
            raise Refused(MALFORMED)
        if bucket < self.bucket or (bucket == self.bucket and (
                fp < self.fp or (fp == self.fp and ex < self.exp))):
            raise Refused(MALFORMED)
        self.bucket = bucket
        self.fp = fp
        self.exp = ex
        self.op = op
        self.pos = j + RECORD_SIZE
        self.left -= 1
        return True

    def entry(self, width):
        j = self.pos - RECORD_SIZE + 3
        return self.mv[j:j + width]


def _check_full(dl, path):
    """Structure of a received full list (its signature is already checked): sizes, index, and
    every group's count table adding up to the group's entries. The index is read a piece at a
    time into dl's I/O buffer: the installed list keeps its own until the new one is in place."""
    with open(path, "rb") as f:
        h, p = read_list_header(f)
        width, gbits, sbits, count = p[0], p[1], p[2], p[3]
        G = 1 << gbits
        S = 1 << sbits
        cnt = memoryview(dl.counts)[:S]
        piece = memoryview(dl.io)
        at = sf.HEADER_SIZE + h.body_len - 4 * (G + 1)   # the index's first entry
        base = sf.HEADER_SIZE + BODY_HEADER_SIZE
        prev = 0
        g = -1   # the group whose end the next index entry gives
        while g < G:
            n = min(_INDEX_PIECE, G - g)
            f.seek(at + 4 * (g + 1))
            if f.readinto(piece[:4 * n]) != 4 * n:
                raise Refused(MALFORMED)
            for i in range(n):
                v = int.from_bytes(piece[4 * i:4 * i + 4], "little")
                if g < 0:
                    if v:
                        raise Refused(MALFORMED)
                elif v < prev:
                    raise Refused(MALFORMED)
                else:
                    f.seek(base + g * S + v * width)
                    if f.readinto(cnt) != S or sum(cnt) != v - prev:
                        raise Refused(MALFORMED)
                prev = v
                g += 1
            watchdog.kick()
        if prev != count:
            raise Refused(MALFORMED)


def _verify_body(path, digest, buf):
    """Read the merged list back from flash: it must be exactly the list the delta promised."""
    with open(path, "rb") as f:
        h = sf.parse_header(f.read(sf.HEADER_SIZE))
        if h is None:
            raise Refused(WRITE_FAILED)
        d = hashlib.sha256()
        mv = memoryview(buf)
        left = h.body_len
        while left:
            n = f.readinto(mv[:min(len(buf), left)])
            if not n:
                raise Refused(WRITE_FAILED)
            d.update(mv[:n])
            left -= n
            watchdog.kick()
        if len(f.read(sf.SIG_SIZE + 1)) != sf.SIG_SIZE:
            raise Refused(WRITE_FAILED)
    if d.digest() != digest:
        raise Refused(WRONG_BASE)


def _copy(src, off, n, out, buf):
    mv = memoryview(buf)
    src.seek(off)
    while n:
        k = src.readinto(mv[:min(n, len(buf))])
        if not k:
            raise Refused(MALFORMED)
        out.write(mv[:k])
        n -= k
        watchdog.kick()


def _zeros(out, n, buf):
    mv = memoryview(buf)
    mv[:n] = bytes(n)
    out.write(mv[:n])


def _copy_file(a, b, buf):
    with open(a, "rb") as src:
        size = src.seek(0, 2)
        with open(b, "wb") as out:
            _copy(src, 0, size, out, buf)
            out.flush()


def _write_reason(e):
    if isinstance(e, Refused):
        return e.args[0]
    if e.args and e.args[0] == _ENOSPC:
        return NO_SPACE
    return WRITE_FAILED
