"""One-line errors for the `fare` commands: a user's mistake (a missing file, the wrong kind of
file, an output that cannot be written) ends the command with one line that says what and where,
and a non-zero exit status, never a Python traceback.

A command raises `UserError("...")`; `host_tools.cli.main` prints it as `fare COMMAND: ...` on
standard error and returns EXIT_ERROR. The helpers below turn the usual OSErrors into such
messages, and check an output before the work that would be lost if it cannot be written.
"""
import os
import tempfile
from pathlib import Path

EXIT_ERROR = 1


class UserError(Exception):
    """A mistake the user can fix; its message is one line that says what to do."""


def oserror_text(e):
    """`No such file or directory` and friends, without Python's [Errno N] prefix."""
    return e.strerror or str(e)


def read_bytes(path, what="file"):
    """The bytes of `path`, or UserError naming `what` it should have been."""
    p = Path(path)
    if p.is_dir():
        raise UserError("%s %s is a directory, not a file" % (what, p))
    try:
        return p.read_bytes()
    except OSError as e:
        raise UserError("cannot read %s %s: %s" % (what, p, oserror_text(e))) from None


def read_text(path, what="file"):
    """The text (UTF-8) of `path`; a binary file is refused as not being the text it should."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError("%s %s is not a text file (binary data at byte %d): is it the right file?"
                        % (what, path, _first_bad(data))) from None


def _first_bad(data):
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start
    return 0


def check_output(path, what="output file"):
    """Refuse (UserError) an output that cannot be written, before any work is done for it:
    a directory, a missing or unwritable folder, a read-only file. Creates nothing that stays.
    Returns the path."""
    p = Path(path)
    if p.is_dir():
        raise UserError("%s %s is a directory: give a file name" % (what, p))
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise UserError("cannot write %s %s: folder %s does not exist" % (what, p, parent))
    if not parent.is_dir():
        raise UserError("cannot write %s %s: %s is not a folder" % (what, p, parent))
    try:  # the only sure test (permissions, read-only mounts, quotas): make a file there
        fd, probe = tempfile.mkstemp(prefix=".fare-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError("cannot write %s %s: %s" % (what, p, oserror_text(e))) from None
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError("cannot write %s %s: the file is read-only" % (what, p))
    return p


def check_folder(path, what="output folder"):
    """Refuse (UserError) a folder that cannot be written to: a file in its place, or a nearest
    existing parent that is not a folder or not writable. (The folder itself may be missing: the
    command creates it.) Returns the path."""
    p = Path(path)
    have = p
    while not have.exists() and have != have.parent:
        have = have.parent
    if not have.is_dir():
        raise UserError("cannot use %s %s: %s is a file, not a folder" % (what, p, have))
    try:
        fd, probe = tempfile.mkstemp(prefix=".fare-probe-", dir=have)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError("cannot write %s %s: %s" % (what, p, oserror_text(e))) from None
    return p


def write_bytes(path, data, what="output file", mode=None):
    """Write `data` to `path` whole or not at all (a temporary file renamed into place).
    `mode`: permissions of a new file (e.g. 0o600 for secrets)."""
    p = check_output(path, what)
    tmp = p.with_name(".%s.tmp-%d" % (p.name, os.getpid()))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UserError("cannot write %s %s: %s" % (what, p, oserror_text(e))) from None
    return p


def write_text(path, text, what="output file"):
    return write_bytes(path, text.encode("utf-8"), what)
