"""`fare flash` without a board: the image checks, the reader's partition layout written into the
image, the esptool command line, and the errors a technician sees for a missing port or image.
(esptool itself cannot reach a chip here; that it runs is checked with `esptool version`.)"""
import hashlib
import struct
import subprocess
import sys

import pytest

from host_tools import cli
from mpharness import ROOT
from host_tools.fleet import espflash, partitions, targets
from host_tools.fleet.espflash import Partition, FlashError, TableError

# MicroPython v1.29's ESP32_GENERIC / ESP32_GENERIC_S3 table (ports/esp32/partitions-4MiBplus.csv):
# no file system partition, the firmware makes `vfs` from the free flash at boot
STOCK = [
    Partition("nvs", 1, 0x02, 0x9000, 0x6000),
    Partition("phy_init", 1, 0x01, 0xF000, 0x1000),
    Partition("factory", 0, 0x00, 0x10000, 0x1F0000),
]
# releases before v1.26 (ports/esp32/partitions-4MiB.csv): a 2 MiB `vfs` after the app
STOCK_OLD = STOCK + [Partition("vfs", 1, 0x81, 0x200000, 0x200000)]
# the OTA variant (partitions-4MiB-ota.csv) and a ROMFS table: layouts the reader's is not
OTA = [
    Partition("nvs", 1, 0x02, 0x9000, 0x4000),
    Partition("otadata", 1, 0x00, 0xD000, 0x2000),
    Partition("phy_init", 1, 0x01, 0xF000, 0x1000),
    Partition("ota_0", 0, 0x10, 0x10000, 0x180000),
    Partition("ota_1", 0, 0x11, 0x190000, 0x180000),
]
ROMFS = STOCK[:2] + [Partition("factory", 0, 0x00, 0x10000, 0x1D0000),
                     Partition("romfs", 1, 0x8F, 0x1E0000, 0x20000)]


def fake_image(chip="esp32", offset=0x1000, parts=STOCK, app=b"APP" * 1000):
    """A flash dump shaped like MicroPython's firmware .bin: bootloader header (magic, chip id
    in the extended header), partition table at 0x8000, application at 0x10000."""
    size = 0x10000 - offset + len(app)
    img = bytearray(b"\xff" * size)
    img[0] = 0xE9
    img[1] = 3
    struct.pack_into("<H", img, 12, espflash.CHIP_IDS[chip])
    img[16:64] = bytes(range(48))  # some bootloader bytes
    t = 0x8000 - offset
    img[t:t + espflash.TABLE_SIZE] = espflash.build_table(parts)
    img[0x10000 - offset:] = app
    return bytes(img)


def test_table_round_trip_and_md5():
    blob = espflash.build_table(STOCK_OLD)
    assert len(blob) == 0xC00
    assert espflash.parse_table(blob) == STOCK_OLD
    # entry layout: AA 50, type, subtype, offset, size, label
    assert blob[:4] == b"\xaa\x50\x01\x02" and blob[4:8] == struct.pack("<I", 0x9000)
    md5_at = 32 * len(STOCK_OLD)
    assert blob[md5_at:md5_at + 2] == b"\xeb\xeb"
    assert blob[md5_at + 16:md5_at + 32] == hashlib.md5(blob[:md5_at]).digest()
    bad = bytearray(blob)
    bad[8] ^= 1  # a size bit
    with pytest.raises(TableError, match="MD5"):
        espflash.parse_table(bytes(bad))
    with pytest.raises(TableError, match="no partition table"):
        espflash.parse_table(b"\xff" * 0xC00)


def test_log_size_moves_the_boundary_between_vfs_and_the_log():
    layout = targets.get("esp32_devkitc").layout()
    assert [(p.label, p.offset, p.size) for p in layout[3:]] == [
        ("vfs", 0x200000, 0x180000), ("triplog", 0x380000, 0x80000)]
    parts = espflash.with_log_size(layout, 0x40000)
    assert parts[:3] == layout[:3]  # bootloader-facing layout and the app untouched
    vfs, log = parts[3], parts[4]
    assert (vfs.offset, vfs.size) == (0x200000, 0x1C0000)
    assert (log.label, log.type, log.subtype) == ("triplog", 1, espflash.SUBTYPE_UNDEFINED)
    assert (log.offset, log.size) == (0x3C0000, 0x40000)
    assert log.offset + log.size == 0x400000  # still the end of the 4 MiB flash
    assert espflash.with_log_size(layout, 0x80000) == layout
    with pytest.raises(FlashError, match="less than 512 KiB"):
        espflash.with_log_size(layout, 0x1C0000)
    with pytest.raises(FlashError, match="multiple of 4 KiB"):
        espflash.with_log_size(layout, 1000)
    with pytest.raises(FlashError, match="no 'vfs'"):
        espflash.with_log_size(STOCK, 0x80000)


