"""`fare flash`: write a MicroPython firmware image to an ESP32 board with esptool, with the
reader's flash layout.

The image is the user's download from micropython.org (docs/boards.md names the build). It is a
flash dump from the bootloader on: bootloader, partition table at 0x8000, application. The
reader needs one partition more than the stock table has: `triplog`, the raw flash region of
the trip log (docs/triplog.md). It is carved from the end of the `vfs` partition (the littlefs
volume) in a copy of the image, so bootloader, application and the other partitions stay as the
release built them, whatever its version. Re-flashing the same release keeps the layout, so the
file system (identity, deny list) and the trip log survive it; the first flash of a board
(layout changes) needs --erase.

Partition table format (ESP-IDF): 32-byte entries `AA 50 | type | subtype | offset u32 |
size u32 | label[16] | flags u32`, then `EB EB` + 14 x FF + MD5 of the entries, padding FF,
at most 0xC00 bytes.
"""
import hashlib
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

TABLE_ADDR = 0x8000
TABLE_SIZE = 0xC00
ENTRY = struct.Struct("<2sBBII16sI")
MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb"
TYPE_APP = 0x00
TYPE_DATA = 0x01
SUBTYPE_UNDEFINED = 0x06  # a data partition the application reads and writes itself
LOG_LABEL = "triplog"
MIN_VFS = 0x80000  # keep at least 512 KiB of file system (code, deny list, state)

IMAGE_MAGIC = 0xE9
CHIP_IDS = {"esp32": 0x0000, "esp32s2": 0x0002, "esp32c3": 0x0005, "esp32s3": 0x0009,
            "esp32c2": 0x000C, "esp32c6": 0x000D, "esp32h2": 0x0010}


class FlashError(Exception):
    pass


@dataclass
class Partition:
    label: str
    type: int
    subtype: int
    offset: int
    size: int
    flags: int = 0

    def pack(self):
        return ENTRY.pack(MAGIC, self.type, self.subtype, self.offset, self.size,
                          self.label.encode().ljust(16, b"\0"), self.flags)


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
                raise FlashError("partition table MD5 does not match its entries")
            break
        else:
            break
    if not out:
        raise FlashError("no partition table")
    return out


def build_table(parts):
    body = b"".join(p.pack() for p in parts)
    body += MD5_MAGIC + b"\xff" * 14 + hashlib.md5(body).digest()
    if len(body) > TABLE_SIZE:
        raise FlashError("too many partitions")
    return body + b"\xff" * (TABLE_SIZE - len(body))


def with_log_partition(parts, log_size):
    """The table with a `triplog` data partition of `log_size` bytes taken from the end of
    `vfs`. A table that already has one is returned unchanged."""
    if any(p.label == LOG_LABEL for p in parts):
        return list(parts)
    if log_size <= 0 or log_size % 0x1000:
        raise FlashError("the trip log size must be a positive multiple of 4 KiB")
    vfs = [p for p in parts if p.label == "vfs" and p.type == TYPE_DATA]
    if not vfs:
        raise FlashError("the image's partition table has no 'vfs' partition")
    vfs = vfs[0]
    if vfs.size - log_size < MIN_VFS:
        raise FlashError("a %d KiB trip log leaves less than %d KiB of file system (vfs is %d KiB)"
                         % (log_size // 1024, MIN_VFS // 1024, vfs.size // 1024))
    out = []
    for p in parts:
        if p is vfs:
            out.append(Partition(p.label, p.type, p.subtype, p.offset, p.size - log_size,
                                 p.flags))
            out.append(Partition(LOG_LABEL, TYPE_DATA, SUBTYPE_UNDEFINED,
                                 p.offset + p.size - log_size, log_size))
        else:
            out.append(p)
    return out


def check_image(data, chip, flash_offset):
    """Refuse what is not a full MicroPython image for this chip. Returns the partitions."""
    if len(data) < TABLE_ADDR - flash_offset + TABLE_SIZE:
        raise FlashError("image too small for a firmware with a partition table (%d bytes): use "
                         "the .bin from micropython.org, not an app-only image" % len(data))
    if data[0] != IMAGE_MAGIC:
        raise FlashError("not an ESP firmware image (first byte 0x%02x, expected 0xe9)" % data[0])
    chip_id = struct.unpack_from("<H", data, 12)[0]
    want = CHIP_IDS[chip]
    if chip_id != want:
        names = {v: k for k, v in CHIP_IDS.items()}
        raise FlashError("this image is for %s, the board is %s: download the board's image "
                         "(docs/boards.md)" % (names.get(chip_id, "chip 0x%04x" % chip_id), chip))
    return parse_table(data[TABLE_ADDR - flash_offset:TABLE_ADDR - flash_offset + TABLE_SIZE])


def prepare_image(src, dst, chip, flash_offset, log_size):
    """Copy the image to `dst` with the reader's partition table. Returns the partitions."""
    data = bytearray(Path(src).read_bytes())
    parts = with_log_partition(check_image(data, chip, flash_offset), log_size)
    at = TABLE_ADDR - flash_offset
    data[at:at + TABLE_SIZE] = build_table(parts)
    Path(dst).write_bytes(bytes(data))
    return parts


def esptool_args(chip, port, image, flash_offset, baud=460800, erase=False):
    """The esptool command line (run with this Python, so the pinned esptool is used)."""
    args = [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "--baud", str(baud),
            "write-flash"]
    if erase:
        args.append("--erase-all")
    args += ["0x%x" % flash_offset, str(image)]
    return args


def describe(parts):
    rows = []
    for p in parts:
        kind = {TYPE_APP: "app", TYPE_DATA: "data"}.get(p.type, "0x%02x" % p.type)
        rows.append("  %-10s %-4s 0x%02x  0x%06x  %5d KiB" % (p.label, kind, p.subtype, p.offset,
                                                            p.size // 1024))
    return "\n".join(rows)
