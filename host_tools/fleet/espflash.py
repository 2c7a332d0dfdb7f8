"""`fare flash`: write a MicroPython firmware image to an ESP32 board with esptool, with the
reader's flash layout.

The image is the user's download from micropython.org or a frozen build (docs/boards.md names
both). It is a flash dump from the bootloader on: bootloader, partition table at 0x8000,
application at 0x10000. The reader's layout is the board's partitions.csv
(host_tools/fleet/partitions.py): the system partitions and the app where MicroPython puts
them, then the file system (`vfs`) and the trip log's raw region (`triplog`, docs/triplog.md).
`fare flash` writes that table into a copy of the image; bootloader and application stay as the
release built them. A stock v1.29 image's own table has no `vfs` at all (the firmware makes one
from the free flash at boot) and a frozen build of the board definition already has the
reader's table: both end up with the same layout. Re-flashing keeps the layout, so the file
system (identity, deny list) and the trip log survive it; the first flash of a board (layout
changes) needs --erase.
"""
import struct
import sys

from host_tools.fleet.partitions import (  # noqa: F401  (the table format, for callers)
    SUBTYPE_UNDEFINED, TABLE_ADDR, TABLE_SIZE, TYPE_APP, TYPE_DATA, Partition, TableError,
    build_table, describe, parse_table)

LOG_LABEL = "triplog"
FS_LABELS = ("vfs", "ffat")   # the file system: the reader's layout places it itself
MIN_VFS = 0x80000  # keep at least 512 KiB of file system (data, deny list, state)

IMAGE_MAGIC = 0xE9
CHIP_IDS = {"esp32": 0x0000, "esp32s2": 0x0002, "esp32c3": 0x0005, "esp32s3": 0x0009,
            "esp32c2": 0x000C, "esp32c6": 0x000D, "esp32h2": 0x0010}


class FlashError(TableError):
    pass


def with_log_size(layout, log_size):
    """The layout with a `triplog` of `log_size` bytes: the boundary between `vfs` and the log
    right after it moves; the log still ends where it did."""
    if log_size <= 0 or log_size % 0x1000:
        raise FlashError("the trip log size must be a positive multiple of 4 KiB")
    by = {p.label: p for p in layout}
    vfs, log = by.get("vfs"), by.get(LOG_LABEL)
    if vfs is None or log is None or vfs.end != log.offset:
        raise FlashError("the layout has no 'vfs' partition followed by '%s'" % LOG_LABEL)
    new_vfs = vfs.size + log.size - log_size
    if new_vfs < MIN_VFS:
        raise FlashError("a %d KiB trip log leaves less than %d KiB of file system (%d KiB)"
                         % (log_size // 1024, MIN_VFS // 1024, max(0, new_vfs) // 1024))
    out = []
    for p in layout:
        if p is vfs:
            p = Partition(p.label, p.type, p.subtype, p.offset, new_vfs, p.flags)
        elif p is log:
            p = Partition(p.label, p.type, p.subtype, log.end - log_size, log_size, p.flags)
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


def check_fits(image_parts, layout, app_bytes):
    """Refuse an image the layout cannot carry: its application must sit at the layout's app
    offset and fit the layout's app partition, and each of its other partitions (but the file
    system and the trip log, which the layout places) must be in the layout at the same place."""
    apps = [p for p in layout if p.type == TYPE_APP]
    ours = {p.label: p for p in layout}
    for p in image_parts:
        if p.label in FS_LABELS or p.label == LOG_LABEL:
            continue
        q = ours.get(p.label)
        if q is None or (q.type, q.subtype, q.offset) != (p.type, p.subtype, p.offset):
            raise FlashError("the image's partition %r (0x%x, %d KiB) is not in the reader's "
                             "layout: use the board's plain image (not OTA or ROMFS)"
                             % (p.label, p.offset, p.size // 1024))
        if p.type != TYPE_APP and p.size > q.size:
            raise FlashError("the image's partition %r (%d KiB) is larger than the reader's "
                             "(%d KiB)" % (p.label, p.size // 1024, q.size // 1024))
    if app_bytes > apps[0].size:
        raise FlashError("the image's application (%d KiB) does not fit the reader's app "
                         "partition (%d KiB)" % (app_bytes // 1024, apps[0].size // 1024))


def prepare_image(src, dst, chip, flash_offset, layout):
    """Copy the image `src` to `dst` with the table of `layout` (the board's partitions, from
    targets.Target.layout(), maybe with_log_size()). Returns the layout."""
    with open(src, "rb") as f:
        data = bytearray(f.read())
    apps = [p for p in layout if p.type == TYPE_APP]
    if not apps:
        raise FlashError("the reader's layout has no app partition")
    image_parts = check_image(data, chip, flash_offset)
    app_bytes = len(data) - (apps[0].offset - flash_offset)
    if app_bytes <= 0:
        raise FlashError("the image ends before its application (0x%x): use the full .bin"
                         % apps[0].offset)
    check_fits(image_parts, layout, app_bytes)
    at = TABLE_ADDR - flash_offset
    data[at:at + TABLE_SIZE] = build_table(layout)
    with open(dst, "wb") as f:
        f.write(bytes(data))
    return list(layout)


def esptool_args(chip, port, image, flash_offset, baud=460800, erase=False):
    """The esptool command line (run with this Python, so the pinned esptool is used)."""
    args = [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "--baud", str(baud),
            "write-flash"]
    if erase:
        args.append("--erase-all")
    args += ["0x%x" % flash_offset, str(image)]
    return args