@pytest.mark.parametrize("table", [STOCK, STOCK_OLD, "layout"], ids=["v1.29", "old", "frozen"])
@pytest.mark.parametrize("board", ["esp32_devkitc", "esp32_s3"])
def test_prepare_image_writes_the_boards_partition_csv(tmp_path, board, table):
    # a stock image of any release, or a frozen build that has the layout already: the same
    # table (the board's partitions.csv), and nothing else of the image changed
    t = targets.get(board)
    layout = partitions.read_csv(t.partitions_csv)
    src = tmp_path / "fw.bin"
    src.write_bytes(fake_image(t.chip, t.flash_offset, layout if table == "layout" else table))
    dst = tmp_path / "out.bin"
    parts = espflash.prepare_image(src, dst, t.chip, t.flash_offset, t.layout())
    a, b = src.read_bytes(), dst.read_bytes()
    at = 0x8000 - t.flash_offset
    assert len(a) == len(b)
    assert a[:at] == b[:at] and a[at + 0xC00:] == b[at + 0xC00:]
    assert espflash.parse_table(b[at:at + 0xC00]) == parts == layout
    assert [p.label for p in parts] == ["nvs", "phy_init", "factory", "vfs", "triplog"]
    assert parts[-1].size == t.log_size and parts[-1].end == t.flash_size
    if table == "layout":
        assert a == b


def test_images_the_layout_cannot_carry_are_refused(tmp_path):
    t = targets.get("esp32_devkitc")
    cases = [(OTA, b"APP", "'otadata'.*not in the reader's layout"),
             (ROMFS, b"APP", "'romfs'.*not in the reader's layout"),
             (STOCK, b"A" * (0x1F0000 + 1), r"application \(1984 KiB\) does not fit")]
    for parts, app, why in cases:
        src = tmp_path / "fw.bin"
        src.write_bytes(fake_image(parts=parts, app=app))
        with pytest.raises(FlashError, match=why):
            espflash.prepare_image(src, tmp_path / "out.bin", t.chip, t.flash_offset, t.layout())
    src.write_bytes(fake_image(app=b"A" * 0x1F0000))          # exactly full: fits
    espflash.prepare_image(src, tmp_path / "out.bin", t.chip, t.flash_offset, t.layout())
    src.write_bytes(fake_image()[:0x10000 - 0x1000])           # bootloader and table only
    with pytest.raises(FlashError, match="ends before its application"):
        espflash.prepare_image(src, tmp_path / "out.bin", t.chip, t.flash_offset, t.layout())


def test_image_checks_refuse_the_wrong_file(tmp_path):
    with pytest.raises(FlashError, match="for esp32s3, the board is esp32"):
        espflash.check_image(fake_image("esp32s3", 0x1000), "esp32", 0x1000)
    bad = bytearray(fake_image())
    bad[0] = 0x7F
    with pytest.raises(FlashError, match="not an ESP firmware image"):
        espflash.check_image(bytes(bad), "esp32", 0x1000)
    with pytest.raises(FlashError, match="app-only"):
        espflash.check_image(b"\xe9" + bytes(100), "esp32", 0x1000)
    # an image built for offset 0 (S3) read as an ESP32 image: no table where expected
    with pytest.raises(TableError, match="no partition table"):
        espflash.check_image(fake_image("esp32", 0x0), "esp32", 0x1000)


