# The deny list on flash: a million accounts and credentials in about 3-4 bytes each, looked up with
# a 4 KiB index in RAM and two small reads. docs/denylist.md has the format, the false-positive
# rate and the flash budget; host_tools/issuing/denylist_build.py writes the files.
#
# An id is hashed with SHA-256(tag || salt || id). The first 24 hash bits pick a group (its offset
# comes from the index in RAM) and a sub-bucket inside it (from the group's count table on flash);
# entries store only the next 24 bits (the fingerprint) and, in 4-byte entries, an expiry code.
#
# Installed list = one file, list.fdl, shaped like a signed envelope (signedfile.py):
#   header (19) | body | 64 bytes (the operator signature for a received full list; zeros for a
#   list merged here from a delta, whose result digest the signed delta carried)
# Full list body (big-endian header, index little-endian so it loads straight into an array):
#   "FDL1" | width u8 (3 or 4) | group_bits u8 | sub_bits u8 | 0 u8 | count u32 | epoch_day u32 |
#   salt 8 | per group: entries (width bytes each, sorted) then 2**sub_bits count bytes |
#   index: (2**group_bits + 1) u32 little-endian cumulative entry counts
# Delta body:
#   "FDD1" | base_version u32 | width, group_bits, sub_bits, 0 (u8 each) | epoch_day u32 | salt 8 |
#   result_count u32 | result_digest 32 (SHA-256 of the resulting full body) | n_records u32 |
#   records (8 bytes): bucket u24 | fingerprint 3 | expiry code 1 | op 1 (1 add, 2 remove)
#   sorted by (bucket, fingerprint, expiry code)
from validator import iobuf, signedfile as sf

from validator.denylist_format import (  # noqa: F401  (also the format's names for callers)
    BODY_HEADER, BODY_HEADER_SIZE, DAY, DELTA_HEADER, DELTA_HEADER_SIZE, DELTA_MAGIC, FP_BYTES,
    LIST_FILE, LIST_MAGIC, MALFORMED, MAX_BUCKET, MAX_COUNTS, MAX_GROUP_BITS, MAX_INDEX,
    MAX_SUB_BITS, NO_SPACE, OK,
    OLD_VERSION, OP_ADD, OP_REMOVE, RECORD_SIZE, Refused, TAG_ACCOUNT, TAG_CREDENTIAL, TMP_FILE,
    WRITE_FAILED, WRONG_BASE, WRONG_KIND, account_bytes, check_index, exists, hash_id,
    index_from_le, list_body_size, makedirs, new_index, read_list_header, remove_quietly)

RECORDS_SIZE = 32 * RECORD_SIZE  # delta records read at a time


