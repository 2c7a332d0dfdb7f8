"""The central store: upload throughput from one depot, against a row-by-row INSERT baseline and
bare COPY, side by side in one run; with --city, a simulated city day of 3,000,000 records from
20 depots uploaded at once.

The server is the embedded PostgreSQL 16 of `fare central serve` (pgserver), started fresh in a
temporary directory with its own settings (fsync on). The depot databases are synthetic but real
(tests/backoffice/depotgen.py: keyed trip records of 375 bytes on average, in the depot's schema).
CPU times: this process (client) and the server backend serving the upload (/proc/PID/stat);
the machine is shared, so wall times vary between runs and the CPU times say where the time went.

Run: .venv/bin/python bench/run.py central          (part of make bench: about 1.5 minutes)
     .venv/bin/python bench/bench_central.py --city  (the city day: about 10 minutes)
Figures go to docs/performance.md, section "Central store"."""
import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "backoffice"))
import psycopg  # noqa: E402

import depotgen  # noqa: E402
from host_tools.backoffice import central, pgserve, stagerows, upload  # noqa: E402
from host_tools.depot import depotdb  # noqa: E402
from validator import triplog as tl  # noqa: E402

READERS, PER_READER = 150, 2000          # 300,000 records for the throughput runs
BASELINE_ROWS = 30_000                   # the row-by-row baseline runs on a sample
CITY_DEPOTS, CITY_READERS, CITY_PER = 20, 75, 2000   # 20 x 75 x 2,000 = 3,000,000


def cpu_of(pid):
    f = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(data):
    """CPU seconds of every process of the server working in `data` (backends, WAL writer,
    checkpointer, ...), by pid."""
    import psutil
    out = {}
    for p in psutil.process_iter(["name"]):
        try:
            if p.info["name"] == "postgres" and os.path.realpath(p.cwd()) == data:
                out[p.pid] = cpu_of(p.pid)
        except (psutil.Error, OSError):
            continue
    return out


def new_store(server, name):
    with psycopg.connect(server, autocommit=True) as c:
        c.execute('CREATE DATABASE "%s"' % name)
    url = server.replace("/postgres?", "/%s?" % name)
    central.init(url)
    return url


def timed_upload(path, url, depot, data, connections=upload.CONNECTIONS):
    """Uploader.run with wall, client and server CPU seconds (the server's: every process of it,
    from the first batch to the last, so the backends' time is counted before they exit)."""
    marks = {}

    def hook(step):
        if step == "read" and "cpu0" not in marks:
            marks["cpu0"] = server_cpu(data)
        if step == "batch":
            marks["cpu1"] = server_cpu(data)
    t, c0 = time.perf_counter(), time.process_time()
    s = upload.Uploader(path, url, depot=depot, hook=hook, connections=connections).run()
    wall, ccpu = time.perf_counter() - t, time.process_time() - c0
    scpu = sum(v - marks["cpu0"].get(pid, 0.0) for pid, v in marks["cpu1"].items())
    return s, wall, ccpu, scpu


def rows_of(path, n):
    db = depotdb.open_existing(str(path))
    rows = db.conn.execute("SELECT reader_id, seq, raw, received_at FROM trips LIMIT ?", (n,)).fetchall()
    db.close()
    return rows


def row_by_row(path, url, depot_id, n):
    """The obvious way: decode each depot row and INSERT it on its own (ON CONFLICT DO NOTHING
    for exactly once), one transaction per 20,000 rows."""
    import hashlib
    rows = rows_of(path, n)
    sql = ("INSERT INTO trips (service_day, depot_id, reader_id, seq, batch_id, time, fare, line, "
           "stop, received_at, decision, reason, keyed, kind, account, counter, cred_id, rec_hash, "
           "record) VALUES (service_day(%s), %s, %s, %s, 0, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
           "%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SELECT ensure_trip_days(ARRAY['2026-11-24'::date])")
        t = time.perf_counter()
        cur = c.cursor()
        for i in range(0, len(rows), 20000):
            with c.transaction():
                for rid, seq, raw, received in rows[i:i + 20000]:
                    r = tl.decode(raw)
                    cur.execute(sql, (r["time"], depot_id, rid, seq, r["time"], r["fare"], r["line"],
                                      r["stop"], received, r["decision"], r["reason"], r["keyed"],
                                      r["kind"], r["account"], r["counter"], r["cred_id"],
                                      hashlib.sha256(raw).digest()[:16], raw))
        return len(rows) / (time.perf_counter() - t)


def bare_copy(path, url):
    """For scale: the same staged rows COPYed into a plain table with no index (the floor)."""
    rows = rows_of(path, READERS * PER_READER)
    payload = b"".join([stagerows.COPY_HEADER] + [stagerows.encode_row(*r, 0)[0] for r in rows]
                       + [stagerows.COPY_TRAILER])
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(upload.CREATE_STAGE.replace("TEMP TABLE IF NOT EXISTS fare_stage",
                                              "TABLE bare").replace("ON COMMIT DELETE ROWS", ""))
        t = time.perf_counter()
        with c.transaction():
            with c.cursor().copy(upload.COPY_STAGE.replace("fare_stage", "bare")) as cp:
                cp.write(payload)
        return len(rows) / (time.perf_counter() - t)


