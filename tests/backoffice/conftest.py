"""A real PostgreSQL for the back-office tests: one embedded server (pgserver's PostgreSQL 16) per
test run, shared by the xdist workers, and a database of its own for each test.

The first worker to get the lock starts the server in a temporary directory named after the run
(xdist gives every worker of a run the same PYTEST_XDIST_TESTRUNUID); each worker registers
itself there and the last one out stops the server and deletes the directory. A server left by
a run that died (no registered worker alive) is stopped and deleted by the next run."""
import fcntl
import os
import shutil
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from host_tools.backoffice import central, pgserve  # noqa: E402

RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or "solo%d" % os.getpid()
TMP = Path(tempfile.gettempdir())
# (a prefix no other test's directory starts with: the sweep below deletes what it matches, and
# it once matched a test's own server, "fare-pg-kill-...", while that server was starting)
PREFIX = "fare-pgrun-"
BASE = TMP / (PREFIX + RUN[:16])
# the test server loses nothing when its processes are killed (writes reach the OS at commit);
# only an OS crash would need fsync
TEST_SETTINGS = {"fsync": "off"}


@contextmanager
def _locked(path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _users(base):
    d = base / "users"
    return [p for p in d.glob("*") if p.name.isdigit()] if d.is_dir() else []


def _remove(base):
    try:
        pgserve.kill(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _sweep_orphans():
    for base in TMP.glob(PREFIX + "*"):
        if base != BASE and (base / "users").is_dir() \
                and not any(_alive(int(p.name)) for p in _users(base)):
            _remove(base)


class Server:
    def __init__(self, base):
        self.dir = base
        self.url = pgserve.url(base)

    def db_url(self, name, user="postgres"):
        return pgserve.url(self.dir, database=name, user=user)

    def admin(self):
        return psycopg.connect(self.url, autocommit=True)


@pytest.fixture(scope="session")
def pg_server():
    with _locked(TMP / "fare-pg.lock"):
        _sweep_orphans()
        BASE.mkdir(exist_ok=True)
        (BASE / "users").mkdir(exist_ok=True)
        (BASE / "users" / str(os.getpid())).touch()
        if not pgserve.running(BASE):
            pgserve.start(BASE)
            with psycopg.connect(pgserve.url(BASE), autocommit=True) as c:
                for k, v in TEST_SETTINGS.items():
                    c.execute("ALTER SYSTEM SET %s = %s" % (k, v))
                c.execute("SELECT pg_reload_conf()")
    yield Server(BASE)
    with _locked(TMP / "fare-pg.lock"):
        (BASE / "users" / str(os.getpid())).unlink(missing_ok=True)
        if not any(_alive(int(p.name)) for p in _users(BASE)):
            _remove(BASE)


class CentralDB:
    """A fresh central store (its own database, initialised, roles prefixed with its name)."""

    def __init__(self, server, name):
        self.server = server
        self.name = name
        self.url = server.db_url(name)
        self.cfg, _ = central.init(self.url)
        self.prefix = self.cfg["role_prefix"]

    def add_depot(self, name, readers=()):
        role, _ = central.add_depot(self.url, name, list(readers))
        return role

    def depot_url(self, name):
        return self.server.db_url(self.name, user=self.prefix + "depot_" + name)

    def login_url(self, group, name="t"):
        """A login role of the clearing or reporting group (made on first use)."""
        role = self.prefix + group + "_" + name
        if not self.q("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)):
            central.add_login(self.url, name, group)
        return self.server.db_url(self.name, user=role)

    def connect(self, user=None):
        return psycopg.connect(self.url if user is None else self.server.db_url(self.name, user),
                               autocommit=True)

    def q(self, sql, args=()):
        with self.connect() as c:
            return c.execute(sql, args).fetchall()

    def drop(self):
        with self.server.admin() as c:
            c.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.name)
            roles = [r[0] for r in c.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                                             (self.prefix.replace("_", "\\_") + "%",))]
            for r in sorted(roles, key=lambda r: r.endswith(("_depot", "_clearing", "_reporting"))):
                c.execute('DROP ROLE IF EXISTS "%s"' % r)


def new_central(server):
    name = "t_" + uuid.uuid4().hex[:12]
    with server.admin() as c:
        c.execute('CREATE DATABASE "%s"' % name)
    return CentralDB(server, name)


@pytest.fixture
def central_db(pg_server):
    db = new_central(pg_server)
    yield db
    db.drop()
