"""Reports and exports for the people who read them: trips filed under the operator's service
day in its time zone (configured once in depot.toml, overridable), said in the output; exports
with an ISO 8601 local time next to Unix seconds, reason names next to codes, `accepted`, and
the fare's unit; the schema in docs/exports.md is the one written."""
import csv
import datetime
import io
import json
import re
from pathlib import Path

import pytest

from clikit import fare
from host_tools.common import serviceday
from host_tools.depot import depotdb
from validator import reasons

ROOT = Path(__file__).resolve().parents[2]
UTC8 = datetime.timezone(datetime.timedelta(hours=8))
# 2026-11-24 at UTC+8: the first bus at 05:30, the last tap at 00:40 the next night
DAY = datetime.date(2026, 11, 24)


def local(day, hh, mm=0):
    return int(datetime.datetime.combine(day, datetime.time(hh, mm), UTC8).timestamp())


def _row(seq, t, accepted=True, reason=0, fare_=200, line=12, reader=1201):
    rec = {"seq": seq, "time": t, "decision": 1 if accepted else 0, "reason": reason,
           "kind": "qr", "account": 100 + seq, "counter": seq, "cred_id": bytes(16),
           "fare": fare_, "line": line, "stop": 3}
    return depotdb.trip_row(reader, rec, b"raw%d" % seq, t)


@pytest.fixture
def depot(tmp_path):
    """A depot database with one service day of trips (UTC+8, 05:30 to 00:40 the next night:
    two UTC days and two local calendar days), and one trip the day after."""
    db_path = tmp_path / "depot.sqlite"
    db = depotdb.connect(str(db_path))
    times = [local(DAY, 5, 30), local(DAY, 7), local(DAY, 12), local(DAY, 23, 50),
             local(DAY + datetime.timedelta(days=1), 0, 40),
             local(DAY + datetime.timedelta(days=1), 6, 15)]
    rows = [_row(i + 1, t) for i, t in enumerate(times)]
    rows[2] = _row(3, times[2], accepted=False, reason=reasons.PASSBACK, fare_=0)
    db.store_batch(1201, rows, len(rows), b"\0" * 32, 0)
    db.close()
    return db_path


def test_service_day_of_an_instant():
    tz = serviceday.parse_zone("+08:00")
    assert serviceday.service_day(local(DAY, 5, 30), tz, 4) == DAY
    assert serviceday.service_day(local(DAY, 3, 59), tz, 4) == DAY - datetime.timedelta(days=1)
    assert serviceday.service_day(local(DAY + datetime.timedelta(days=1), 0, 40), tz, 4) == DAY
    start, end = serviceday.day_bounds(DAY, tz, 4)
    assert (start, end) == (local(DAY, 4), local(DAY + datetime.timedelta(days=1), 4))
    assert serviceday.iso_time(local(DAY, 5, 30), tz) == "2026-11-24T05:30:00+08:00"
    # summer time: a service day is 23 or 25 hours long, and still one day
    berlin = serviceday.parse_zone("Europe/Berlin")
    start, end = serviceday.day_bounds(datetime.date(2026, 3, 28), berlin, 4)
    assert end - start == 23 * 3600   # the clocks went forward at 02:00 on the 29th
    for t in (start, end - 1):
        assert serviceday.service_day(t, berlin, 4) == datetime.date(2026, 3, 28)
    start, end = serviceday.day_bounds(datetime.date(2026, 10, 24), berlin, 4)
    assert end - start == 25 * 3600
    assert serviceday.zone_name(serviceday.parse_zone("-05:30")) == "-05:30"
    for bad in ("2026-13-45", "23/11/2026", "2026-02-30", "yesterday"):
        with pytest.raises(ValueError):
            serviceday.parse_day(bad)
    for bad in ("Mars/Olympus", "+15:00"):
        with pytest.raises(serviceday.ZoneError):
            serviceday.parse_zone(bad)


def _report_days(out):
    return re.findall(r"(\d{4}-\d{2}-\d{2}) +│ +12 +│ +1201 +│ +(\d+)", out)


