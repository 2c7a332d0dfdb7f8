"""`fare sim` (make sim) end to end, on a smaller day: it completes, and its summary agrees
with the depot database it wrote."""
import csv
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_small_day_runs_and_agrees_with_the_depot(tmp_path):
    out = tmp_path / "sim"
    proc = subprocess.run([sys.executable, "-m", "host_tools.cli", "sim", "--riders", "40",
                           "--out", os.path.relpath(out, ROOT)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "depot DB agrees" in proc.stdout and "│ yes" in proc.stdout
    db = sqlite3.connect(out / "depot.sqlite")
    n, fares = db.execute("SELECT COUNT(*), SUM(CASE WHEN decision = 1 THEN fare ELSE 0 END) "
                          "FROM trips").fetchone()
    assert n > 40
    assert "%d new tonight, %d in all" % (n, n) in proc.stdout
    assert "(%d minor units)" % fares in proc.stdout
    with open(out / "trips.csv") as f:
        assert sum(1 for _ in csv.DictReader(f)) == n
