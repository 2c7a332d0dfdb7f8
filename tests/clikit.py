"""Running `fare` commands in process (host_tools.cli.main with capsys) and checking how they
fail: a user's mistake ends with exactly one line on standard error and a non-zero exit status.
(No test functions here.)"""
from host_tools import cli


def fare(capsys, *argv):
    """(exit status, stdout, stderr) of `fare ARGV...`, run in this process."""
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def fails(capsys, *argv):
    """The one-line error of a command that must fail; asserts the exit status and the form."""
    rc, out, err = fare(capsys, *argv)
    assert rc not in (0, None), "fare %s succeeded:\n%s%s" % (" ".join(map(str, argv)), out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, "not one line: %r" % err
    assert "Traceback" not in err
    assert lines[0].startswith("fare "), lines[0]
    return lines[0]