def test_report_files_trips_under_the_service_day_and_says_which(depot, capsys):
    # no depot configuration: UTC calendar days, and the report says so
    rc, out, err = fare(capsys, "report", "--db", depot)
    assert rc == 0, err
    assert _report_days(out) == [("2026-11-23", "2"), ("2026-11-24", "4")]
    assert "calendar days (00:00-24:00), time zone UTC" in out
    assert "set [service_day] in depot.toml" in out
    # the operator's service day, configured once next to the database
    (depot.parent / "depot.toml").write_text(
        '[service_day]\ntime_zone = "+08:00"\nstarts_at = 4\n')
    rc, out, err = fare(capsys, "report", "--db", depot)
    assert rc == 0, err
    assert _report_days(out) == [("2026-11-24", "5"), ("2026-11-25", "1")]
    assert "service days from 04:00 to 04:00 the next day, time zone +08:00" in out
    assert "from %s" % (depot.parent / "depot.toml") in out
    row = [r for r in out.splitlines() if "2026-11-24" in r][0]
    assert re.search(r"│ +5 +│ +4 +│ +1 +│ +800 *$", row.rstrip(" │")), row   # fares of 4 rides
    # --day selects one service day, and the flags override the configuration
    rc, out, err = fare(capsys, "report", "--db", depot, "--day", "2026-11-24")
    assert _report_days(out) == [("2026-11-24", "5")]
    rc, out, err = fare(capsys, "report", "--db", depot, "--time-zone", "UTC", "--day-starts",
                        "0", "--day", "2026-11-24")
    assert _report_days(out) == [("2026-11-24", "4")]
    rc, out, err = fare(capsys, "report", "--db", depot, "--day", "2026-11-20")
    assert rc == 0 and "no trips on service day 2026-11-20" in out


def test_export_columns_for_people_and_programs(depot, tmp_path, capsys):
    (depot.parent / "depot.toml").write_text(
        '[service_day]\ntime_zone = "+08:00"\nstarts_at = 4\n')
    out_csv = tmp_path / "trips.csv"
    rc, out, err = fare(capsys, "export", "--db", depot, "--out", out_csv, "--day", "2026-11-24")
    assert rc == 0, err
    assert "5 trips exported to %s" % out_csv in out and "time zone +08:00" in out
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert tuple(rows[0]) == depotdb.EXPORT_COLUMNS
    assert [r["time_local"] for r in rows] == [
        "2026-11-24T05:30:00+08:00", "2026-11-24T07:00:00+08:00", "2026-11-24T12:00:00+08:00",
        "2026-11-24T23:50:00+08:00", "2026-11-25T00:40:00+08:00"]
    assert {r["service_day"] for r in rows} == {"2026-11-24"}
    assert [r["accepted"] for r in rows] == ["true", "true", "false", "true", "true"]
    assert rows[2]["reason"] == str(reasons.PASSBACK) and rows[2]["reason_name"] == "PASSBACK"
    assert rows[0]["reason_name"] == "OK" and rows[0]["fare_minor_units"] == "200"
    assert rows[0]["time"] == str(local(DAY, 5, 30))
    rc, out, err = fare(capsys, "export", "--db", depot, "--format", "json")
    doc = json.loads(out)
    assert doc["time_zone"] == "+08:00" and doc["service_day_starts"] == 4
    assert len(doc["trips"]) == 6 and doc["trips"][2]["accepted"] is False
    assert "6 trips exported" in err  # the data alone on standard output


def test_docs_describe_the_export_as_written():
    """docs/exports.md lists every column in order and every reason code with its name."""
    text = (ROOT / "docs" / "exports.md").read_text()
    columns = re.findall(r"^\| `(\w+)` \|", text.split("## Reason codes")[0], re.M)
    assert tuple(columns) == depotdb.EXPORT_COLUMNS
    codes = {int(c): n for c, n in re.findall(r"^\| (\d+) \| `(\w+)` \|", text, re.M)}
    assert codes == {code: reasons.name(code) for code in reasons.MESSAGES}
