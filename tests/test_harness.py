"""The MicroPython harness itself (tests/mpharness.py, tests/mp/_runner.py): a failure on the
MicroPython binary is a failure in pytest, and its report shows the MicroPython traceback, which
the unix port prints on stdout."""
import pytest

from mpharness import MicroPythonError, exception_line, run_mp, run_mp_test

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
