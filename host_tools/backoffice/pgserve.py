"""An embedded PostgreSQL 16 server in a directory, from the `pgserver` package's binaries: tests,
`make sim` and a first try need no PostgreSQL installation.

`start(directory)` initialises the data directory on first use (`directory/pgdata`), starts the
server if it is not running and returns its URL. The server listens on a Unix socket inside the
data directory only (no TCP port), with `trust` authentication for local connections: any local
user may connect as any role, so it is for one machine's own use; a production central store is a
PostgreSQL server with password (scram) authentication, where the roles' passwords count. As root,
pgserver runs the server as the system user `pgserver` (created if missing): PostgreSQL refuses to
run as root."""
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# Bulk loads write more WAL than the default lets through between checkpoints; the values are the
# embedded server's own (a production server is configured by its administrator).
SETTINGS = {
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "max_connections": "200",
    "temp_buffers": "64MB",
    "shared_buffers": "1GB",
}


class ServerError(Exception):
    """The embedded server could not be started or stopped (the message says why)."""


def _pgserver():
    # pgserver asks platformdirs for a runtime directory, which warns when XDG_RUNTIME_DIR is unset
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    logging.getLogger("pgserver").setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError as e:  # pragma: no cover - the pinned requirements have it
            raise ServerError("the embedded PostgreSQL needs the pgserver package (pip install "
                              "-r requirements.txt): %s" % e)
    return pgserver


def pgdata(directory):
    return Path(directory).resolve() / "pgdata"


def start(directory):
    """Start (or find running) the server of `directory`; returns its postgresql:// URL."""
    pgserver = _pgserver()
    d = Path(directory).resolve()
    d.mkdir(parents=True, exist_ok=True)
    data = pgdata(d)
    if not (data / "PG_VERSION").exists():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # initdb, then start; cleanup_mode None: the server outlives this process
                pgserver.get_server(data, cleanup_mode=None)
        except (subprocess.SubprocessError, OSError, AssertionError) as e:
            raise ServerError("%s: the embedded PostgreSQL did not start (%s); its log is %s"
                              % (d, e, data / "log"))
        _configure(data)
        _pg_ctl(data, "restart")
    elif not running(d):
        _configure(data)
        _pg_ctl(data, "start")
    return url(d)


def _configure(data):
    """Our settings in postgresql.auto.conf's neighbour, included by postgresql.conf."""
    conf = data / "postgresql.conf"
    line = "include_if_exists = 'fare.conf'"
    text = conf.read_text()
    if line not in text:
        conf.write_text(text + "\n" + line + "\n")
    (data / "fare.conf").write_text("".join("%s = '%s'\n" % kv for kv in SETTINGS.items()))


def _owner_kwargs(data):
    if os.name == "posix" and os.geteuid() == 0:
        # the server's user must reach its directory (pgserver opens the path for it at initdb;
        # a directory above may have been made private since, e.g. by pytest)
        _pgserver()
        from pgserver.utils import ensure_prefix_permissions
        ensure_prefix_permissions(data)
        return {"user": data.stat().st_uid}
    return {}


def _pg_ctl(data, *args):
    """Run pgserver's pg_ctl on `data` (as the data directory's owner); ServerError with the
    end of its output if it fails."""
    _pgserver()  # imported quietly
    from pgserver._commands import POSTGRES_BIN_PATH
    cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data), "-w", "-t", "60",
           "-l", str(data / "log")] + list(args)
    if args[-1] in ("start", "restart"):
        cmd += ["-o", '-h "" -k %s' % _sockdir(data)]
    with tempfile.TemporaryFile("w+") as out:
        # output to a file, not a pipe: the server inherits it and would hold a pipe open
        r = subprocess.run(cmd, stdout=out, stderr=out, timeout=90, **_owner_kwargs(data))
        out.seek(0)
        text = out.read()
    if r.returncode:
        raise ServerError("pg_ctl %s failed for %s: %s" % (" ".join(args), data,
                                                           " / ".join(text.strip().split("\n")[-3:])))


def _sockdir(data):
    try:
        return (data / "postmaster.pid").read_text().split("\n")[4].strip() or str(data)
    except (OSError, IndexError):
        return str(data)


def url(directory, database="postgres", user="postgres"):
    """The URL of the running server of `directory` (its Unix socket's directory, as the server
    wrote it in postmaster.pid: the data directory, or a shorter one if that path is too long for
    a socket)."""
    data = pgdata(directory)
    try:
        lines = (data / "postmaster.pid").read_text().split("\n")
        sockdir = lines[4].strip() or str(data)
    except (OSError, IndexError):
        sockdir = str(data)
    return "postgresql://%s@/%s?host=%s" % (user, database, sockdir)


def postmaster_pid(directory):
    """The running server's process id, or None."""
    try:
        pid = int((pgdata(directory) / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def running(directory):
    return postmaster_pid(directory) is not None


def stop(directory, mode="fast"):
    """Stop the server of `directory` (mode "immediate" is a crash: recovery at the next start)."""
    data = pgdata(directory)
    if running(directory):
        _pg_ctl(data, "-m", mode, "stop")


def kill(directory):
    """SIGKILL the server and every process of it: what a power cut does to it (tests). Every
    PostgreSQL process works in its data directory, so a backend orphaned by the postmaster's
    death is found too; returns when none is left (none holds the shared memory any more)."""
    import psutil
    data = os.path.realpath(pgdata(directory))
    for _ in range(50):
        family = []
        for p in psutil.process_iter(["name"]):
            try:
                if p.info["name"] == "postgres" and os.path.realpath(p.cwd()) == data:
                    family.append(p)
            except psutil.Error:
                continue
        if not family:
            return
        for p in family:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(family, timeout=5)
    raise ServerError("%s: the server's processes do not go away" % directory)


def serve_forever(directory, out=sys.stdout):
    """`fare central serve`: start, print the URL, keep running until Ctrl-C, then stop."""
    u = start(directory)
    print(u, file=out, flush=True)
    try:
        while running(directory):
            time.sleep(1)
        raise ServerError("%s: the server stopped by itself; its log is %s"
                          % (directory, pgdata(directory) / "log"))
    except KeyboardInterrupt:
        stop(directory)
    return 0
