"""The central store's schema: migrations, settings, service days and partitions, exact u64."""
import datetime
from decimal import Decimal

import psycopg
import pytest

import depotgen
from host_tools import cli
from host_tools.backoffice import central
from host_tools.backoffice.pgconn import CentralError
from host_tools.backoffice.upload import Uploader
from validator import triplog as tl

U64 = (1 << 64) - 1


def test_init_and_migrate_are_idempotent(central_db):
    cfg, applied = central.init(central_db.url)
    assert applied == [] and cfg == central_db.cfg
    assert central.migrate(central_db.url) == []
    assert central_db.q("SELECT version FROM schema_migrations") == [(1,)]
    with pytest.raises(CentralError, match="time_zone = Asia/Shanghai"):
        central.init(central_db.url, zone="Europe/Paris")
    st = central.status(central_db.url)
    assert st["schema_version"] == 1 and st["trips"] == 0


def test_migrate_refuses_a_database_that_is_no_store(pg_server):
    with pytest.raises(CentralError, match="fare central init"):
        central.migrate(pg_server.url)
    with pytest.raises(CentralError, match="unknown time zone"):
        central.init(pg_server.url, zone="Mars/Olympus")
    with pytest.raises(CentralError, match="HH:MM"):
        central.init(pg_server.url, day_starts="25:00")


def test_cli_lines(central_db, capsys):
    assert cli.main(["central", "init", "--db", central_db.url]) == 0
    assert "none (up to date)" in capsys.readouterr().out
    assert cli.main(["central", "add-depot", "Bad Name", "--db", central_db.url]) == 1
    assert "a depot name is" in capsys.readouterr().err
    assert cli.main(["central", "status", "--db", "mysql://x"]) == 1
    assert "PostgreSQL URL" in capsys.readouterr().err
    assert cli.main(["central", "add-depot", "west", "--readers", "5-7", "--db", central_db.url]) == 0
    assert "3 reader(s)" in capsys.readouterr().out
    assert cli.main(["central", "add-readers", "west", "9", "--db", central_db.url]) == 0
    assert central_db.q("SELECT reader_id FROM readers ORDER BY 1") == [(5,), (6,), (7,), (9,)]


def test_readers_stay_with_their_depot_unless_moved(central_db):
    central_db.add_depot("north", [1, 2])
    central_db.add_depot("south")
    with pytest.raises(CentralError, match="registered to depot north"):
        central.add_readers(central_db.url, "south", [2])
    assert central.add_readers(central_db.url, "south", [2], move=True) == 1
    assert central_db.q("SELECT d.name FROM readers JOIN depots d USING (depot_id) "
                        "WHERE reader_id = 2") == [("south",)]
    assert central.parse_readers("1,3-5, 9") == [1, 3, 4, 5, 9]
    for bad in ("x", "5-3", "1-4294967296"):
        with pytest.raises(CentralError):
            central.parse_readers(bad)


def _local(y, mo, d, h, mi):
    tz = datetime.timezone(datetime.timedelta(hours=8))
    return int(datetime.datetime(y, mo, d, h, mi, tzinfo=tz).timestamp())


def test_service_day_in_the_operators_zone_and_partitions(central_db, tmp_path):
    """A ride at 03:59 local belongs to the previous service day (night service); the trips of a
    day are in that day's partition; a clock far off lands in trips_other."""
    central_db.add_depot("north", [11])
    times = [_local(2026, 11, 24, 3, 59), _local(2026, 11, 24, 4, 0), _local(2026, 11, 24, 23, 59),
             _local(2019, 5, 1, 12, 0), _local(2099, 1, 1, 12, 0)]
    recs = []
    link = tl.genesis(11)
    for i, t in enumerate(times):
        raw = tl.encode({"time": t, "decision": 1, "reason": 0, "kind": "qr", "account": 1,
                         "counter": i, "fare": 100, "line": 3, "stop": 1}, i + 1, 11, link)
        link = tl.link(raw)
        recs.append(raw)
    path = tmp_path / "depot.sqlite"
    depotgen.make_depot(path, [], 0)
    depotgen.add_records(path, 11, recs)
    Uploader(path, central_db.url, depot="north").run()
    rows = central_db.q("SELECT seq, service_day, tableoid::regclass::text FROM trips ORDER BY seq")
    assert rows == [
        (1, datetime.date(2026, 11, 23), "trips_20261123"),
        (2, datetime.date(2026, 11, 24), "trips_20261124"),
        (3, datetime.date(2026, 11, 24), "trips_20261124"),
        (4, datetime.date(2019, 5, 1), "trips_other"),
        (5, datetime.date(2099, 1, 1), "trips_other")]


def test_a_day_that_comes_into_range_takes_its_rows_from_trips_other(central_db):
    """ensure_trip_days moves the rows of a day that waited in trips_other into its partition."""
    central_db.add_depot("north", [11])
    with central_db.connect() as c:
        day = c.execute("SELECT service_day(extract(epoch FROM now())::bigint) + 1").fetchone()[0]
        c.execute("INSERT INTO trips_other (service_day, depot_id, reader_id, seq, batch_id, time, "
                  "fare, line, stop, received_at, decision, reason, keyed, kind, account, counter, "
                  "cred_id, rec_hash, record) VALUES (%s, 1, 11, 1, 0, 0, 0, 1, 1, 0, 1, 0, false, "
                  "'qr', 1, 1, '', 'h', 'r')", (day,))
        assert c.execute("SELECT ensure_trip_days(ARRAY[%s::date, %s::date])", (day, day)).fetchone() == (1,)
        part = "trips_" + day.strftime("%Y%m%d")
        assert c.execute("SELECT tableoid::regclass::text FROM trips").fetchall() == [(part,)]
        assert c.execute("SELECT ensure_trip_days(ARRAY[%s::date])", (day,)).fetchone() == (0,)


def test_accounts_and_counters_are_exact_unsigned_64_bit(central_db, tmp_path):
    central_db.add_depot("north", [12])
    raw = tl.encode({"time": _local(2026, 11, 24, 9, 0), "decision": 1, "reason": 0, "kind": "nfc",
                     "account": U64, "counter": U64 - 1, "fare": 0xFFFFFFFF, "line": 0xFFFFFFFF,
                     "stop": 7, "cred_id": bytes(range(16)), "raw": b"ride code bytes"},
                    1, 12, tl.genesis(12))
    path = tmp_path / "depot.sqlite"
    depotgen.make_depot(path, [], 0)
    depotgen.add_records(path, 12, [raw])
    Uploader(path, central_db.url, depot="north").run()
    row = central_db.q("SELECT account, counter, fare, line, kind, cred_id, record, "
                       "trip_code(record), trip_prev_link(record) FROM trips")[0]
    assert row[:6] == (Decimal(U64), Decimal(U64 - 1), 0xFFFFFFFF, 0xFFFFFFFF, "nfc", bytes(range(16)))
    assert row[6] == raw and row[7] == b"ride code bytes" and row[8] == tl.genesis(12)
    with central_db.connect() as c:
        for bad in (U64 + 1, -1):
            with pytest.raises(psycopg.errors.CheckViolation):
                c.execute("SELECT %s::u64", (bad,))
