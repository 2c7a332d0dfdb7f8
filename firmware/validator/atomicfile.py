# Small files replaced atomically: write a temporary file, flush, then rename over the old one.
# On littlefs a rename is atomic, so after a power cut the file is either the old or the new one.
# Also the small file helpers around them (read, remove, exists, a streamed SHA-256).
import hashlib
import os

from validator import iobuf, watchdog


def write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
    os.rename(tmp, path)


def read(path, default=None):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return default


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def sha256(path):
    """SHA-256 of a file, read a piece at a time through the reader's I/O buffer (a pushed file
    can be far larger than the heap; validator/iobuf.py). OSError if it cannot be read."""
    h = hashlib.sha256()
    buf = iobuf.get()
    mv = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
            watchdog.kick()
    return h.digest()
