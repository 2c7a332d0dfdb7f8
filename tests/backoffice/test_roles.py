"""Roles and row-level security: PostgreSQL itself refuses what a depot may not do."""
import psycopg
import pytest

import depotgen
from backoffice_checks import assert_exactly_once
from host_tools.backoffice.upload import Uploader

ROW = ("INSERT INTO trips (service_day, depot_id, reader_id, seq, batch_id, time, fare, line, stop, "
       "received_at, decision, reason, keyed, kind, account, counter, cred_id, rec_hash, record) "
       "VALUES ('2026-11-24', %s, %s, %s, 0, 1795500000, 0, 1, 1, 0, 1, 0, false, 'qr', 1, 1, '', "
       "%s, 'r')")


@pytest.fixture
def two_depots(central_db, tmp_path):
    central_db.add_depot("north", [301, 302])
    central_db.add_depot("south", [401])
    north, south = tmp_path / "north.sqlite", tmp_path / "south.sqlite"
    depotgen.make_depot(north, [301, 302], 50)
    depotgen.make_depot(south, [401], 50)
    return north, south


def depot_id(db, name):
    return db.q("SELECT depot_id FROM depots WHERE name = %s", (name,))[0][0]


def test_each_depot_uploads_as_its_own_role(central_db, two_depots):
    north, south = two_depots
    s = Uploader(north, central_db.depot_url("north")).run()
    assert (s.depot, s.new) == ("north", 100)
    Uploader(south, central_db.depot_url("south")).run()
    assert_exactly_once(central_db, [north, south])
    assert central_db.q("SELECT d.name, count(*) FROM trips t JOIN depots d USING (depot_id) "
                        "GROUP BY 1 ORDER BY 1") == [("north", 100), ("south", 50)]


def test_a_depot_cannot_upload_another_depots_reader(central_db, two_depots):
    """The depot's own upload holds the foreign reader back; the database refuses it anyway."""
    north, south = two_depots
    s = Uploader(south, central_db.depot_url("north")).run()
    assert s.held == {401: 50} and s.records == 0
    with psycopg.connect(central_db.depot_url("north"), autocommit=True) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            c.execute(ROW, (depot_id(central_db, "north"), 401, 1, b"h"))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            c.execute(ROW, (depot_id(central_db, "south"), 401, 1, b"h"))
        # nor pass its own reader off as another depot's record
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            c.execute(ROW, (depot_id(central_db, "south"), 301, 1, b"h"))
        c.execute(ROW, (depot_id(central_db, "north"), 301, 1, b"h"))  # its own: fine


def test_a_depot_reads_nothing_and_changes_nothing(central_db, two_depots):
    north, south = two_depots
    Uploader(north, central_db.depot_url("north")).run()
    Uploader(south, central_db.depot_url("south")).run()
    with psycopg.connect(central_db.depot_url("north"), autocommit=True) as c:
        for sql in ("SELECT count(*) FROM trips", "SELECT fare FROM trips WHERE reader_id = 301",
                    "SELECT * FROM trips", "SELECT count(*) FROM trips_20261124",
                    "SELECT * FROM incidents", "SELECT * FROM reader_states",
                    "SELECT * FROM upload_batches",
                    "DELETE FROM trips WHERE reader_id = 301",
                    "UPDATE trips SET fare = 0 WHERE reader_id = 301",
                    "DELETE FROM trips_20261124", "TRUNCATE trips",
                    "UPDATE readers SET depot_id = 1", "INSERT INTO readers VALUES (999, 1)",
                    "INSERT INTO depots (name, role_name) VALUES ('x', 'y')",
                    "CREATE TABLE mine (x int)", "DROP TABLE trips",
                    "ALTER TABLE trips DISABLE ROW LEVEL SECURITY"):
            with pytest.raises((psycopg.errors.InsufficientPrivilege,
                                psycopg.errors.UndefinedTable)):
                c.execute(sql)
        # it sees its own registration only
        assert c.execute("SELECT name FROM depots").fetchall() == [("north",)]
        assert c.execute("SELECT reader_id FROM readers ORDER BY 1").fetchall() == [(301,), (302,)]
        # an incident in another depot's name is refused
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            c.execute("INSERT INTO incidents (dedupe_key, depot_id, kind, detail, at) "
                      "VALUES ('x', %s, 'gap', 'forged', 0)", (depot_id(central_db, "south"),))
    assert central_db.q("SELECT count(*) FROM trips") == [(150,)]


def test_clearing_and_reporting_read_everything_and_change_no_trip(central_db, two_depots):
    north, south = two_depots
    Uploader(north, central_db.depot_url("north")).run()
    Uploader(south, central_db.depot_url("south")).run()
    for role in ("clearing", "reporting"):
        with psycopg.connect(central_db.login_url(role), autocommit=True) as c:
            assert c.execute("SELECT count(*) FROM trips").fetchone() == (150,)
            assert c.execute("SELECT count(*) FROM readers").fetchone() == (3,)
            for sql in ("DELETE FROM trips", "UPDATE trips SET fare = 0",
                        "INSERT INTO readers VALUES (999, 1)"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(sql)


def test_a_depot_resends_a_committed_batch_as_its_own_role(central_db, two_depots):
    """The rerun after a cut between commit and mark goes through ON CONFLICT DO NOTHING, which
    a depot's role may do without reading anything."""
    north, _ = two_depots

    class Cut(Exception):
        pass

    def cut(step):
        if step == "committed":
            raise Cut()
    with pytest.raises(Cut):
        Uploader(north, central_db.depot_url("north"), batch_records=40, connections=1,
                 hook=cut).run()
    s = Uploader(north, central_db.depot_url("north"), batch_records=40).run()
    assert (s.records, s.new, s.skipped) == (100, 60, 40)
    assert_exactly_once(central_db, [north])