def throughput(server, work):
    path = work / "depot.sqlite"
    t = time.perf_counter()
    depotgen.make_depot(path, range(10_000, 10_000 + READERS), PER_READER)
    print("depot database: %d records, %.1f MB, made in %.1f s"
          % (READERS * PER_READER, path.stat().st_size / 1e6, time.perf_counter() - t), flush=True)
    url = new_store(server, "bench_upload")
    central.add_depot(url, "north", list(range(10_000, 10_000 + READERS)))
    data = os.path.realpath(pgserve.pgdata(work / "server"))
    s, wall, ccpu, scpu = timed_upload(path, url, "north", data)
    t = time.perf_counter()
    again = upload.Uploader(path, url, depot="north").run()
    rerun = time.perf_counter() - t
    one_url = new_store(server, "bench_one")
    central.add_depot(one_url, "north", list(range(10_000, 10_000 + READERS)))
    s1, wall1, _, _ = timed_upload(path, one_url, "north", data, connections=1)
    base_url = new_store(server, "bench_baseline")
    central.add_depot(base_url, "north", list(range(10_000, 10_000 + READERS)))
    base = row_by_row(path, base_url, 1, BASELINE_ROWS)
    bare = bare_copy(path, new_store(server, "bench_bare"))
    n = s.records
    print()
    print("| upload of %d records (%.0f bytes each on average) | records/s | MB/s |" % (
        n, s.nbytes / n))
    print("|---|---|---|")
    print("| `fare upload` end to end (read, stage, merge, commit; batches of %d) | **%.0f** | %.1f |"
          % (upload.BATCH_RECORDS, n / wall, s.nbytes / 1e6 / wall))
    print("| same, one connection (no batch staged while the other merges) | %.0f | %.1f |"
          % (n / wall1, s1.nbytes / 1e6 / wall1))
    print("| row-by-row INSERT ... ON CONFLICT DO NOTHING (%d-row sample) | %.0f | %.1f |"
          % (BASELINE_ROWS, base, base * s.nbytes / n / 1e6))
    print("| bare COPY of the staged rows into a table without index (the floor) | %.0f | %.1f |"
          % (bare, bare * s.nbytes / n / 1e6))
    print()
    print("fare upload: %.2f s wall, %.1f us client CPU and %.1f us server CPU (all its "
          "processes) per record; "
          "%.1fx the row-by-row baseline; a rerun with nothing to send: %.2f s (%d sent)"
          % (wall, ccpu / n * 1e6, scpu / n * 1e6, n / wall / base, rerun, again.records))


def _make_city_depot(args):
    path, first, day = args
    depotgen.make_depot(path, range(first, first + CITY_READERS), CITY_PER, day=day, seed=first)
    return path


def _upload_child(args):
    path, url = args
    t = time.perf_counter()
    s = upload.Uploader(path, url).run()
    return s.records, time.perf_counter() - t


def city(server, work):
    n = CITY_DEPOTS * CITY_READERS * CITY_PER
    url = new_store(server, "bench_city")
    jobs = []
    for i in range(CITY_DEPOTS):
        first = 20_000 + i * CITY_READERS
        central.add_depot(url, "d%02d" % i, list(range(first, first + CITY_READERS)))
        jobs.append((work / ("d%02d.sqlite" % i), first, 0))
    t = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        paths = pool.map(_make_city_depot, jobs)
    print("20 depot databases, %d records: made in %.0f s" % (n, time.perf_counter() - t), flush=True)
    prefix = central.settings(psycopg.connect(url))["role_prefix"]
    t = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(CITY_DEPOTS) as pool:
        done = pool.map(_upload_child, [
            (p, url.replace("postgres@", "%sdepot_d%02d@" % (prefix, i))) for i, p in enumerate(paths)])
    wall = time.perf_counter() - t
    assert sum(d[0] for d in done) == n, done
    with psycopg.connect(url, autocommit=True) as c:
        stored = c.execute("SELECT count(*) FROM trips").fetchone()[0]
        t = time.perf_counter()
        c.execute("VACUUM ANALYZE trips")
        vac = time.perf_counter() - t
        db_size = c.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        part = c.execute("SELECT pg_total_relation_size('trips_20261124'), "
                         "pg_relation_size('trips_20261124'), "
                         "pg_indexes_size('trips_20261124')").fetchone()
        q = ("SELECT line, count(*) AS rides, sum(fare) AS revenue FROM trips "
             "WHERE service_day = '2026-11-24' AND decision = 1 GROUP BY line ORDER BY line")
        plan = [r[0] for r in c.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + q)]
        t = time.perf_counter()
        lines = c.execute(q).fetchall()
        qtime = time.perf_counter() - t
    print()
    print("city day: %d records from %d depots uploaded at once in %.1f s wall (%.0f records/s); "
          "slowest depot %.1f s; stored %d" % (n, CITY_DEPOTS, wall, n / wall,
                                              max(d[1] for d in done), stored))
    print("database %.0f MB (%.0f MB per million records); the day's partition %.0f MB (heap %.0f MB,"
          " indexes %.0f MB); VACUUM ANALYZE %.1f s" % (
              db_size / 1e6, db_size / 1e6 / (n / 1e6), part[0] / 1e6, part[1] / 1e6, part[2] / 1e6,
              vac))
    print("revenue per line for 2026-11-24: %d lines, %.0f ms" % (len(lines), qtime * 1000))
    print("\n".join("    " + p for p in plan))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--city", action="store_true", help="also the 3,000,000-record city day")
    ap.add_argument("--only-city", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fare-bench-central-"))
    work.chmod(0o755)  # the server's own user (pgserver) goes through it
    try:
        server = pgserve.start(work / "server")
        if not args.only_city:
            throughput(server, work)
        if args.city or args.only_city:
            city(server, work)
    finally:
        pgserve.stop(work / "server")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
