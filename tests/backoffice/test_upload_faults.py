"""fare upload under faults: the upload process killed at random points and at every step, the
PostgreSQL server killed and restarted mid-upload, the staging step out of disk, and 20 depots
uploading at once. After a rerun every record is in the central store exactly once and each depot
database's marks agree (backoffice_checks.assert_exactly_once)."""
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

import depotgen
from backoffice_checks import assert_exactly_once, central_records
from host_tools import cli
from host_tools.backoffice import central, pgserve
from host_tools.backoffice.upload import Uploader, UploadError

FORK = multiprocessing.get_context("fork")
READERS = [501, 502, 503, 504]


@pytest.fixture(scope="module")
def prebuilt(tmp_path_factory):
    """One depot database built once per module; each test works on a copy."""
    path = tmp_path_factory.mktemp("prebuilt") / "depot.sqlite"
    depotgen.make_depot(path, READERS, 250)
    return path


@pytest.fixture
def depot(prebuilt, tmp_path):
    path = tmp_path / "depot.sqlite"
    shutil.copy(prebuilt, path)
    return path


def _child(path, url, depot, batch, hook=None, connections=2):
    def run():
        try:
            Uploader(path, url, depot=depot, batch_records=batch, hook=hook,
                     connections=connections).run()
        except BaseException as e:  # noqa: BLE001 -- the exit status says it
            os.write(2, ("upload of %s failed: %r\n" % (path, e)).encode())
            os._exit(1)
        os._exit(0)
    p = FORK.Process(target=run)
    p.start()
    return p


def _stored(db):
    return db.q("SELECT count(*) FROM trips")[0][0]


def test_upload_killed_at_random_points(central_db, depot):
    """Uploads killed 20 times: a third of the kills at a random moment of the upload's start,
    the others once the central store holds a random number of records more, so that the kills
    fall inside the upload however fast this machine is; then an upload to the end."""
    central_db.add_depot("north", READERS)
    rnd = random.Random(11)
    kills = 0
    seen = []
    while kills < 20:
        before = _stored(central_db)
        p = _child(depot, central_db.url, "north", 20)
        if kills % 3 == 0:
            time.sleep(rnd.uniform(0.0, 0.05))
        else:
            target = before + rnd.randint(1, 30)
            deadline = time.monotonic() + 60
            while p.is_alive() and _stored(central_db) < target and time.monotonic() < deadline:
                time.sleep(0.002)
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.join(60)
        assert p.exitcode in (0, -signal.SIGKILL), "the upload failed: see its stderr"
        seen.append(len(central_records(central_db)))
        if seen[-1] == 1000:
            break
    assert seen == sorted(seen)  # confirmed records are never lost
    assert any(0 < n < 1000 for n in seen)  # the kills fell inside the upload
    s = Uploader(depot, central_db.url, depot="north", batch_records=20).run()
    assert s.records <= 1000 - seen[-1] + 2 * 20  # at most the two batches in flight again
    assert_exactly_once(central_db, [depot])


@pytest.mark.parametrize("step", ["read", "copied", "merged", "batch", "committed", "marked"])
def test_upload_killed_at_each_step(central_db, depot, step):
    """The process dies at `step` of the third batch (committed: after the central commit,
    before the depot's mark: the next run sends that batch again and the merge skips it). One
    connection, so that the batches in flight are known."""
    central_db.add_depot("north", READERS)
    count = [0]

    def die(at):
        if at == step:
            count[0] += 1
            if count[0] == 3:
                os.kill(os.getpid(), signal.SIGKILL)
    p = _child(depot, central_db.url, "north", 100, die, connections=1)
    p.join()
    assert p.exitcode == -signal.SIGKILL
    stored = len(central_records(central_db))
    assert stored == (300 if step in ("committed", "marked") else 200)
    s = Uploader(depot, central_db.url, depot="north", batch_records=100, connections=1).run()
    assert s.skipped == (100 if step == "committed" else 0)
    assert_exactly_once(central_db, [depot])


def _private_dir(prefix):
    """A directory outside pytest's (which any pytest run on the machine makes private again,
    locking out the server's own user)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)  # the server's user goes through it
    return d


@pytest.fixture
def own_server():
    """A PostgreSQL of this test's own, to kill (the shared one serves other tests meanwhile)."""
    d = _private_dir("fare-pg-kill-")
    try:
        url = pgserve.start(d)
        yield d, url
    finally:
        pgserve.kill(d)
        shutil.rmtree(d, ignore_errors=True)


