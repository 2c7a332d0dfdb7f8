"""Clearing: a city day's records re-verified, deduplicated, checked against the credit window and
charged (`fare clearing run`), against a row-at-a-time Python baseline on a sample, side by side
in one run.

The records are genuine (tests/backoffice/clearingkit.py): credentials signed by the issuer key,
ride codes and NFC transcripts signed by each rider's key, stored trip records as readers write
them, stored in the central store as an upload does. A day: readers of 600 taps (06:00-23:00),
in districts of 50 readers sharing 12,000 riders (about 2.5 rides per credential, every
credential new that day: the worst case for issuer verifications), 5 % refusals, 20 % NFC, 0.5 %
of codes shown again on another bus (screenshots), 1 % of riders allowed a single offline ride,
one reader with tampered fares. The server is the embedded PostgreSQL 16 of `fare central
serve`, fresh in a temporary directory (fsync on).

Run: .venv/bin/python bench/run.py clearing            (part of make bench: 300,000 records,
                                                         about 3 minutes with the data made)
     .venv/bin/python bench/bench_clearing.py --city    (3,000,000 records: about 15 minutes)
Figures go to docs/performance.md, section "Clearing"."""
import argparse
import multiprocessing
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "backoffice"))
import psycopg  # noqa: E402

import clearingkit as kit  # noqa: E402
from host_tools.backoffice import central, clearing, codecheck, pgserve  # noqa: E402

READERS_PER_DISTRICT, TAPS_PER_READER, RIDERS_PER_DISTRICT = 50, 600, 12_000
LINES = 50
FARES = {"1": 200, "2": 100, "3": 50, "4": 0}
PRODUCTS = [1] * 70 + [2] * 15 + [3] * 10 + [4] * 5


class ServerCPU:
    """CPU seconds of every process of the server in `data` (backends come and go: each is
    sampled every 0.2 s while it lives, so those that end are counted too)."""

    def __init__(self, data):
        import threading
        self.data = data
        self.seen = {}
        self.stop = threading.Event()
        self.base = dict(self._sample())
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sample(self):
        import psutil
        for p in psutil.process_iter(["name"]):
            try:
                if p.info["name"] == "postgres" and os.path.realpath(p.cwd()) == self.data:
                    t = p.cpu_times()
                    yield (p.pid, p.create_time()), t.user + t.system
            except (psutil.Error, OSError):
                continue

    def _run(self):
        while not self.stop.wait(0.2):
            for k, v in self._sample():
                self.seen[k] = v

    def total(self):
        self.stop.set()
        self.thread.join()
        for k, v in self._sample():
            self.seen[k] = v
        return sum(v - self.base.get(k, 0.0) for k, v in self.seen.items())


# -- the day ---------------------------------------------------------------------------------------

def district(args):
    """Make and store one district's day; returns its record count."""
    url, d, issuer_pem, seed = args
    from cryptography.hazmat.primitives import serialization
    rnd = random.Random("%d/%d" % (seed, d))
    iss = kit.IssuerKey(7, key=serialization.load_pem_private_key(issuer_pem, None))
    riders = [kit.Rider(iss, 10_000_000 + d * RIDERS_PER_DISTRICT + i,
                        product=rnd.choice(PRODUCTS),
                        max_rides=1 if rnd.random() < 0.01 else 20)
              for i in range(RIDERS_PER_DISTRICT)]
    line = 1 + d % LINES
    rids = [100_000 + d * READERS_PER_DISTRICT + k for k in range(READERS_PER_DISTRICT)]
    events = []     # (time, reader, rider, what)
    span = 17 * 3600
    for rid in rids:
        for i in range(TAPS_PER_READER):
            t = kit.T0 + span * i // TAPS_PER_READER + rnd.randrange(0, 40)
            u = rnd.random()
            what = "refuse" if u < 0.05 else "nfc" if u < 0.25 else "qr"
            events.append((t, rid, rnd.randrange(RIDERS_PER_DISTRICT), what))
    events.sort()
    readers = {rid: kit.Reader(rid, line) for rid in rids}
    per_reader = {rid: [] for rid in rids}     # (time, kind, raw, rider, counter, fare, decision)
    for t, rid, ri, what in events:
        r = riders[ri]
        fare = FARES[str(r.product)]
        if what == "refuse":
            per_reader[rid].append((t, "qr", b"", r, r.counter, 0, 0))
            continue
        raw, ctr = r.qr(t) if what == "qr" else r.nfc(rid, t)
        per_reader[rid].append((t, what, raw, r, ctr, fare, 1))
        if what == "qr" and rnd.random() < 0.005:    # a screenshot shown on another bus
            other = rnd.choice(rids)
            if other != rid:
                per_reader[other].append((t + rnd.randrange(5, 40), "qr", raw, r, ctr, fare, 1))
    out = []
    for rid in rids:
        rd = readers[rid]
        for k, (t, kind, raw, r, ctr, fare, dec) in enumerate(sorted(
                per_reader[rid], key=lambda e: e[0])):
            if d == 0 and rid == rids[0] and dec and k % 200 == 7:
                fare += 50                            # a reader that charges too much
            out.append(rd.record(t, kind, raw, r.account, ctr, r.cred_id, fare, dec,
                                 0 if dec else 26))
    with psycopg.connect(url, autocommit=True) as c:
        for i in range(0, len(out), 20_000):
            kit.put(c, out[i:i + 20_000])
    return len(out)


