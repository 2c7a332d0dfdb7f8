"""Host-side handle of a reader serving the depot protocol on MicroPython over a pty
(tests/mp/sync_reader_main.py), for the end-to-end tests and the sync benchmark. (No test
functions here.)"""
import json
import subprocess
import threading
import queue
from pathlib import Path

from mpharness import MICROPYTHON, compiled_tree, mp_env

# The ESP32's 110 KB plus the bytecode's share, as host_tools/sim/simreader runs the reader: on the
# unix port code sits in the heap; the reader reports its working heap apart (state()["heap"]).
HEAP = "256k"
_tree = None


def tree():
    """Module path: the firmware precompiled to .mpy, as a reader runs it (compiling it from source
    fragments the heap), then the test helpers of tests/mp."""
    global _tree
    if _tree is None:
        _tree = compiled_tree()
    return _tree


class MpReader:
    def __init__(self, workdir, pty_path, reader_id, key, op_pub=None, heap=HEAP, log_blocks=64,
                 max_payload=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.args = [MICROPYTHON, "-X", "heapsize=" + heap, "-c",
                     "import sync_reader_main\nsync_reader_main.main()", pty_path, str(self.workdir),
                     str(reader_id), key.hex(), op_pub.hex() if op_pub else "-", str(log_blocks)]
        if max_payload:
            self.args.append(str(max_payload))
        self.proc = None
        self.lines = queue.Queue()
        self.stderr = []

    def start(self, timeout=120):
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=mp_env(path=tree()), cwd=str(self.workdir),
                                     bufsize=0)
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        line = self._line(timeout)
        if not line.startswith("ready "):
            self.proc.wait(timeout=10)
            rest = []
            while not self.lines.empty():
                rest.append(self.lines.get() or "")
            raise AssertionError("reader did not start:\n%s\n%s%s" % (line, "\n".join(rest),
                                                                     "".join(self.stderr)))
        return json.loads(line[6:])

    def _pump(self, f, q):
        for line in f:
            q.put(line.decode("utf-8", "replace").rstrip("\n"))
        q.put(None)

    def _pump_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line.decode("utf-8", "replace"))

    def _rest(self, first, wait=2.0):
        """`first` and whatever else the reader printed (a traceback) for an error message."""
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
        lines = [first]
        while not self.lines.empty():
            lines.append(self.lines.get() or "")
        return "\n".join(lines) + "\n" + "".join(self.stderr)

    def _line(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("reader said nothing for %ss; stderr:\n%s" % (timeout, "".join(self.stderr)))
        if line is None:
            self.proc.wait(timeout=10)
            raise AssertionError("reader exited %s; stderr:\n%s" % (self.proc.returncode, "".join(self.stderr)))
        return line

    def _cmd(self, text, timeout=300):
        self.proc.stdin.write((text + "\n").encode())
        self.proc.stdin.flush()
        return self._line(timeout)

    def add(self, n, workload=""):
        line = self._cmd(("add %d %s" % (n, workload)).strip())
        assert line.startswith("added "), self._rest(line)
        return int(line.split()[1])

    def state(self):
        return json.loads(self._cmd("state"))

    def expect_reboot(self, timeout=30):
        line = self._line(timeout)
        assert line == "reboot", line
        self.proc.wait(timeout=timeout)
        return self.proc.returncode

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
