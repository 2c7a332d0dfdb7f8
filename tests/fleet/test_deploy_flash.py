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
from host_tools.fleet import espflash, targets
from host_tools.fleet.espflash import Partition, FlashError

# The stock 4 MiB layout of MicroPython's ESP32_GENERIC (ports/esp32/partitions-4MiB.csv)
STOCK_4M = [
    Partition("nvs", 1, 0x02, 0x9000, 0x6000),
    Partition("phy_init", 1, 0x01, 0xF000, 0x1000),
    Partition("factory", 0, 0x00, 0x10000, 0x1D0000),
    Partition("romfs", 1, 0x8F, 0x1E0000, 0x20000),
    Partition("vfs", 1, 0x81, 0x200000, 0x200000),
]


def fake_image(chip="esp32", offset=0x1000, parts=STOCK_4M, app=b"APP" * 1000):
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
    blob = espflash.build_table(STOCK_4M)
    assert len(blob) == 0xC00
    assert espflash.parse_table(blob) == STOCK_4M
    # entry layout: AA 50, type, subtype, offset, size, label
    assert blob[:4] == b"\xaa\x50\x01\x02" and blob[4:8] == struct.pack("<I", 0x9000)
    md5_at = 32 * len(STOCK_4M)
    assert blob[md5_at:md5_at + 2] == b"\xeb\xeb"
    assert blob[md5_at + 16:md5_at + 32] == hashlib.md5(blob[:md5_at]).digest()
    bad = bytearray(blob)
    bad[8] ^= 1  # a size bit
    with pytest.raises(FlashError, match="MD5"):
        espflash.parse_table(bytes(bad))
    with pytest.raises(FlashError, match="no partition table"):
        espflash.parse_table(b"\xff" * 0xC00)


def test_log_partition_is_carved_from_the_end_of_vfs():
    parts = espflash.with_log_partition(STOCK_4M, 0x80000)
    assert parts[:4] == STOCK_4M[:4]  # bootloader-facing layout and the app untouched
    vfs, log = parts[4], parts[5]
    assert (vfs.offset, vfs.size) == (0x200000, 0x180000)
    assert (log.label, log.type, log.subtype) == ("triplog", 1, espflash.SUBTYPE_UNDEFINED)
    assert (log.offset, log.size) == (0x380000, 0x80000)
    assert log.offset + log.size == 0x400000  # the end of the 4 MiB flash, as vfs was
    assert espflash.with_log_partition(parts, 0x80000) == parts  # already there: unchanged
    with pytest.raises(FlashError, match="less than 512 KiB"):
        espflash.with_log_partition(STOCK_4M, 0x1C0000)
    with pytest.raises(FlashError, match="multiple of 4 KiB"):
        espflash.with_log_partition(STOCK_4M, 1000)
    with pytest.raises(FlashError, match="no 'vfs'"):
        espflash.with_log_partition(STOCK_4M[:4], 0x80000)


@pytest.mark.parametrize("board", ["esp32_devkitc", "esp32_s3"])
def test_prepare_image_changes_only_the_partition_table(tmp_path, board):
    t = targets.get(board)
    src = tmp_path / "fw.bin"
    src.write_bytes(fake_image(t.chip, t.flash_offset))
    dst = tmp_path / "out.bin"
    parts = espflash.prepare_image(src, dst, t.chip, t.flash_offset, t.log_size)
    a, b = src.read_bytes(), dst.read_bytes()
    at = 0x8000 - t.flash_offset
    assert len(a) == len(b)
    assert a[:at] == b[:at] and a[at + 0xC00:] == b[at + 0xC00:]
    assert espflash.parse_table(b[at:at + 0xC00]) == parts
    assert [p.label for p in parts] == ["nvs", "phy_init", "factory", "romfs", "vfs", "triplog"]
    assert parts[-1].size == t.log_size


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
    with pytest.raises(FlashError, match="no partition table"):
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
    assert "ports/esp32/build-ESP32_GENERIC/firmware.bin" in err
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
        for m in re.finditer(r"(\S*)build-ESP32_GENERIC(_S3)?/firmware\.bin", text):
            paths.add((name, m.group(1)))
    assert paths and all(prefix.endswith("ports/esp32/") for _, prefix in paths), paths
    assert {name for name, _ in paths} == {"README.md", "docs/boards.md", "Makefile"}
    proc = subprocess.run(["make", "-s", "-o", ".venv/.installed", "deploy", "PORT=/dev/ttyX"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "BOARD=esp32_devkitc FROZEN=1" in proc.stdout
    proc = subprocess.run(["make", "-s", "-o", ".venv/.installed", "flash"], cwd=ROOT,
                          capture_output=True, text=True)
    assert "ports/esp32/build-ESP32_GENERIC/firmware.bin" in proc.stdout
    assert "frozen build" in proc.stdout


def test_a_devkitc_takes_only_a_frozen_build(monkeypatch):
    from host_tools.fleet import deploy
    monkeypatch.setattr(deploy, "probe", lambda port, paths=(): {
        "platform": "esp32", "mpy_version": (6, 3), "arch": "xtensawin", "version": [1, 29, 0],
        "files": {}})
    monkeypatch.setattr(deploy, "check_device", lambda target, info: None)
    with pytest.raises(deploy.DeployError, match="takes only a frozen build"):
        deploy.deploy("/dev/null", "esp32_devkitc")
