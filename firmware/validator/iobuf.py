# The reader's one I/O buffer (1 KiB), made at boot and lent to whatever reads, hashes or copies a
# file a piece at a time: the sync server hashing a staged upload, signature checks, the deny
# list's checks, copies and merges, table digests, a configuration's decoding window. One user at
# a time: the reader does these one after the other, never one inside another (a tap does not run
# while an install does), and each is done with the buffer before the next takes it. After boot,
# none of them allocates a block of its own (docs/performance.md, "Heap").
try:
    from micropython import const
except ImportError:  # CPython: the pure-logic tests and host tools
    def const(x):
        return x

SIZE = const(1024)
_buf = None


def get():
    """The buffer (made on first use: the reader asks at boot, among its largest blocks)."""
    global _buf
    if _buf is None:
        _buf = bytearray(SIZE)
    return _buf
