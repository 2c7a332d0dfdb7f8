# Fixed-width records sorted by key in one preallocated bytearray: the RAM tables of
# validator.riderstate. No per-entry Python objects, so the heap cost is fixed by the capacity;
# lookups are a binary search on the key bytes.
import struct

KEY = 8                        # key bytes of every record
NOTHING_DROPPED = (0, 0)
ORDER = 8                      # least recently used entries a scan remembers (drops per scan)


class Table:
    """Fixed-width records (key + struct value) sorted by key in one bytearray. Each value has
    a u32 `last` (when the entry was last used) and a u32 `until` (the entry is needed while
    `until` >= the cutoff a caller passes to put; may be the same field as `last`)."""

    def __init__(self, fmt, cap, last_off, until_off):
        self.fmt = fmt
        self.vlen = struct.calcsize(fmt)
        self.r = KEY + self.vlen
        self.cap = cap
        self.buf = bytearray(self.r * cap)
        self.mv = memoryview(self.buf)
        self.n = 0
        self.last_off = KEY + last_off
        # (last, until) in one unpack at last_off: `until` is the same field or after `last`
        if until_off == last_off:
            self._lu = "<I"
        elif until_off >= last_off + 4:
            self._lu = "<I" + "x" * (until_off - last_off - 4) + "I"
        else:
            raise ValueError("until before last")
        # What a scan learnt, so that a full table does not scan for every new entry:
        # [(last, key)] ascending, the entries used least recently, every other entry's pair
        # being greater (None: unknown, scan); and a bound <= every entry's `until`.
        self._oldest = None
        self._min_until = 0

    def clear(self):
        self.n = 0
        self._oldest = None

    def find(self, key):
        """Index of `key`, or -1 - (insertion point)."""
        mv = self.mv
        r = self.r
        lo = 0
        hi = self.n
        while lo < hi:
            mid = (lo + hi) >> 1
            o = mid * r
            k = bytes(mv[o:o + KEY])
            if k < key:
                lo = mid + 1
            elif k > key:
                hi = mid
            else:
                return mid
        return -1 - lo

    def get(self, key):
        i = self.find(key)
        if i < 0:
            return None
        return struct.unpack_from(self.fmt, self.buf, i * self.r + KEY)

    def put(self, key, val, cutoff=0):
        """Insert or replace. A new key in a full table first makes room (see make_room, with
        `cutoff`). Returns (entries dropped, of which still needed)."""
        i = self.find(key)
        dropped = NOTHING_DROPPED
        if i < 0:
            if self.n >= self.cap:
                dropped = self.make_room(cutoff)
                i = self.find(key)
            i = -1 - i
            r = self.r
            o = i * r
            if i < self.n:
                self.mv[o + r:(self.n + 1) * r] = self.mv[o:self.n * r]
            self.mv[o:o + KEY] = key
            self.n += 1
        struct.pack_into(self.fmt, self.buf, i * self.r + KEY, *val)
        if self._oldest is not None:
            self._note(key, i)
        return dropped

    def put_raw(self, key, val_bytes, cutoff=0):
        """Insert or replace from the packed value bytes (journal replay)."""
        return self.put(key, struct.unpack(self.fmt, val_bytes), cutoff)

    def value_bytes(self, key):
        i = self.find(key)
        o = i * self.r + KEY
        return bytes(self.mv[o:o + self.vlen])

    def make_room(self, cutoff):
        """Drop every entry whose `until` is below `cutoff` (no longer needed); if there is none,
        drop the one entry used least recently (oldest `last`; ties: lowest key). Returns
        (entries dropped, of which still needed). Depends only on the table's contents and
        `cutoff`, so replaying the same puts rebuilds the same table."""
        oldest = self._oldest
        if oldest is None or cutoff > self._min_until:
            return self._scan(cutoff)
        key = oldest.pop(0)[1]
        if not oldest:
            self._oldest = None
        i = self.find(key)
        if i < 0:  # (the records were written around put: learn them again)
            self._oldest = None
            return self._scan(cutoff)
        self._remove(i)
        return (1, 1)

    def _scan(self, cutoff):
        # One pass: compact out the expired entries, and note the survivors' least `until`
        # and the ORDER least recently used of them, as (last, index): indices are in key order.
        buf = self.buf
        mv = self.mv
        r = self.r
        n = self.n
        lo = self.last_off
        lu = self._lu
        same = lu == "<I"
        unpack = struct.unpack_from
        min_until = None
        oldest = []
        kth = None                     # the greatest `last` in `oldest` once it is full
        w = 0
        for i in range(n):
            o = i * r
            v = unpack(lu, buf, o + lo)
            last = v[0]
            until = last if same else v[1]
            if until < cutoff:
                continue
            if w != i:
                mv[w * r:(w + 1) * r] = mv[o:o + r]
            if min_until is None or until < min_until:
                min_until = until
            if kth is None or last < kth:
                j = len(oldest)
                while j and oldest[j - 1][0] > last:
                    j -= 1
                oldest.insert(j, (last, w))
                if len(oldest) > ORDER:
                    oldest.pop()
                if len(oldest) == ORDER:
                    kth = oldest[-1][0]
            w += 1
        self.n = w
        self._min_until = min_until if min_until is not None else 0
        pairs = [(x[0], bytes(mv[x[1] * r:x[1] * r + KEY])) for x in oldest]
        if w < n:
            self._oldest = pairs or None
            return (n - w, 0)
        self._remove(oldest[0][1])
        self._oldest = pairs[1:] or None
        return (1, 1)

    def _note(self, key, i):
        # Entry i (key) was written: keep `_oldest` and `_min_until` true.
        v = struct.unpack_from(self._lu, self.buf, i * self.r + self.last_off)
        last = v[0]
        until = v[-1]
        if until < self._min_until:
            self._min_until = until
        oldest = self._oldest
        for j in range(len(oldest)):
            if oldest[j][1] == key:
                oldest.pop(j)
                break
        pair = (last, key)
        if oldest and pair < oldest[-1]:
            j = len(oldest) - 1
            while j and pair < oldest[j - 1]:
                j -= 1
            oldest.insert(j, pair)
            if len(oldest) > ORDER:
                oldest.pop()
        elif not oldest:
            self._oldest = None

    def _remove(self, i):
        r = self.r
        n = self.n
        self.mv[i * r:(n - 1) * r] = self.mv[(i + 1) * r:n * r]
        self.n = n - 1

    def prune(self, keep_value):
        """Drop entries whose value tuple fails `keep_value`; returns how many."""
        n = self.n
        fmt = self.fmt
        buf = self.buf
        r = self.r
        self._compact(lambda i: keep_value(struct.unpack_from(fmt, buf, i * r + KEY)))
        self._oldest = None
        return n - self.n

    def _compact(self, keep):
        r = self.r
        mv = self.mv
        w = 0
        for i in range(self.n):
            if keep(i):
                if w != i:
                    mv[w * r:(w + 1) * r] = mv[i * r:(i + 1) * r]
                w += 1
        self.n = w
