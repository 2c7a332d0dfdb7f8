import ast
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from mpharness import ROOT, ESP32_HEAP, run_mp_test, MicroPythonError  # noqa: E402

# Pure-logic firmware modules are importable on CPython too, so hypothesis can drive them.
sys.path.insert(0, str(ROOT / "firmware"))

DEFAULT_HEAPS = (ESP32_HEAP, "4m")


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".py" and file_path.name.startswith("mpt_"):
        return MicroPythonModule.from_parent(parent, path=file_path)


def pytest_pycollect_makemodule(module_path, parent):
    # Named on the command line, an mpt_ file would also be imported by CPython; the collector
    # above has it already.
    if module_path.name.startswith("mpt_"):
        return NothingHere.from_parent(parent, path=module_path)


class NothingHere(pytest.File):
    def collect(self):
        return []


class MicroPythonModule(pytest.File):
    """A test module that runs on the MicroPython binary, not on CPython."""

    def collect(self):
        tree = ast.parse(self.path.read_text())
        heaps = DEFAULT_HEAPS
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "HEAPS" for t in node.targets):
                heaps = tuple(ast.literal_eval(node.value))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                for heap in heaps:
                    yield MicroPythonItem.from_parent(
                        self, name="%s[%s]" % (node.name, heap), func=node.name, heap=heap)


class MicroPythonItem(pytest.Item):
    def __init__(self, *, func, heap, **kw):
        super().__init__(**kw)
        self.func = func
        self.heap = heap

    def runtest(self):
        run_mp_test(self.path.stem, self.func, self.heap, cwd=str(self.path.parent))

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MicroPythonError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, "micropython %s::%s [heap %s]" % (self.path.name, self.func, self.heap)
