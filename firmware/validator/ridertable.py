# Fixed-width records sorted by key in one preallocated bytearray: the RAM tables of
# validator.riderstate. No per-entry Python objects, so the heap cost is fixed by the capacity;
# lookups are a binary search on the key bytes.
import struct

KEY = 8                        # key bytes of every record


class Table:
    """Fixed-width records (key + struct value) sorted by key in one bytearray."""

    def __init__(self, fmt, cap, last_off):
        self.fmt = fmt
        self.vlen = struct.calcsize(fmt)
        self.r = KEY + self.vlen
        self.cap = cap
        self.buf = bytearray(self.r * cap)
        self.mv = memoryview(self.buf)
        self.n = 0
        self.last_off = KEY + last_off

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

    def put(self, key, val):
        """Insert or replace; returns how many entries were evicted to make room."""
        i = self.find(key)
        evicted = 0
        if i < 0:
            if self.n >= self.cap:
                evicted = self.evict()
                i = self.find(key)
            i = -1 - i
            r = self.r
            o = i * r
            if i < self.n:
                self.mv[o + r:(self.n + 1) * r] = self.mv[o:self.n * r]
            self.mv[o:o + KEY] = key
            self.n += 1
        struct.pack_into(self.fmt, self.buf, i * self.r + KEY, *val)
        return evicted

    def put_raw(self, key, val_bytes):
        """Insert or replace from the packed value bytes (journal replay)."""
        return self.put(key, struct.unpack(self.fmt, val_bytes))

    def value_bytes(self, key):
        i = self.find(key)
        o = i * self.r + KEY
        return bytes(self.mv[o:o + self.vlen])

    def _last(self, i):
        return struct.unpack_from("<I", self.buf, i * self.r + self.last_off)[0]

    def evict(self):
        """Drop the quarter of the entries with the oldest last-accepted time (ties: lowest key
        first). Deterministic: depends only on the table's contents."""
        n = self.n
        count = max(1, n // 4)
        lasts = sorted([self._last(i) for i in range(n)])
        cut = lasts[count - 1]
        ties = count - sum(1 for x in lasts[:count] if x < cut)
        lasts = None

        def keep(i):
            nonlocal ties
            t = self._last(i)
            if t < cut:
                return False
            if t == cut and ties > 0:
                ties -= 1
                return False
            return True

        self._compact(keep)
        return n - self.n

    def prune(self, keep_value):
        """Drop entries whose value tuple fails `keep_value`; returns how many."""
        n = self.n
        fmt = self.fmt
        buf = self.buf
        r = self.r
        self._compact(lambda i: keep_value(struct.unpack_from(fmt, buf, i * r + KEY)))
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
