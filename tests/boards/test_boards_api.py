"""The ESP32 boards and the firmware use only what MicroPython's esp32 port provides (as listed by
the micropython-esp32-stubs package), the firmware only modules both ports have, every board has
the same shape, and each manifest.py names what the board's code imports."""
import ast
import functools
from pathlib import Path

import pytest

from boards_apicheck import Esp32Api, check_source
from mpharness import ROOT

from host_tools.fleet import mpmanifest

ESP32_BOARDS = ("esp32_devkitc", "esp32_s3")
FIRMWARE = sorted((ROOT / "firmware").rglob("*.py"))


@pytest.fixture(scope="module")
def api():
    return Esp32Api()


def board_sources(board):
    """The board's own code (not its manifest) and the shared ESP32 layer."""
    files = sorted((ROOT / "boards" / board).glob("*.py")) + \
        sorted((ROOT / "boards" / "common").glob("*.py"))
    return [p for p in files if not p.name.endswith("manifest.py")]


@functools.lru_cache(maxsize=None)
def manifest(board):
    return mpmanifest.read(ROOT / "boards" / board / "manifest.py")


def own_modules(board):
    return {m.split(".")[0] for m in manifest(board).modules()}


def rel(p):
    return str(Path(p).relative_to(ROOT))


@pytest.mark.parametrize("board", ESP32_BOARDS)
def test_esp32_board_code_uses_only_the_esp32_port(api, board):
    problems = []
    for path in board_sources(board):
        problems += check_source(api, path.read_text(), rel(path), own_modules(board),
                                 required=manifest(board).requires)
    assert problems == []


@pytest.mark.parametrize("path", FIRMWARE, ids=[rel(p) for p in FIRMWARE])
def test_firmware_uses_only_modules_of_both_ports(api, path):
    own = own_modules("esp32_devkitc") | own_modules("unix_sim")
    assert check_source(api, path.read_text(), rel(path), own, both_ports=True) == []


def test_the_check_finds_what_the_esp32_port_lacks(api):
    bad = """
import typing
import machine, os, asyncio
from machine import Pin, Nope
import ssd1306
machine.UART(1)
machine.Frobnicator(1)
machine.Pin.OUT
machine.Pin.FLOATING
Pin.PULL_UP
os.urandom(4)
os.getenv("HOME")
asyncio.sleep_ms(1)
asyncio.to_thread(print)
import termios
try:
    import time
    time.ticks_ms()
except ImportError:
    time.monotonic()   # a CPython fallback: not checked
"""
    got = check_source(api, bad, "bad.py", own={"validator"}, required=(), both_ports=False)
    assert got == sorted([
        "bad.py:2: module 'typing' is not in the esp32 port",
        "bad.py:4: machine.Nope is not in the esp32 port",
        "bad.py:5: module 'ssd1306' is not in the esp32 port",
        "bad.py:7: machine.Frobnicator is not in the esp32 port",
        "bad.py:9: machine.Pin.FLOATING is not in the esp32 port",
        "bad.py:12: os.getenv is not in the esp32 port",
        "bad.py:14: asyncio.to_thread is not in the esp32 port",
        "bad.py:15: module 'termios' is not in the esp32 port",
    ])
    # the manifest's require() makes a micropython-lib package acceptable
    assert check_source(api, "import ssd1306\n", "ok.py", own=set(), required=("ssd1306",)) == []
    # on both ports: a module the unix port lacks is reported
    got = check_source(api, "import esp32\n", "e.py", own=set(), both_ports=True)
    assert got == ["e.py:1: module 'esp32' is not in the unix port"]


def test_stubs_are_the_installed_esp32_generic_ones(api):
    # the check is only as good as its source: the stubs of the release we target
    from importlib.metadata import version
    from host_tools.fleet import targets
    assert version("micropython-esp32-stubs").startswith(targets.MICROPYTHON_VERSION)
    assert "ESP32_GENERIC" in (api.esp32["esp32"]).read_text()[:400]
    for mod in ("machine", "esp32", "neopixel", "network", "os", "asyncio", "struct"):
        assert api.has_module(mod), mod


# -- manifests --------------------------------------------------------------------------------

def _imports(paths):
    out = set()
    for p in paths:
        for node in ast.walk(ast.parse(Path(p).read_text())):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                out.add(node.module)
                out.update(node.module + "." + a.name for a in node.names)
    return out