class DenyList:
    """The installed deny list in `directory` (created if missing). Opening it is the recovery: an
    update cut short by a power loss left the old list (or already the new one) and at most a
    temporary file, which is removed here.

    Every buffer the list and its updates need is allocated here, once, at boot (the reader
    makes its DenyList while the heap is whole): after that neither a lookup nor an install
    needs a free block larger than 1 KiB (docs/performance.md, "Heap")."""

    def __init__(self, directory):
        self.dir = directory.rstrip("/") or "/"
        self.path = self.dir + "/" + LIST_FILE
        self.tmp = self.dir + "/" + TMP_FILE
        self._f = None
        # largest first: the index (4,100 bytes; a merge rewrites it in place), one sub-bucket's
        # entries, the count tables, the delta records; file copies and hashes go through the
        # reader's I/O buffer (validator/iobuf.py)
        self._idx = new_index(MAX_INDEX)
        self._idxv = memoryview(self._idx)
        self.io = iobuf.get()
        self._ebuf = bytearray(MAX_BUCKET * 4)
        self._emv = memoryview(self._ebuf)
        self._cbuf = bytearray(MAX_COUNTS)
        self._cmv = memoryview(self._cbuf)
        self.counts = bytearray(MAX_COUNTS)   # an install's second count table
        self.records = bytearray(RECORDS_SIZE)
        makedirs(self.dir)
        remove_quietly(self.tmp)
        self._load()

    # ---- state ---------------------------------------------------------------------------
    def _reset(self):
        self.version = 0      # 0: no list installed
        self.built_at = 0     # creation time of the installed list (or of its last delta)
        self.count = 0
        self.key_id = -1
        self.width = 0
        self.epoch_day = 0
        self._salt = b""
        self._n = 0           # entries of the index in use

    def close(self):
        """Close the list file (before unmounting the flash)."""
        self._close()

    def _close(self):
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None

    def _load(self):
        self._close()
        self._reset()
        self.error = None
        try:
            f = open(self.path, "rb")
        except OSError:
            return
        try:
            h, p = read_list_header(f)
            n = (1 << p[1]) + 1
            f.seek(sf.HEADER_SIZE + h.body_len - 4 * n)
            if f.readinto(self._idxv[:n]) != 4 * n:
                raise Refused(MALFORMED)
            index_from_le(self._idx, n)
            check_index(self._idx, n, p[3])
        except (Refused, OSError, ValueError):
            f.close()
            self.error = MALFORMED   # kept for diagnostics; the reader runs without a list
            return
        self._f = f
        self._n = n
        self.width, self._gbits, self._sbits, self.count, self.epoch_day, self._salt = p
        self._smask = (1 << self._sbits) - 1
        self._ssize = 1 << self._sbits
        self._shift = 24 - self._gbits - self._sbits
        self.version = h.version
        self.built_at = h.created
        self.key_id = h.key_id

    def _goff(self, g):
        # file offset of group g's entries
        return (sf.HEADER_SIZE + BODY_HEADER_SIZE + g * self._ssize + self._idx[g] * self.width)

    # ---- lookups ---------------------------------------------------------------------------
    def denied_account(self, account, now):
        """True if `account` (unsigned 64-bit int) is listed and its entry has not expired at `now`."""
        b = account_bytes(account)
        return b is not None and self._denied(TAG_ACCOUNT, b, now)

    def denied_credential(self, cred_id, now):
        """True if the 16-byte credential id is listed and its entry has not expired at `now`."""
        if not isinstance(cred_id, (bytes, bytearray, memoryview)) or len(cred_id) != 16:
            return False
        return self._denied(TAG_CREDENTIAL, bytes(cred_id), now)

    def _denied(self, tag, id_bytes, now):
        f = self._f
        if f is None:
            return False
        d = hash_id(tag, self._salt, id_bytes)
        b = ((d[0] << 16) | (d[1] << 8) | d[2]) >> self._shift
        g = b >> self._sbits
        s = b & self._smask
        idx = self._idx
        n_g = idx[g + 1] - idx[g]
        w = self.width
        goff = self._goff(g)
        cmv = self._cmv
        f.seek(goff + n_g * w)
        if f.readinto(cmv[:s + 1]) != s + 1:
            return False
        k = self._cbuf[s]
        if not k:
            return False
        pre = sum(cmv[:s])
        if pre + k > n_g:   # inconsistent counts: never read outside the group
            return False
        f.seek(goff + pre * w)
        e = self._ebuf
        if f.readinto(self._emv[:k * w]) != k * w:
            return False
        x = (d[3] << 16) | (d[4] << 8) | d[5]
        lo = 0
        hi = k
        while lo < hi:
            mid = (lo + hi) >> 1
            j = mid * w
            if ((e[j] << 16) | (e[j + 1] << 8) | e[j + 2]) < x:
                lo = mid + 1
            else:
                hi = mid
        if w == 3:
            if lo < k:
                j = lo * 3
                return ((e[j] << 16) | (e[j + 1] << 8) | e[j + 2]) == x
            return False
        # 4-byte entries: code 0 never expires, code c stops denying from day epoch_day + c
        cutoff = (now // DAY - self.epoch_day) if now is not None else -1
        while lo < k:
            j = lo * 4
            if ((e[j] << 16) | (e[j + 1] << 8) | e[j + 2]) != x:
                return False
            c = e[j + 3]
            if c == 0 or c > cutoff:
                return True
            lo += 1
        return False

    # ---- updates (the code lives in denylist_update, imported only when a file arrives) ----
    def install(self, path, operator_keys, now=None):
        """Install a received full list or delta (signed envelope at `path`). Returns OK or the
        reason it was refused; on refusal the installed list is unchanged and keeps working.
        A full list file is moved into the deny-list directory (no second copy on flash); a delta
        file is left where it is."""
        from validator import denylist_update
        return denylist_update.install(self, path, operator_keys, now)