def make_day(url, districts, seed, tmp):
    from cryptography.hazmat.primitives import serialization
    op = kit.Operator(tmp)
    iss = kit.IssuerKey(7)
    pem = iss.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    op.load(url, [op.keyring([iss.entry()], 1)],
            [op.config(line, FARES) for line in range(1, LINES + 1)])
    with psycopg.connect(url, autocommit=True) as c:
        kit.depot_id(c)
    t = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        n = 0
        for k in pool.imap_unordered(district, [(url, d, pem, seed) for d in range(districts)]):
            n += k
            print("  made %d records (%.0f s)" % (n, time.perf_counter() - t), end="\r", flush=True)
    print()
    return n, time.perf_counter() - t


# -- the baseline: one record at a time ------------------------------------------------------------

BASELINE_SETUP = """
CREATE TABLE IF NOT EXISTS base_rides (reader_id bigint, seq bigint, rec_hash bytea,
    verdict text, cred_id bytea, counter numeric, account numeric, fare bigint,
    PRIMARY KEY (reader_id, seq, rec_hash));
CREATE TABLE IF NOT EXISTS base_charges (account numeric PRIMARY KEY, amount bigint);
TRUNCATE base_rides, base_charges"""


def baseline(url, sample):
    """Clear `sample` records the plain way: one record fetched, checked (both signatures, keys
    loaded each time), looked up (its line's fare), written (its verdict, its account's charge,
    its duplicates) and committed at a time."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(BASELINE_SETUP)
    keys = dict(conn.execute("SELECT key_id, public_key FROM clearing_keys").fetchall())
    cur = conn.cursor(name="rows")
    t0 = time.perf_counter()
    with conn.transaction():
        cur.execute("SELECT reader_id, seq, rec_hash, time, line, fare, account, counter, cred_id, "
                    "kind, trip_code(record) FROM trips WHERE decision = 1 LIMIT %s", (sample,))
        rows = []
        while True:
            row = cur.fetchone()
            if row is None:
                break
            rows.append(row)
    w = psycopg.connect(url, autocommit=True)
    n = 0
    for rid, seq, rh, t, line, fare, account, counter, cred_id, kind, code in rows:
        checker = codecheck.Checker(keys)                  # nothing remembered between records
        r = checker.check(code)
        verdict = r.status
        if verdict == "ok":
            f = r.cred.fields
            want = w.execute("SELECT (fares ->> %s)::bigint FROM clearing_configs WHERE line = %s "
                             "ORDER BY created DESC LIMIT 1", (str(f[8]), line)).fetchone()
            if (int(account), bytes(cred_id), int(counter)) != (f[2], f[1], r.counter):
                verdict = "mismatch"
            elif not want or want[0] != fare:
                verdict = "fare_mismatch"
        with w.transaction():
            w.execute("INSERT INTO base_rides VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                      (rid, seq, rh, verdict, cred_id, counter, account, fare))
            dup = w.execute("SELECT count(*) FROM base_rides WHERE cred_id = %s AND counter = %s",
                            (cred_id, counter)).fetchone()[0]
            if verdict == "ok" and dup == 1:
                w.execute("INSERT INTO base_charges VALUES (%s, %s) ON CONFLICT (account) DO "
                          "UPDATE SET amount = base_charges.amount + excluded.amount",
                          (account, fare))
        n += 1
    dt = time.perf_counter() - t0
    conn.close()
    w.close()
    return n, dt


# -- the run ---------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--city", action="store_true", help="3,000,000 records (100 districts)")
    ap.add_argument("--districts", type=int, default=10, help="districts of 30,000 records")
    ap.add_argument("--baseline", type=int, default=5000, help="records of the baseline sample")
    ap.add_argument("--workers", type=int, default=2, help="verify processes")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    districts = 100 if args.city else args.districts
    tmp = Path(tempfile.mkdtemp(prefix="bench-clearing-"))
    try:
        server = pgserve.start(tmp / "pg")
        data = os.path.realpath(pgserve.pgdata(tmp / "pg"))
        with psycopg.connect(server, autocommit=True) as c:
            c.execute('CREATE DATABASE "clearing"')
        url = server.replace("/postgres?", "/clearing?")
        central.init(url)
        print("making the day: %d districts of %d readers x %d taps ..."
              % (districts, READERS_PER_DISTRICT, TAPS_PER_READER))
        n, made = make_day(url, districts, args.seed, tmp)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("VACUUM ANALYZE")
            accepted = c.execute("SELECT count(*) FROM trips WHERE decision = 1").fetchone()[0]
        print("%d records (%d accepted) made and stored in %.0f s" % (n, accepted, made))

        cpu0, srv0 = resource.getrusage(resource.RUSAGE_SELF), ServerCPU(data)
        t0 = time.perf_counter()
        s = clearing.run(url, clearing.parse_day("2026-11-24"), workers=args.workers)
        wall = time.perf_counter() - t0
        srv = srv0.total()
        me = resource.getrusage(resource.RUSAGE_SELF)
        client = (me.ru_utime + me.ru_stime - cpu0.ru_utime - cpu0.ru_stime)
        print("\nclearing run, %d workers: %.1f s wall for %d records (%.0f records/s)"
              % (args.workers, wall, s.verified, s.verified / wall))
        print("  verify %.1f s, settle %.1f s: %s" % (
            s.seconds["verify"], s.seconds["settle"],
            ", ".join("%s %.1f" % (k, v) for k, v in s.seconds.items()
                      if k not in ("verify", "settle"))))
        print("  issuer signatures %d (credentials), rider signatures %d, codes seen again %d"
              % (s.issuer_verifies, s.rider_verifies, s.rider_reused))
        print("  found: %d records that do not stand, %d suspect reader-days, %d duplicates, "
              "%d credentials over their limits, %d sharing pairs"
              % (s.bad, s.suspects, s.duplicates, s.exposure, s.sharing))
        print("  batch %s: %d rides, %d accounts, %d minor units"
              % (s.batch_id, s.batch_rides, s.batch_accounts, s.batch_amount))
        print("  CPU: verify workers %.1f s (%.0f us per record; %.1f s waiting for their first "
              "record, the server's sort), this process %.1f s, server %.1f s (%.0f us per record)"
              % (s.worker_cpu, 1e6 * s.worker_cpu / max(1, s.verified), s.first_row / args.workers,
                 client, srv, 1e6 * srv / max(1, s.verified)))
        print("  peak RSS: this process %.0f MB, a verify worker %.0f MB"
              % (me.ru_maxrss / 1024, s.worker_rss_kb / 1024))
        with psycopg.connect(url, autocommit=True) as c:
            size = c.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                             "WHERE relname LIKE 'clearing_%' AND relkind = 'r'").fetchone()[0]
        print("  clearing's tables: %.0f MB (%.0f MB per million records)"
              % (float(size) / 1e6, float(size) / 1e6 / (s.verified / 1e6)))

        m, dt = baseline(url, args.baseline)
        print("\nbaseline, one record at a time (sample of %d): %.1f s, %.0f records/s: "
              "%.0f s (%.1f h) for these %d records, %.1f h for 3,000,000"
              % (m, dt, m / dt, accepted * dt / m, accepted * dt / m / 3600, accepted,
                 3e6 * dt / m / 3600))
        print("clearing is %.0fx the baseline's rate" % ((s.verified / wall) / (m / dt)))
    finally:
        pgserve.stop(tmp / "pg")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