def test_server_killed_and_restarted_mid_upload(own_server, depot, capsys):
    d, url = own_server
    central.init(url)
    central.add_depot(url, "north", READERS)
    hits = {"copied": 0, "committed": 0}

    def kill_server(step):
        if step in hits:
            hits[step] += 1
            # mid-transaction (after the COPY of batch 3: rolled back by the crash recovery),
            # then right after a commit (durable: the next batch finds the server gone)
            if (step, hits[step]) in (("copied", 3), ("committed", 6)):
                pgserve.kill(d)
    with pytest.raises(UploadError, match="connection to the central store was lost"):
        Uploader(depot, url, depot="north", batch_records=100, hook=kill_server,
                 connections=1).run()
    assert not pgserve.running(d)
    pgserve.start(d)  # crash recovery
    with pytest.raises(UploadError, match="connection to the central store was lost"):
        Uploader(depot, url, depot="north", batch_records=100, hook=kill_server,
                 connections=1).run()
    # the CLI says so in one line and exits 1 while the server is down
    assert cli.main(["upload", "--from", str(depot), "--to", url, "--depot", "north",
                     "--no-progress"]) == 1
    assert "cannot connect to the central store" in capsys.readouterr().err
    pgserve.start(d)
    s = Uploader(depot, url, depot="north", batch_records=100, connections=1).run()
    assert (s.records, s.skipped) == (400, 0)
    db = _Store(url)
    assert_exactly_once(db, [depot])


class _Store:
    """assert_exactly_once's view of a store that is not a central_db fixture."""

    def __init__(self, url):
        self.url = url
        self.cfg = central.settings(psycopg.connect(url))

    def q(self, sql, args=()):
        with psycopg.connect(self.url) as c:
            return c.execute(sql, args).fetchall()


def _mount_tmpfs(path, size):
    path.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", str(path)],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip("cannot mount a small file system here (%s)" % e)
    if r.returncode:
        pytest.skip("cannot mount a small file system here: %s" % r.stderr.decode().strip())


def test_staging_out_of_disk(central_db, depot):
    """The staging table on a 1 MB file system (a tmpfs tablespace for temporary tables): the
    upload fails with PostgreSQL's own 'No space left on device', says so, and a rerun after
    space is freed sends everything once."""
    base = _private_dir("fare-tiny-")
    tiny = base / "tiny"
    _mount_tmpfs(tiny, "1m")
    space = "tiny_" + central_db.name
    try:
        owner = pgserve.pgdata(central_db.server.dir).stat().st_uid
        os.chown(tiny, owner, -1)
        with central_db.server.admin() as c:
            c.execute("CREATE TABLESPACE %s LOCATION '%s'" % (space, tiny))
            c.execute('ALTER DATABASE "%s" SET temp_tablespaces = %s' % (central_db.name, space))
        central_db.add_depot("north", READERS)
        with pytest.raises(UploadError, match="out of disk space.*No space left on device"):
            Uploader(depot, central_db.url, depot="north", batch_records=1000).run()
        assert central_records(central_db) == []
        s = Uploader(depot, central_db.url, depot="north", batch_records=250).run()
        assert s.new == 1000  # small batches fit
    finally:
        with central_db.server.admin() as c:
            c.execute('ALTER DATABASE "%s" RESET temp_tablespaces' % central_db.name)
        central_db.drop()
        with central_db.server.admin() as c:
            c.execute("DROP TABLESPACE IF EXISTS %s" % space)
        subprocess.run(["umount", str(tiny)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_twenty_depots_at_once(central_db, tmp_path):
    """20 depot processes, each as its own role, on the same two service days, and one depot
    database uploaded by two processes at once: no lost or duplicated row, no deadlock."""
    paths = []
    for i in range(20):
        rid = 600 + 2 * i
        central_db.add_depot("d%d" % i, [rid, rid + 1])
        p = tmp_path / ("d%d.sqlite" % i)
        depotgen.make_depot(p, [rid, rid + 1], 100, day=i % 2)
        paths.append(p)
    procs = [_child(p, central_db.depot_url("d%d" % i), None, 30) for i, p in enumerate(paths)]
    procs.append(_child(paths[0], central_db.depot_url("d0"), None, 30))
    deadline = time.time() + 120
    for p in procs:
        p.join(max(1, deadline - time.time()))
    assert [p.exitcode for p in procs] == [0] * 21
    assert_exactly_once(central_db, paths)
    assert central_db.q("SELECT count(*) FROM trips") == [(4000,)]