def test_esptool_command_line():
    args = espflash.esptool_args("esp32", "/dev/ttyUSB0", "fw.bin", 0x1000)
    assert args == [sys.executable, "-m", "esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0",
                    "--baud", "460800", "write-flash", "0x1000", "fw.bin"]
    args = espflash.esptool_args("esp32s3", "/dev/ttyACM0", "s3.bin", 0x0, baud=921600,
                                 erase=True)
    assert args[3:] == ["--chip", "esp32s3", "--port", "/dev/ttyACM0", "--baud", "921600",
                        "write-flash", "--erase-all", "0x0", "s3.bin"]


def test_esptool_runs():
    out = subprocess.run([sys.executable, "-m", "esptool", "version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    import esptool
    assert esptool.__version__ in out.stdout


def test_flash_cli_errors_for_missing_image_and_port(tmp_path, capsys):
    assert cli.main(["flash", "--port", "/dev/ttyUSB0", "--board", "esp32_devkitc",
                     "--firmware", str(tmp_path / "nope.bin")]) == 1
    err = capsys.readouterr().err
    # the hint names the frozen build (a DevKitC cannot run the stock image with the reader)
    assert "nope.bin not found" in err and "frozen build" in err
    assert "ports/esp32/build-esp32_devkitc/firmware.bin" in err
    assert "micropython.org" not in err
    fw = tmp_path / "fw.bin"
    fw.write_bytes(fake_image())
    assert cli.main(["flash", "--port", str(tmp_path / "ttyNOPE"), "--board", "esp32_devkitc",
                     "--firmware", str(fw)]) == 1
    assert "serial port" in capsys.readouterr().err
    s3 = tmp_path / "s3.bin"
    s3.write_bytes(fake_image("esp32s3", 0))
    assert cli.main(["flash", "--port", "/dev/null", "--board", "esp32_devkitc",
                     "--firmware", str(s3)]) == 1
    assert "for esp32s3" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the unix port is not a flash target
        cli.main(["flash", "--port", "/dev/null", "--board", "unix_sim", "--firmware", str(fw)])


def test_flash_cli_dry_run_shows_layout_and_command(tmp_path, capsys):
    fw = tmp_path / "ESP32_GENERIC-v1.29.0.bin"
    fw.write_bytes(fake_image())
    assert cli.main(["flash", "--port", "/dev/ttyUSB0", "--board", "esp32_devkitc",
                     "--firmware", str(fw), "--erase", "--log-kib", "256", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "triplog" in out and "256 KiB" in out
    assert "vfs        data 0x81  0x200000   1792 KiB" in out
    assert "-m esptool --chip esp32 --port /dev/ttyUSB0 --baud 460800 write-flash --erase-all " \
           "0x1000" in out


def test_make_and_docs_agree_on_the_firmware_image_and_the_deploy_board():
    """One firmware path everywhere (the frozen build's, inside the MicroPython checkout), and
    `make deploy` never defaults to a board that only a frozen build fits."""
    import re
    import subprocess
    paths = set()
    for name in ("README.md", "docs/boards.md", "Makefile"):
        text = (ROOT / name).read_text()
        for m in re.finditer(r"(\S*)build-esp32_(devkitc|s3)/firmware\.bin", text):
            paths.add((name, m.group(1)))
    assert paths and all(prefix.endswith("ports/esp32/") for _, prefix in paths), paths
    assert {name for name, _ in paths} == {"README.md", "docs/boards.md", "Makefile"}
    proc = subprocess.run(["make", "-s", "-o", ".venv/.installed", "deploy", "PORT=/dev/ttyX"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "BOARD=esp32_devkitc FROZEN=1" in proc.stdout
    proc = subprocess.run(["make", "-s", "-o", ".venv/.installed", "flash"], cwd=ROOT,
                          capture_output=True, text=True)
    assert "ports/esp32/build-esp32_devkitc/firmware.bin" in proc.stdout
    assert "frozen build" in proc.stdout


def test_a_devkitc_takes_only_a_frozen_build(monkeypatch):
    from host_tools.fleet import deploy
    monkeypatch.setattr(deploy, "probe", lambda port, paths=(): {
        "platform": "esp32", "mpy_version": (6, 3), "arch": "xtensawin", "version": [1, 29, 0],
        "files": {}})
    monkeypatch.setattr(deploy, "check_device", lambda target, info: None)
    with pytest.raises(deploy.DeployError, match="takes only a frozen build"):
        deploy.deploy("/dev/null", "esp32_devkitc")
