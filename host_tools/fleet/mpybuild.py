"""The firmware compiled with mpy-cross into a tree of .mpy files, as `fare deploy` puts it on a
board (host_tools/fleet/deploy.build, driven by the board's manifest.py), cached under build/ by a
digest of the sources so that a test session compiles once.

The simulated reader runs from such a tree: loading precompiled bytecode fragments the
MicroPython heap far less than compiling source on the reader, which is what a device does
(there the application is even frozen into flash)."""
import fcntl
import hashlib
import os
import shutil
from pathlib import Path

from host_tools.fleet import deploy, mpmanifest, targets

ROOT = Path(__file__).resolve().parents[2]


def build(board="unix_sim", arch=None):
    """Directory of `board`'s application compiled for `arch` (None: bytecode for the unix
    port; "xtensawin" for the ESP32 boards), main.py included."""
    target = targets.get(board)
    man = mpmanifest.read(target.manifest)
    digest = hashlib.sha256((board + str(arch)).encode())
    for src, rel in sorted(man.files + man.data, key=lambda f: f[1]):
        digest.update(rel.encode() + b"\0" + Path(src).read_bytes())
    digest.update((ROOT / "firmware" / "main.py").read_bytes())
    tag = digest.hexdigest()[:12]
    out = ROOT / "build" / ("mpy-%s-%s-%s" % (board, arch or "host", tag))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test workers build the same tree at the same time
        if not (out / ".complete").exists():
            _build_into(target, arch, out, tag)
    return out


def _build_into(target, arch, out, tag):
    tmp = out.with_name("%s.tmp%d" % (out.name, os.getpid()))
    shutil.rmtree(tmp, ignore_errors=True)
    deploy.build(target, arch, tmp)
    (tmp / ".complete").write_text(tag + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    # keep the newest few trees of this board and arch
    olds = sorted(out.parent.glob(out.name[:-len(tag)] + "*"), key=lambda p: p.stat().st_mtime)
    for old in olds[:-4]:
        if old != out:
            shutil.rmtree(old, ignore_errors=True)
