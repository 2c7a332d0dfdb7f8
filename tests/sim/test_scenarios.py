"""Tap scenarios against the real firmware on the simulated board (fare scenario)."""
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from host_tools.sim import scenario, simbus
from host_tools.common.fw import validator  # noqa: F401
from validator import reasons

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "scenarios").glob("*.toml"))
FARE = [sys.executable, "-m", "host_tools.cli", "scenario"]

HEAD = """name = "Small"
start = 2026-11-23T07:00:00+08:00
[reader.config]
line = 1
[reader.config.fares.1]
adult = 100
[[rider]]
name = "a"
account = 1
"""


def write(path, text):
    path.write_text(text)
    return path


def step_line(text, n):
    """Line number of the n-th [[step]] header (from 1)."""
    return [i for i, t in enumerate(text.splitlines(), 1) if t == "[[step]]"][n - 1]


def line_of(text, needle):
    """Line number of the [[step]] header just above the first line that is `needle`."""
    lines = text.splitlines()
    i = lines.index(needle)
    while lines[i].strip() != "[[step]]":
        i -= 1
    return i + 1


def quiet_run(path, workdir):
    return scenario.Run(path, workdir, echo=lambda s: None).run()


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory):
    """Each example scenario, run once for the tests below."""
    return {p: quiet_run(p, tmp_path_factory.mktemp(p.stem)) for p in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_scenario_passes(path, example_runs):
    run = example_runs[path]
    assert run.checks, "the scenario checked nothing"
    problems = [c.failure or c.error for c in run.checks if c.failure or c.error]
    assert not problems, "\n".join(problems)


def test_examples_cover_every_reason_code(example_runs):
    # the reasons the reader gave in checks that passed, not what the files' text mentions
    seen = {c.reason for run in example_runs.values() for c in run.checks
            if c.reason and not (c.failure or c.error)}
    every = {m[0] for m in reasons.MESSAGES.values()}
    assert every <= seen, "no example expects: %s" % ", ".join(sorted(every - seen))


def test_wrong_fare_fails_and_names_the_tap(tmp_path):
    src = (ROOT / "scenarios" / "fares-and-transfers.toml").read_text()
    # Ana's second paid ride must be 2.50; claim it was free.
    bad = src.replace('at = "+46m"\ntap = "ana"\nexpect = "OK"\nfare = 250',
                      'at = "+46m"\ntap = "ana"\nexpect = "OK"\nfare = 0')
    assert bad != src
    path = write(tmp_path / "wrong.toml", bad)
    line = line_of(bad, 'at = "+46m"')
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(FARE + [str(path), "--junit", str(junit)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert "%s:%d: tap ana via qr: expected fare 0, got 250" % (path, line) in proc.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("name") == "Fares and transfers"
    assert suite.get("failures") == "1"
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [
        ("wrong", "line %d: tap ana via qr" % line)]
    assert failed[0].find("system-out").text == "got OK 250"


def test_wrong_reason_fails_names_the_tap_and_the_run_goes_on(tmp_path):
    text = HEAD + """
[[step]]
sync = { denylist = true }
[[step]]
at = "+10s"
tap = "a"
expect = "OK"
[[step]]
at = "+1m"
tap = "a"
expect = "OK"                # within the pass-back window: the reader refuses
[[step]]
at = "+10m"
tap = "a"
expect = "OK"
"""
    path = write(tmp_path / "reason.toml", text)
    run = quiet_run(path, tmp_path / "run")
    line = line_of(text, 'at = "+1m"')
    assert [c.failure for c in run.checks if c.failure] == [
        "%s:%d: tap a via qr: expected OK, got PASSBACK" % (path, line)]
    assert [c.reason for c in run.checks] == [None, "OK", "PASSBACK", "OK"]
    assert not run.errors


HEAD_LINES = HEAD.count("\n")


# (what follows HEAD, the line of the problem within it, what the error says)
@pytest.mark.parametrize("steps, line, message", [
    ('[[step]]\nat = "07:10"\nsync = {}\n[[step]]\nat = "06:00"\ntap = "a"\nexpect = "OK"\n',
     4, r"time goes backwards: at = '06:00' is 06:00:00, the step before was at 07:10:00"),
    ('[[step]]\nsync = {}\n[[step]]\nat = "-5m"\ntap = "a"\nexpect = "OK"\n',
     3, r"time goes backwards: at = '-5m'"),
    ('[[step]]\ntap = "a"\n',
     1, r"the tap has no expect"),
    ('[[rider]]\nname = "b"\naccount = 2\nmax_ride = 3\n[[step]]\ntap = "a"\nexpect = "OK"\n',
     1, r"\[\[rider\]\]: unknown key\(s\) max_ride"),
    ('[[rider]]\nname = "b"\naccount = 2\nproduct = "child"\n'
     '[[step]]\ntap = "a"\nexpect = "OK"\n',
     1, r"\[\[rider\]\] b: product 'child' is not a product .*"
        r"\(products: adult, free, senior, student;"),
    ('[[step]]\ntap = "a"\nrepeat = "3"\nexpect = "OK"\n',
     1, r"repeat: '3' is not a whole number"),
    ('[[step]]\ntap = "a"\nvia = "NFC"\nexpect = "OK"\n',
     1, r'via must be "qr" or "nfc"'),
    ('[[step]]\ntap = "a"\nvia = "nfc"\ncode_age = "5s"\nexpect = "OK"\n',
     1, r"code_age does not apply to via = 'nfc'"),
    ('[[step]]\ntap = "a"\nreuse = true\nexpect = "OK"\n',
     1, r"reuse = true, but a's phone has shown no QR code"),
    ('[[step]]\nfault = "flash"\n',
     1, r"fault = 'flash': the simulated board has no such fault \(log_flash, crash\)"),
    ('[[step]]\npower_cut = true\nexpect = "OK"\n',
     1, r"expect does not go with power_cut"),
    ('[[step]]\nsync = { deny_acounts = [1] }\n',
     1, r"sync: unknown key\(s\) deny_acounts"),
], ids=["clock-back", "negative-at", "tap-without-expect", "rider-key", "product", "repeat",
        "via", "nfc-code-age", "reuse-nothing", "fault", "power-cut-expect", "sync-key"])
def test_file_problems_are_refused_at_load_with_their_line(tmp_path, steps, line, message):
    path = write(tmp_path / "bad.toml", HEAD + steps)
    with pytest.raises(scenario.ScenarioError,
                       match=r"bad.toml:%d: %s" % (HEAD_LINES + line, message)):
        scenario.load(path)


def test_bad_reason_name_is_an_error_with_its_line(tmp_path):
    path = write(tmp_path / "typo.toml", HEAD + '[[step]]\ntap = "a"\nexpect = "GREEN"\n')
    with pytest.raises(scenario.ScenarioError,
                       match=r"typo.toml:%d: expect = 'GREEN'" % (HEAD_LINES + 1)):
        scenario.load(path)


def test_an_error_inside_a_step_names_the_step_and_keeps_the_checks_before(tmp_path,
                                                                          monkeypatch):
    text = HEAD + """
[[step]]
sync = { denylist = true }
[[step]]
at = "+10s"
tap = "a"
expect = "OK"
[[step]]
at = "+20m"
tap = "a"
via = "nfc"
expect = "OK"
[[step]]
at = "+20m"
tap = "a"
expect = "OK"
"""

    def silent_reader(self, *args, **kwargs):
        raise TimeoutError("reader sent no 'tap' event in time")

    monkeypatch.setattr(simbus.SimBus, "tap_nfc", silent_reader)
    path = write(tmp_path / "silent.toml", text)
    run = quiet_run(path, tmp_path / "run")
    line = line_of(text, 'via = "nfc"')
    assert [(c.name, bool(c.error)) for c in run.checks] == [
        ("line %d: sync" % step_line(text, 1), False),
        ("line %d: tap a via qr" % step_line(text, 2), False),
        ("line %d: tap a via nfc" % line, True)]  # the last step is not run
    assert run.errors[0].error == ("%s:%d: tap a via nfc: TimeoutError: reader sent no 'tap' "
                                   "event in time" % (path, line))


def test_a_reason_the_reader_gave_with_the_wrong_outcome_fails(tmp_path, monkeypatch):
    # OK and ALREADY_VALIDATED let the rider in, every other reason refuses
    monkeypatch.setattr(simbus.SimBus, "show_qr", lambda self, text: simbus.TapOutcome(
        {"ev": "tap", "name": "OK", "accepted": False}))
    text = HEAD + '[[step]]\ntap = "a"\nexpect = "OK"\n'
    path = write(tmp_path / "outcome.toml", text)
    run = quiet_run(path, tmp_path / "run")
    assert [c.failure for c in run.checks] == [
        "%s:%d: tap a via qr: got OK, but the reader refused the rider (OK lets the rider in)"
        % (path, step_line(text, 1))]


def test_multi_file_run_writes_junit_for_every_file_with_stable_names(tmp_path):
    steps = """
[[step]]
sync = { denylist = true }
[[step]]
at = "+10s"
tap = "a"
expect = "OK"
[[step]]
at = "+1m"
tap = "a"
expect = "%s"
"""
    good = write(tmp_path / "good.toml", HEAD + steps % "PASSBACK")
    broken = write(tmp_path / "broken.toml", HEAD + '[[step]]\ntap = "a"\nrepeat = "3"\n'
                   'expect = "OK"\n')
    broken_line = HEAD_LINES + 1
    wrong = write(tmp_path / "wrong.toml", HEAD + steps % "OK")
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(FARE + [str(good), str(broken), str(wrong), "--junit", str(junit)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "%s:%d: repeat: '3' is not a whole number" % (broken, broken_line) in proc.stdout
    assert proc.stdout.splitlines()[-1] == "5 passed, 1 failed, 1 errors"
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["Small", "broken", "Small"]

    def cases(suite):
        return [(c.get("classname"), c.get("name"), [x.tag for x in c]) for c in suite]

    text = HEAD + steps
    names = ["line %d: sync" % step_line(text, 1), "line %d: tap a via qr" % step_line(text, 2),
             "line %d: tap a via qr" % step_line(text, 3)]
    assert cases(suites[0]) == [("good", n, ["system-out"]) for n in names]
    assert cases(suites[1]) == [("broken", "load", ["error"])]
    assert cases(suites[2]) == [("wrong", n, ["system-out"]) for n in names[:2]] + [
        ("wrong", names[2], ["failure", "system-out"])]  # same names as the passing run
    assert suites[1].find("testcase/error").get("message").startswith(
        "%s:%d:" % (broken, broken_line))


def test_clock_steps_notes_a_clock_left_alone_and_a_crash(tmp_path):
    text = HEAD + """
[[step]]
sync = { set_time = false, denylist = true }
note = "the depot does not set the clock"
[[step]]
at = "+10s"
tap = "a"
expect = "SYNC_REQUIRED"
[[step]]
sync = {}
[[step]]
at = "07:30"
note = "half an hour later"
[[step]]
fault = "crash"
[[step]]
tap = "a"
expect = "OK"
fare = 100
"""
    out = []
    path = write(tmp_path / "clock.toml", text)
    run = scenario.Run(path, tmp_path / "run", echo=out.append).run()
    assert not (run.failures or run.errors), "\n".join(out)
    lines = [step_line(text, n) for n in range(1, 7)]
    assert [c.name for c in run.checks] == [
        "line %d: sync" % lines[0], "line %d: tap a via qr" % lines[1],
        "line %d: sync" % lines[2], "line %d: fault crash" % lines[4],
        "line %d: tap a via qr" % lines[5]]
    assert out[0] == "scenario Small (%s)" % path
    assert ("  ok    %4d  07:00:00  sync -> 0 new records  -- the depot does not set the clock"
            % lines[0]) in out
    assert "        %4d  07:30:00  clock  -- half an hour later" % lines[3] in out
