"""`make bench`: runs every bench/bench_*.py in turn and prints their figures.
Benchmarks report numbers; they never fail on absolute times."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEEDS_A_BOARD = {"bench_device"}   # `make bench-device PORT=...` runs it on a connected board


def main():
    only = sys.argv[1:]
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        if script.stem in NEEDS_A_BOARD:
            continue
        if only and not any(o in script.stem for o in only):
            continue
        print("\n=== %s ===" % script.stem, flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode:
            failed.append(script.name)
    if failed:
        print("benchmarks that did not run to the end: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