@pytest.mark.parametrize("board", ESP32_BOARDS + ("unix_sim",))
def test_manifest_names_every_module_of_ours_the_board_imports(api, board):
    man = manifest(board)
    provided = man.modules()
    assert "board" in provided
    assert all(src.is_file() for src, _ in man.files)
    sources = [src for src, _ in man.files]
    own_tops = {m.split(".")[0] for m in provided}
    for name in sorted(_imports(sources)):
        top = name.split(".")[0]
        if top in own_tops and name not in provided:
            # "from validator import cbor": validator.cbor must be a module we provide, or a
            # name inside one
            assert name.rsplit(".", 1)[0] in provided, "%s: %s not in the manifest" % (board, name)
    # firmware/main.py (copied as main.py) imports only what the manifest provides or the port has
    for name in _imports([ROOT / "firmware" / "main.py"]):
        top = name.split(".")[0]
        assert top in own_tops or api.has_module(top), name


@pytest.mark.parametrize("board", ESP32_BOARDS)
def test_manifest_requires_exactly_the_micropython_lib_packages_used(api, board):
    man = manifest(board)
    used = set()
    for p in board_sources(board):
        for name in _imports([p]):
            top = name.split(".")[0]
            if top not in own_modules(board) and not api.has_module(top):
                used.add(top)
    assert used == set(man.requires) == {"ssd1306"}
    # the manifest freezes the application on top of the port's own manifest
    assert man.port_includes == ["$(MPY_DIR)/ports/esp32/boards/manifest.py"]
    assert {"validator", "drivers", "board", "pins", "esp32_board", "pn532_i2c"} <= \
        {m.split(".")[0] for m in man.modules()}


def test_manifest_reader_follows_manifest_rules(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "m.py").write_text("")
    (tmp_path / "pkg" / "table.bin").write_bytes(b"x")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.py").write_text("")
    (tmp_path / "b" / "inc.py").write_text('module("x.py")\n')
    (tmp_path / "b" / "manifest.py").write_text(
        'include("$(MPY_DIR)/ports/esp32/boards/manifest.py")\n'
        'package("pkg", base_path="..")\ninclude("inc.py")\nrequire("ssd1306")\n')
    m = mpmanifest.read(tmp_path / "b" / "manifest.py")
    assert sorted(t for _, t in m.files) == ["pkg/__init__.py", "pkg/sub/m.py", "x.py"]
    assert [t for _, t in m.data] == ["pkg/table.bin"]
    assert m.modules() == {"pkg", "pkg.sub.m", "x"}
    assert m.requires == ["ssd1306"]
    (tmp_path / "b" / "manifest.py").write_text('module("missing.py")\n')
    with pytest.raises(mpmanifest.ManifestError, match="missing.py"):
        mpmanifest.read(tmp_path / "b" / "manifest.py")


# -- one shape for every board ------------------------------------------------------------------

# docs/boards.md, "Board interface": what firmware/validator/app.py and main.py ask a board for
INTERFACE_METHODS = {"uart", "qr_scanner", "nfc_reader", "log_device", "time_source",
                     "time_setter", "random", "feed_watchdog", "report", "reset", "tasks"}
INTERFACE_ATTRS = {"name", "root", "display", "stopping", "reset_requested"}


# base classes boards inherit their shape from, and where they are
BASES = {"Esp32Board": ROOT / "boards" / "common" / "esp32_board.py",
         "DriversOnLinks": ROOT / "firmware" / "drivers" / "links.py"}


def _class_shape(path, cls_name, seen=None):
    tree = ast.parse(Path(path).read_text())
    methods, attrs = set(), set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls_name:
            for base in node.bases:
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
                if name in BASES:
                    m, a = _class_shape(BASES[name], name)
                    methods |= m
                    attrs |= a
            for item in ast.walk(node):
                if isinstance(item, ast.FunctionDef):
                    methods.add(item.name)
                elif isinstance(item, ast.Assign):
                    for t in item.targets:
                        if isinstance(t, ast.Name):
                            attrs.add(t.id)
                        elif (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                              and t.value.id == "self"):
                            attrs.add(t.attr)
    return methods, attrs


@pytest.mark.parametrize("board", ESP32_BOARDS + ("unix_sim",))
def test_every_board_has_the_board_interface(board):
    methods, attrs = _class_shape(ROOT / "boards" / board / "board.py", "Board")
    assert INTERFACE_METHODS - methods == set()
    assert INTERFACE_ATTRS - attrs - methods == set()

