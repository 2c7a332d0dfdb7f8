"""The MicroPython harness itself (tests/mpharness.py, tests/mp/_runner.py): a failure on the
MicroPython binary is a failure in pytest, and its report shows the MicroPython traceback, which
the unix port prints on stdout; a run is the same from any checkout path and leaves no files."""
import shutil
import tempfile
from pathlib import Path

import pytest

from mpharness import ESP32_HEAP, MP_PATH, MicroPythonError, exception_line, run_mp, run_mp_test

TINY_MODULE = '''
def helper():
    raise ValueError("deliberate 4711")


def test_passes():
    assert 1 + 1 == 2


def test_raises():
    helper()


def test_assert_fails():
    assert [1, 2] == [1, 3], "lists differ"


def test_exits():
    import sys
    sys.exit(0)   # a test that exits is not a test that passed
'''


def sections(message):
    """(first line, stdout section, stderr section) of a MicroPythonError message."""
    head, rest = message.split("\n", 1)
    out_label, rest = rest.split("\n", 1)
    assert out_label.startswith("--- stdout") and "traceback is here" in out_label
    stdout, stderr = rest.split("\n--- stderr ---\n")
    return head, stdout, stderr


def test_failing_snippet_raises_with_the_micropython_traceback():
    with pytest.raises(MicroPythonError) as e:
        run_mp("print('before')\ndef f():\n    raise KeyError('snippet 99')\nf()\n", heap="1m")
    head, stdout, stderr = sections(str(e.value))
    assert head == "MicroPython exited 1: KeyError: snippet 99"
    assert "before" in stdout
    assert "Traceback (most recent call last):" in stdout and "KeyError: snippet 99" in stdout
    assert 'line 3, in f' in stdout
    assert stderr == "(empty)"


def test_stderr_is_shown_as_stderr():
    with pytest.raises(MicroPythonError) as e:
        run_mp("import sys\nsys.stderr.write('to stderr 5\\n')\nsys.exit(3)\n", heap="1m")
    head, stdout, stderr = sections(str(e.value))
    assert head == "MicroPython exited 3"      # no traceback, so none named
    assert stderr.strip() == "to stderr 5"
    assert "to stderr 5" not in stdout


def test_passing_snippet_returns_its_output():
    assert run_mp("print(6 * 7)", heap="1m") == "42\n"


@pytest.fixture
def tiny_module(tmp_path):
    (tmp_path / "mpt_tiny.py").write_text(TINY_MODULE)
    return tmp_path


def test_passing_mp_test_function_passes(tiny_module):
    assert run_mp_test("mpt_tiny", "test_passes", "1m", cwd=str(tiny_module)).endswith("MP-OK\n")


@pytest.mark.parametrize("func, exc", [
    ("test_raises", "ValueError: deliberate 4711"),
    ("test_assert_fails", "AssertionError: lists differ"),
    ("test_exits", "SystemExit: 0"),
])
def test_failing_mp_test_function_is_a_failure(tiny_module, func, exc):
    with pytest.raises(MicroPythonError) as e:
        run_mp_test("mpt_tiny", func, "1m", cwd=str(tiny_module))
    head, stdout, _ = sections(str(e.value))
    assert head == "MicroPython exited 1: " + exc
    assert "MP-OK" not in stdout
    assert "mpt_tiny.py" in stdout     # the traceback points into the test module


def test_exception_line_takes_the_last_traceback():
    out = ("Traceback (most recent call last):\n  File \"a.py\", line 1\nOSError: 1\n"
           "more output\nTraceback (most recent call last):\n  File \"b.py\", line 2, in g\n"
           "MemoryError: memory allocation failed\n")
    assert exception_line(out) == "MemoryError: memory allocation failed"
    assert exception_line("no traceback here\n") is None


# ---- the same run wherever the repository is checked out ---------------------------------------

HEAP_AFTER_IMPORTS = """
import gc
from validator import riderstate, clock, config, policy, denylist, keyring
import flashdev
gc.collect()
print(gc.mem_alloc(), gc.mem_free())
"""
HEAP_TIGHT = ("mpt_policy_state",
              "test_200_accounts_riding_out_of_their_windows_keep_an_account_inside_its_passback")


def _copy_of_the_sources(where):
    """The module directories a MicroPython test run uses (MP_PATH: the firmware as the tests
    load it, the simulated board, the test helpers), copied under `where`."""
    out = []
    for src, rel in zip(MP_PATH, ("firmware", "boards/unix_sim", "tests/mp")):
        shutil.copytree(src, where / rel, ignore=shutil.ignore_patterns("__pycache__"))
        out.append(where / rel)
    return out


@pytest.fixture(scope="module")
def short_and_long_checkouts():
    """Copies of the sources at a short path (/tmp/XXXXXXXX) and at a path of about 200
    characters. (A test that fitted its heap at one checkout path found no 3.2 KB block at a
    14-character one: the paths were strings in MicroPython's heap.)"""
    short = Path(tempfile.mkdtemp(prefix="m"))
    long = Path(tempfile.mkdtemp(prefix="a-checkout-at-a-long-path-"))
    deep = long / ("d" * 60) / ("e" * 60) / "repo"
    try:
        yield _copy_of_the_sources(short), _copy_of_the_sources(deep)
    finally:
        shutil.rmtree(short, ignore_errors=True)
        shutil.rmtree(long, ignore_errors=True)


def test_the_heap_is_the_same_from_a_short_and_a_long_checkout_path(short_and_long_checkouts):
    short, long = short_and_long_checkouts
    here = run_mp(HEAP_AFTER_IMPORTS, heap="1m")
    assert run_mp(HEAP_AFTER_IMPORTS, heap="1m", path=short) == here
    assert run_mp(HEAP_AFTER_IMPORTS, heap="1m", path=long) == here


@pytest.mark.parametrize("which", ["short", "long"])
def test_a_heap_tight_test_passes_from_a_short_and_a_long_checkout_path(short_and_long_checkouts,
                                                                      which):
    path = short_and_long_checkouts[which == "long"]
    out = run_mp_test(*HEAP_TIGHT, heap=ESP32_HEAP, cwd=str(path[2]), path=path)
    assert out.endswith("MP-OK\n")


def test_a_failed_run_leaves_no_files_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = ("import os, flashdev\ndev = flashdev.FlashDev(4)\nopen('scratch.bin', 'wb').close()\n"
            "print('where', os.getcwd(), dev.path)\nraise MemoryError('deliberate')\n")
    with pytest.raises(MicroPythonError) as e:
        run_mp(code, heap="1m")
    where, image = str(e.value).split("where ", 1)[1].split()[:2]
    # the run and its scratch flash image were in its own directory, which is gone
    assert Path(where).parent == tmp_path and Path(where, image).parent == Path(where)
    assert list(tmp_path.iterdir()) == []
