"""`fare sim` (make sim) end to end, on a smaller day: it completes, every rider gets what its
kind should, and its summary agrees with the depot database it wrote. Also: the checks of the
summary fail when the reader and the database disagree, --out never deletes what a sim run did
not write, and --riders must be at least 1."""
import csv
import io
import os
import re
import sqlite3
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

import pytest

from host_tools.common.clierrors import UserError
from host_tools.sim import simday

ROOT = Path(__file__).resolve().parents[2]
ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}
# The decision each kind of rider should get somewhere in a day (simday.set_expectations)
EXPECTED_REASONS = {"OK", "ALREADY_VALIDATED", "DENIED_ACCOUNT", "DENIED_CREDENTIAL",
                    "CRED_EXPIRED", "QUOTA_RIDES", "PASSBACK", "DUPLICATED", "CODE_EXPIRED"}
DECISION_ROW = re.compile(r"│ (accept|reject) +│ (\w+) +│ +(\d+) │ +(\d+) │ +(\d+) │")
KIND_ROW = re.compile(r"│ (\w+) +│ +(\d+) │ +(\d+) │ [^│]*│ +(\d+) │")


def fare_sim(*args):
    return subprocess.run([sys.executable, "-m", "host_tools.cli", "sim", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, env=ENV)


def test_small_day_runs_as_expected_and_agrees_with_the_depot(tmp_path):
    out = tmp_path / "sim"
    proc = fare_sim("--riders", "40", "--out", os.path.relpath(out, ROOT))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"riders as expected +│ yes, all \d+ taps", proc.stdout)
    assert re.search(r"depot DB agrees +│ yes", proc.stdout)
    assert re.search(r"power cut +│ before tap \d+ .*booted 2 times", proc.stdout)

    # no kind of rider got anything else than it should
    kinds = {m[0]: (int(m[1]), int(m[2]), int(m[3])) for m in KIND_ROW.findall(proc.stdout)}
    assert set(kinds) == {k for k, _ in simday.KINDS}
    assert all(riders >= 1 and wrong == 0 for riders, _, wrong in kinds.values()), kinds

    # the printed decisions are the database's, and every expected reason came up
    printed = {(m[0] == "accept", m[1]): (int(m[2]), int(m[3]), int(m[4]))
               for m in DECISION_ROW.findall(proc.stdout)}
    assert {reason for (_, reason), (taps, _, _) in printed.items() if taps} >= EXPECTED_REASONS
    db = sqlite3.connect(out / "depot.sqlite")
    in_db = {(bool(d), simday.reasons.name(r)): n for d, r, n in db.execute(
        "SELECT decision, reason, COUNT(*) FROM trips GROUP BY decision, reason")}
    assert {k: records for k, (_, records, _) in printed.items() if records} == in_db
    assert {k: shown for k, (_, _, shown) in printed.items() if shown} == in_db
    assert printed[(True, "ALREADY_VALIDATED")][1:] == (0, 0)   # re-reads write no record
    n, fares = db.execute("SELECT COUNT(*), SUM(CASE WHEN decision = 1 THEN fare ELSE 0 END) "
                          "FROM trips").fetchone()
    assert sum(taps for taps, _, _ in printed.values()) > n > 40
    assert "%d new tonight, %d in all" % (n, n) in proc.stdout
    assert "(%d minor units)" % fares in proc.stdout
    # the day's service (06:00-21:00 at UTC+8) is one service day, not two UTC days
    assert re.search(r"records per service day +│ 2026-11-24: %d \(service days from 04:00" % n,
                     proc.stdout), proc.stdout[-2000:]
    with open(out / "trips.csv") as f:
        assert sum(1 for _ in csv.DictReader(f)) == n

    # a second run into the same directory replaces the first run's outputs
    (out / "depot.sqlite").write_bytes(b"not a database")
    proc = fare_sim("--riders", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    db = sqlite3.connect(out / "depot.sqlite")
    assert db.execute("SELECT COUNT(*) FROM trips").fetchone()[0] == 1


def test_out_with_foreign_files_is_refused_and_left_intact(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "world").mkdir()
    (out / "world" / "plan.txt").write_text("keep me too")
    proc = fare_sim("--riders", "1", "--out", str(out))
    assert proc.returncode != 0
    assert "refusing to use --out" in proc.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == \
        ["notes.txt", "world", "world/plan.txt"]
    assert (out / "notes.txt").read_text() == "keep me"


def test_out_of_an_earlier_run_loses_only_that_runs_outputs(tmp_path):
    out = tmp_path / "sim"
    simday.prepare_out(out)                          # a new directory: made, and marked
    assert (out / simday.OUT_MARKER).is_file()
    (out / "reader").mkdir()
    (out / "reader" / "flash.img").write_bytes(b"x")
    (out / "trips.csv").write_text("old")
    (out / "notes.txt").write_text("someone's notes")
    simday.prepare_out(out)
    assert sorted(p.name for p in out.iterdir()) == [simday.OUT_MARKER, "notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    simday.prepare_out(empty)
    assert [p.name for p in empty.iterdir()] == [simday.OUT_MARKER]
    # an output directory from before the marker: only a run's outputs, its database among them
    old = tmp_path / "old"
    (old / "reader").mkdir(parents=True)
    (old / "depot.sqlite").write_bytes(b"db")
    (old / "trips.csv").write_text("old")
    simday.prepare_out(old)
    assert [p.name for p in old.iterdir()] == [simday.OUT_MARKER]
    # but a directory of someone's own that merely has an output's name in it is refused
    mine = tmp_path / "mine"
    (mine / "world").mkdir(parents=True)
    with pytest.raises(UserError, match="refusing"):
        simday.prepare_out(mine)
    assert (mine / "world").is_dir()


def test_riders_must_be_at_least_one(tmp_path):
    proc = fare_sim("--riders", "0", "--out", str(tmp_path / "sim"))
    assert proc.returncode == 2
    assert "--riders: must be at least 1" in proc.stderr
    assert not (tmp_path / "sim").exists()


def test_a_small_day_still_has_every_kind_of_rider():
    kinds = ["qr"] * 10
    simday._cover_every_kind(kinds)
    assert Counter(kinds) == Counter(simday.KIND_MINIMUM)


def test_follow_up_taps_are_judged_by_their_distance_from_the_first():
    def rider(name, kind):
        return types.SimpleNamespace(name=name, kind=kind)

    replay, again, back, limit = (rider("a", "replay"), rider("b", "double_read"),
                                  rider("c", "passback"), rider("d", "limit"))
    taps = [simday.Tap(0, replay, "qr"), simday.Tap(1, again, "qr"), simday.Tap(2, back, "qr"),
            simday.Tap(3, limit, "qr"), simday.Tap(3 + simday.REPEAT_WINDOW, again, "double_read"),
            simday.Tap(1 + simday.MAX_CODE_AGE, replay, "replay"),
            simday.Tap(3 + simday.PASSBACK_WINDOW, back, "passback"), simday.Tap(36000, limit, "qr")]
    simday.set_expectations(taps)
    assert [tap.expect for tap in taps] == ["OK", "OK", "OK", "OK", "DUPLICATED", "CODE_EXPIRED",
                                            "OK", "QUOTA_RIDES"]


def _summary(results, db_by_reason, db_fares, boots=2):
    """sim.summarize on made-up outcomes; returns (exit status, what it printed)."""
    from rich.console import Console
    seqs = sorted(o.seq for _, o in results if o.seq is not None)
    db = types.SimpleNamespace(by_reason=Counter(db_by_reason), fares=db_fares, seqs=seqs,
                               days=[("2026-11-24", len(seqs))], day_rule="service days")
    sync = types.SimpleNamespace(records_new=len(seqs), status="ok", ok=True)
    cut = types.SimpleNamespace(index=1, before=results[1][0], seqs_before=seqs[:1],
                                ready={"log_last": seqs[0]})
    bus = types.SimpleNamespace(reader=types.SimpleNamespace(boots=boots, faults=[]),
                                db_path="depot.sqlite")
    console = Console(file=io.StringIO(), width=200)
    status = simday.summarize(console, results, db, [{}] * len(seqs), [sync], {"log_last": seqs[-1]},
                           cut, bus, "trips.csv", 1.0)
    return status, console.file.getvalue()


def _tap(t, kind, how, expect, accepted, reason, seq, fare=0):
    rider = types.SimpleNamespace(name="r%d" % t, kind=kind)
    outcome = types.SimpleNamespace(accepted=accepted, reason=reason, seq=seq, fare=fare, us=900)
    return simday.Tap(simday.DAY_START + t, rider, how, expect), outcome


def test_the_summary_fails_on_a_wrong_decision_a_disagreeing_database_or_no_power_cut():
    day = [_tap(0, "qr", "qr", "OK", True, "OK", 1, 200),
           _tap(2, "double_read", "double_read", "ALREADY_VALIDATED", True, "ALREADY_VALIDATED",
                None),
           _tap(9, "passback", "passback", "PASSBACK", False, "PASSBACK", 2)]
    records = {(True, "OK"): 1, (False, "PASSBACK"): 1}
    status, text = _summary(day, records, 200)
    assert status == 0, text
    assert re.search(r"held-phone re-reads, green, no record +│ 1 ALREADY_VALIDATED", text)

    wrong = day[:2] + [_tap(9, "passback", "passback", "PASSBACK", True, "OK", 2, 200)]
    status, text = _summary(wrong, {(True, "OK"): 2}, 400)
    assert status == 1
    assert "NO: 1 of 3 taps" in text and "expected PASSBACK, got OK" in text

    status, text = _summary(day, {(True, "OK"): 1, (False, "DUPLICATED"): 1}, 200)
    assert status == 1
    assert "PASSBACK reader 1 / DB 0" in text and "DUPLICATED reader 0 / DB 1" in text

    status, text = _summary(day, records, 150)
    assert status == 1 and "fares: reader 200 / DB 150" in text

    status, text = _summary(day, records, 200, boots=1)
    assert status == 1 and "NOT AS EXPECTED" in text
