"""Clearing across days and uploads (late records, a key retired, a configuration replaced), the
roles (a clearing login runs it, a reporting login reads it and changes nothing), and the
commands' one-line errors."""
import psycopg
import pytest

from clearingkit import T0, IssuerKey, Operator, Reader, Rider, put
from host_tools import cli
from host_tools.backoffice import clearing
from host_tools.issuing import issuer

DAY1, DAY2 = clearing.parse_day("2026-11-24"), clearing.parse_day("2026-11-25")


@pytest.fixture
def store(central_db, tmp_path):
    op = Operator(tmp_path)
    iss = IssuerKey(7)
    op.load(central_db.url, [op.keyring([iss.entry()], 1)], [op.config(12, {"1": 200})])
    central_db.iss, central_db.op = iss, op
    return central_db


def test_days_late_uploads_and_the_credit_window_across_them(store):
    a, b = Reader(1201, 12), Reader(1202, 12)
    alice = Rider(store.iss, 1, max_rides=2)
    with store.connect() as c:
        put(c, [a.tap(alice, T0, 200)[0]])
        late_record = b.tap(alice, T0 + 30, 200)[0]               # bus B syncs a day late
    s = clearing.run(store.url, DAY1, workers=0)
    assert (s.batch_id, s.batch_rides, s.exposure) == ("20261124-1", 1, 0)
    with store.connect() as c:
        put(c, [late_record] + [a.tap(alice, T0 + 86400 + 600 * i, 200)[0] for i in range(2)])
    # through the first day only: the late record, found by its upload batch's day
    s = clearing.run(store.url, DAY1, workers=0)
    assert (s.days, s.batch_id, s.batch_rides) == ([DAY1], "20261124-2", 1)
    s = clearing.run(store.url, DAY2, workers=0)      # (that upload had both days)
    assert (s.days, s.batch_id, s.batch_rides) == ([DAY1, DAY2], "20261125-1", 2)
    # four rides of a two-ride credential over two days and two readers: two past the limit
    assert store.q("SELECT rides, over_rides, over_amount, readers FROM clearing_exposure") == [
        (4, 2, 400, 2)]
    assert store.q("SELECT count(*) FROM clearing_charges") == [(3,)]
    assert clearing.run(store.url, DAY2, workers=0).verified == 0


def test_a_cut_run_rerun_with_an_earlier_day_charges_the_later_rides_next_time(store):
    """A run through day 2 cut after its verification, then run again through day 1 only, with
    nothing of day 1 left to charge: day 2's rides wait for the next run through day 2, which
    charges them as an uncut run would have."""
    r = Reader(1201, 12)
    alice = Rider(store.iss, 1)
    with store.connect() as c:
        put(c, [r.tap(alice, T0, 200)[0]])
    assert clearing.run(store.url, DAY1, workers=0).batch_id == "20261124-1"
    with store.connect() as c:
        put(c, [r.tap(alice, T0 + 86400 + 600 * i, 200)[0] for i in range(2)])

    class Cut(Exception):
        pass

    def cut(step):
        if step.startswith("settle"):
            raise Cut(step)
    with pytest.raises(Cut):
        clearing.run(store.url, DAY2, workers=0, hook=cut)
    assert clearing.run(store.url, DAY1, workers=0).batch_id is None
    s = clearing.run(store.url, DAY2, workers=0)
    assert (s.batch_id, s.batch_rides) == ("20261125-1", 2)
    assert store.q("SELECT count(*), sum(amount) FROM clearing_charges") == [(2, 600)]


def test_a_retired_key_and_a_replaced_configuration(store):
    """A key's retirement is dated by the first ring that says so; a configuration stays in force
    for the update grace (72 h) after its successor was made."""
    op, iss = store.op, store.iss
    retired = op.keyring([iss.entry(status=issuer.RETIRED)], 2, created=T0 + 3600)
    new_fares = op.config(12, {"1": 250}, version=2, created=T0 + 7200)
    op.load(store.url, [retired], [new_fares])
    assert store.q("SELECT retired_at FROM clearing_keys") == [(T0 + 3600,)]
    r = Reader(1201, 12)
    alice = Rider(iss, 1)
    recs = [r.tap(alice, T0 + 10, 200)[0],                 # before the retirement
            r.tap(alice, T0 + 8000, 200)[0],               # old fare, within the grace
            r.tap(alice, T0 + 8600, 250)[0],               # new fare
            r.tap(alice, T0 + 4 * 86400, 200)[0]]          # old fare, days later; key retired
    with store.connect() as c:
        put(c, recs)
    clearing.run(store.url, clearing.parse_day("2026-11-28"), workers=0)
    assert [v for v, in store.q("SELECT verdict FROM clearing_rides ORDER BY seq")] == [
        "ok", "ok", "ok", "key_not_valid"]


def test_a_clearing_login_clears_and_a_reporting_login_only_reads(store):
    r = Reader(1201, 12)
    with store.connect() as c:
        put(c, [r.tap(Rider(store.iss, 1), T0, 200)[0]])
    url = store.login_url("clearing")
    assert clearing.run(url, DAY1, workers=0).batch_id == "20261124-1"
    rep = store.login_url("reporting")
    assert cli.main(["clearing", "report", "--db", rep, "--limit", "3"]) == 0
    with psycopg.connect(rep, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM clearing_rides").fetchone() == (1,)
        for sql in ("UPDATE clearing_charges SET amount = 0", "DELETE FROM clearing_rides",
                    "INSERT INTO clearing_settings VALUES ('x', 'y')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(sql)
    depot = store.add_depot("north", [1201])
    with psycopg.connect(store.server.db_url(store.name, user=depot), autocommit=True) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT * FROM clearing_charges")


def test_one_line_errors(store, tmp_path, capsys):
    db = store.url
    cases = [
        (["clearing", "run", "--db", "mysql://x"], "PostgreSQL URL"),
        (["clearing", "export-charges", "--db", db, "--out", str(tmp_path / "c.csv")],
         "no settlement batch yet"),
        (["clearing", "export-charges", "--db", db, "--out", str(tmp_path / "c.xml")],
         ".csv or .json"),
        (["clearing", "import-payments", str(tmp_path / "none.csv"), "--db", db], "none.csv"),
        (["clearing", "decide", "--db", db, "--reader", "5", "--day", "2026-11-24", "--void"],
         "not suspect"),
        (["clearing", "load", "--db", db, "--config", str(store.op.dir / "keyring-1.fvs"),
          "--issuer-dir", str(store.op.dir / "issuer")], "is a key ring, not a configuration"),
        (["clearing", "load", "--db", db, "--keyring", str(store.op.dir / "keyring-1.fvs")],
         "cannot check the files' signatures"),
        (["clearing", "settings", "--db", db, "--currency", "euro"], "three-letter"),
        (["denylist", "build", "--from-central", db, "--out", str(tmp_path / "d.fvs"),
          "--issuer-dir", str(tmp_path / "nowhere")], "no operator key"),
        (["denylist", "build", "--out", str(tmp_path / "d.fvs")], "SOURCE"),
    ]
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    cases.append((["clearing", "import-payments", str(tmp_path / "bad.json"), "--db", db],
                  "not a payment results file"))
    for argv, words in cases:
        assert cli.main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err and "Traceback" not in err, (argv, err)
