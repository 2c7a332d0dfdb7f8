"""ESP-IDF partition tables, in the two forms the reader's flash layout takes: the CSV a board
definition carries (boards/<board>/partitions.csv, which ESP-IDF's build turns into the table
of a frozen build) and the binary table at 0x8000 of a firmware image (which `fare flash`
writes into a stock image). Both come from the one CSV, so they cannot drift apart.

CSV (ESP-IDF's format): `Name, Type, SubType, Offset, Size, Flags`, `#` comments; numbers in
hex or decimal with an optional K or M; type and subtype by name or number. The reader's files
give every offset (ESP-IDF can compute missing ones; this module refuses them, so that what the
tests check is what the build writes).

Binary: 32-byte entries `AA 50 | type | subtype | offset u32 | size u32 | label[16] |
flags u32`, then `EB EB` + 14 x FF + MD5 of the entries, padding FF, at most 0xC00 bytes.
"""
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

TABLE_ADDR = 0x8000
TABLE_SIZE = 0xC00
FIRST_OFFSET = TABLE_ADDR + 0x1000    # the table's flash sector ends here
APP_ALIGN = 0x10000                   # app partitions: 64 KiB (the MMU page)
DATA_ALIGN = 0x1000                   # data partitions: a 4 KiB flash sector
ENTRY = struct.Struct("<2sBBII16sI")
MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb"

TYPE_APP = 0x00
TYPE_DATA = 0x01
TYPES = {"app": TYPE_APP, "data": TYPE_DATA}
SUBTYPES = {
    TYPE_APP: dict({"factory": 0x00, "test": 0x20},
                   **{"ota_%d" % i: 0x10 + i for i in range(16)}),
    TYPE_DATA: {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04,
                "efuse": 0x05, "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81,
                "spiffs": 0x82, "littlefs": 0x83},
}
SUBTYPE_UNDEFINED = 0x06  # a data partition the application reads and writes itself
FLAGS = {"encrypted": 0x1, "readonly": 0x2}


class TableError(Exception):
    pass


@dataclass
class Partition:
    label: str
    type: int
    subtype: int
    offset: int
    size: int
    flags: int = 0

    @property
    def end(self):
        return self.offset + self.size

    def pack(self):
        return ENTRY.pack(MAGIC, self.type, self.subtype, self.offset, self.size,
                          self.label.encode().ljust(16, b"\0"), self.flags)


# --- binary ---

def parse_table(blob):
    """Partitions of a binary partition table; checks the MD5 entry when there is one."""
    out = []
    for i in range(0, min(len(blob), TABLE_SIZE) - ENTRY.size + 1, ENTRY.size):
        raw = blob[i:i + ENTRY.size]
        if raw[:2] == MAGIC:
            _, t, st, off, size, label, flags = ENTRY.unpack(raw)
            out.append(Partition(label.rstrip(b"\0").decode("ascii", "replace"), t, st, off,
                                 size, flags))
        elif raw[:2] == MD5_MAGIC:
            if raw[16:] != hashlib.md5(blob[:i]).digest():
                raise TableError("partition table MD5 does not match its entries")
            break
        else:
            break
    if not out:
        raise TableError("no partition table")
    return out


def build_table(parts):
    body = b"".join(p.pack() for p in parts)
    body += MD5_MAGIC + b"\xff" * 14 + hashlib.md5(body).digest()
    if len(body) > TABLE_SIZE:
        raise TableError("too many partitions")
    return body + b"\xff" * (TABLE_SIZE - len(body))


# --- CSV ---

def _number(text, what):
    t = text.strip()
    mult = 1
    if t[-1:] in ("K", "k"):
        t, mult = t[:-1], 1024
    elif t[-1:] in ("M", "m"):
        t, mult = t[:-1], 1024 * 1024
    try:
        return int(t, 0) * mult
    except ValueError:
        raise TableError("%s %r is not a number" % (what, text.strip())) from None


def _kind(text, names, what):
    t = text.strip()
    if t in names:
        return names[t]
    n = _number(t, what)
    if not 0 <= n <= 0xFE:
        raise TableError("%s %r out of range" % (what, t))
    return n


def parse_csv(text, name="partitions.csv"):
    """Partitions of an ESP-IDF partition CSV (every offset given). TableError names the line."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cells = [c.strip() for c in line.split(",")]
        cells += [""] * (6 - len(cells))
        if len(cells) > 6 or not all(cells[:5]):
            raise TableError("%s:%d: want Name, Type, SubType, Offset, Size[, Flags]"
                             % (name, lineno))
        label, ptype, subtype, offset, size, flags = cells
        try:
            if len(label.encode()) > 15:
                raise TableError("name %r longer than 15 bytes" % label)
            t = _kind(ptype, TYPES, "type")
            st = _kind(subtype, SUBTYPES.get(t, {}), "subtype")
            f = 0
            for word in flags.split(":") if flags else ():
                if word not in FLAGS:
                    raise TableError("unknown flag %r" % word)
                f |= FLAGS[word]
            out.append(Partition(label, t, st, _number(offset, "offset"), _number(size, "size"),
                                 f))
        except TableError as e:
            raise TableError("%s:%d: %s" % (name, lineno, e)) from None
    if not out:
        raise TableError("%s: no partitions" % name)
    return out


def read_csv(path):
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise TableError("%s: %s" % (path, e.strerror or e)) from None
    return parse_csv(text, str(path))


def problems(parts, flash_size):
    """What ESP-IDF's build (gen_esp32part.py) or the boot would refuse in this table: names
    unique, no overlap, alignment (64 KiB for apps, 4 KiB for data), nothing before 0x9000 or
    past the end of the flash, at least one app. An empty list when the table is good."""
    out = []
    labels = [p.label for p in parts]
    for label in sorted({x for x in labels if labels.count(x) > 1}):
        out.append("partition name %r used twice" % label)
    if not any(p.type == TYPE_APP for p in parts):
        out.append("no app partition")
    for p in parts:
        align = APP_ALIGN if p.type == TYPE_APP else DATA_ALIGN
        if p.offset % align or p.size % DATA_ALIGN:
            out.append("%s: offset 0x%x or size 0x%x not aligned to 0x%x"
                       % (p.label, p.offset, p.size, align))
        if p.size <= 0:
            out.append("%s: empty" % p.label)
        if p.offset < FIRST_OFFSET:
            out.append("%s at 0x%x: before 0x%x (the partition table's sector)"
                       % (p.label, p.offset, FIRST_OFFSET))
        if p.end > flash_size:
            out.append("%s ends at 0x%x, past the %d KiB flash"
                       % (p.label, p.end, flash_size // 1024))
    ordered = sorted(parts, key=lambda p: p.offset)
    for a, b in zip(ordered, ordered[1:]):
        if b.offset < a.end:
            out.append("%s (0x%x-0x%x) overlaps %s (0x%x-0x%x)"
                       % (a.label, a.offset, a.end, b.label, b.offset, b.end))
    return out


def describe(parts):
    rows = []
    for p in parts:
        kind = {TYPE_APP: "app", TYPE_DATA: "data"}.get(p.type, "0x%02x" % p.type)
        rows.append("  %-10s %-4s 0x%02x  0x%06x  %5d KiB" % (p.label, kind, p.subtype, p.offset,
                                                            p.size // 1024))
    return "\n".join(rows)
