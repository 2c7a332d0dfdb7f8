"""The back office of `fare sim`: after the night's sync, the depot's records go up to an embedded
central PostgreSQL and are cleared; the charges go to a simulated payment provider, a few
accounts fail to pay, and the next deny list comes back for the next morning's sync. Everything
is done with the commands' own code (host_tools.backoffice), as an operator would run them:

    fare central serve --dir OUT/central --detach; fare central init; fare central add-depot
    fare upload --from OUT/depot.sqlite --to URL --depot north
    fare clearing load --keyring ... --config ...; fare clearing run --through DAY
    fare clearing export-charges --out OUT/backoffice/charges.csv --out ...charges.json
    fare clearing import-payments OUT/backoffice/payments.json        (twice: nothing changes)
    fare denylist build denied.csv --from-central URL --base <the readers' list>

`facts(url, ...)` reads back from the database what the summary states."""
import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from host_tools.backoffice import (central, charges, clearing, clearinginputs, denyfeed,
                                   pgserve)
from host_tools.backoffice.upload import Uploader

DEPOT = "north"
TIME_ZONE = "Asia/Shanghai"      # UTC+8, the simulated line's
PAYMENT_GRACE = 2 * 3600         # an account is denied once a payment failed two hours ago
FAIL_REASONS = ("insufficient funds", "card expired", "account closed")


@dataclass
class Loop:
    url: str = None
    upload: object = None
    clearing: object = None
    batch: dict = None
    charges_files: list = field(default_factory=list)
    results_file: Path = None
    failed: dict = field(default_factory=dict)    # account -> reason
    imports: list = field(default_factory=list)  # what each import of the results said
    deny: object = None                           # denyfeed.Built
    deny_files: list = field(default_factory=list)
    seconds: float = 0.0


def start(out):
    """The embedded server in OUT/central and a fresh central store; returns its URL."""
    server = pgserve.start(out / "central")
    with psycopg.connect(server, autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = 'fare'").fetchone():
            c.execute("CREATE DATABASE fare")
    url = server.replace("/postgres?", "/fare?")
    central.init(url, zone=TIME_ZONE, day_starts="04:00")
    return url


def stop(out):
    pgserve.stop(out / "central")


def run(out, world, readers, day, night_end, next_morning, must_fail, rng, keep_paying=()):
    """The loop for service day `day`: upload, clearing, charges, payment results (the accounts
    of `must_fail` and two more drawn by `rng`, none of `keep_paying`, fail), the next deny list
    built for `next_morning`. `readers`: reader ids of the depot. Returns a Loop."""
    t0 = time.perf_counter()
    loop = Loop()
    bo = out / "backoffice"
    bo.mkdir(exist_ok=True)
    loop.url = url = start(out)
    central.add_depot(url, DEPOT, readers)
    loop.upload = Uploader(out / "depot.sqlite", url, depot=DEPOT).run()
    provisioned = [world.dir / ("reader-%d" % r) for r in readers]
    clearinginputs.load(url, [p / "keyring.fvs" for p in provisioned],
                        [p / "config.fvs" for p in provisioned], world.store.operator_keys())
    loop.clearing = clearing.run(url, day)
    loop.charges_files = [bo / "charges.csv", bo / "charges.json"]
    loop.batch = charges.export(url, loop.charges_files, loop.clearing.batch_id)
    # the payment provider: most accounts pay; some do not
    doc = json.loads(loop.charges_files[1].read_text())
    accounts = [int(c["account"]) for c in doc["charges"]]
    others = sorted(set(accounts) - set(must_fail) - set(keep_paying))
    fails = list(must_fail) + rng.sample(others, min(2, len(others)))
    loop.failed = {a: FAIL_REASONS[i % len(FAIL_REASONS)] for i, a in enumerate(fails)}
    at = datetime.fromtimestamp(night_end, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    results = [{"charge_id": c["charge_id"], "account": c["account"], "amount": c["amount"],
                "status": "failed" if int(c["account"]) in loop.failed else "paid",
                "reason": loop.failed.get(int(c["account"]), ""), "at": at}
               for c in doc["charges"]]
    loop.results_file = bo / "payments.json"
    loop.results_file.write_text(json.dumps({"format": charges.RESULTS_FORMAT,
                                             "version": charges.FORMAT_VERSION,
                                             "results": results}, indent=1))
    for _ in range(2):   # the provider's file imported twice: the second changes nothing
        loop.imports.append(charges.import_results(url, loop.results_file))
    # the next deny list: the operator's own entries, and what clearing flags
    loop.deny = denyfeed.build(url, world.operator_key, world.operator_kid,
                               version=world.deny_version + 1, now=next_morning,
                               payment_grace=PAYMENT_GRACE, duplicates=1,
                               source=world.deny_entries, base_data=world.deny_data)
    full, delta = bo / "denylist.fvs", bo / "denylist-delta.fvs"
    full.write_bytes(loop.deny.full)
    loop.deny_files = [full]
    if loop.deny.delta is not None:
        delta.write_bytes(loop.deny.delta)
        loop.deny_files.append(delta)
    world.deny_version = loop.deny.version
    world.deny_data = loop.deny.full
    loop.seconds = time.perf_counter() - t0
    return loop


def push_for_readers(loop):
    """What the next morning's sync pushes: the delta (the readers have its base), else the
    full list."""
    if loop.deny.delta is not None:
        return [("denylist_delta", loop.deny.delta)]
    return [("denylist", loop.deny.full)]


def facts(url):
    """What the store says, for the summary's checks."""
    def q(sql, args=()):
        with psycopg.connect(url, autocommit=True) as c:
            return c.execute(sql, args).fetchall()
    f = {}
    f["trips"] = q("SELECT count(*), count(*) FILTER (WHERE decision = 1) FROM trips")[0]
    f["verdicts"] = dict(q("SELECT verdict, count(*) FROM clearing_rides GROUP BY 1"))
    f["states"] = dict(q("SELECT state, count(*) FROM clearing_rides GROUP BY 1"))
    f["suspects"] = q("SELECT count(*) FROM clearing_suspects")[0][0]
    f["duplicates"] = {int(a): (n, rd, kept) for a, n, rd, kept in q(
        "SELECT account, records, readers, kept_reader FROM clearing_duplicates")}
    f["exposure"] = {int(a): (r, o, amt, rd) for a, r, o, amt, rd in q(
        "SELECT account, rides, over_rides, over_amount, readers FROM clearing_exposure")}
    f["sharing"] = {int(a): (ra, rb, tb - ta) for a, ra, rb, ta, tb in q(
        "SELECT account, reader_a, reader_b, time_a, time_b FROM clearing_sharing")}
    f["charges"] = {int(a): m for a, m in q("SELECT account, amount FROM clearing_charges")}
    f["payments"] = {int(a): (st, why) for a, st, why in q(
        "SELECT c.account, p.status, p.reason FROM clearing_payments p "
        "JOIN clearing_charges c USING (charge_id)")}
    f["payment_rows"] = q("SELECT count(*) FROM clearing_payments")[0][0]
    f["deny"] = {(k, i): r for k, i, r in q(
        "SELECT kind, id, reason FROM denylist_entries WHERE version = "
        "(SELECT max(version) FROM denylist_versions)")}
    return f


def rng_for(seed):
    return random.Random("backoffice/%d" % seed)
