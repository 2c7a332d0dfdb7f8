"""Tap scenarios against the real firmware on the simulated board (fare scenario)."""
import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from host_tools import scenario
from host_tools.fw import validator  # noqa: F401
from validator import reasons

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "scenarios").glob("*.toml"))
FARE = [sys.executable, "-m", "host_tools.cli", "scenario"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_scenario_passes(path, tmp_path):
    run = scenario.Run(path, tmp_path, echo=lambda s: None).run()
    assert run.checks, "the scenario checked nothing"
    assert not run.failures, "\n".join(f[2] for f in run.failures)


def test_examples_cover_every_reason_code():
    seen = set()
    for path in EXAMPLES:
        seen |= set(re.findall(r'expect\s*=\s*"(\w+)"', path.read_text()))
    every = {m[0] for m in reasons.MESSAGES.values()}
    assert every <= seen, "no example expects: %s" % ", ".join(sorted(every - seen))


def test_wrong_expectation_fails_and_names_the_tap(tmp_path):
    src = (ROOT / "scenarios" / "fares-and-transfers.toml").read_text()
    # Ana's second paid ride must be 2.50; claim it was free.
    bad = src.replace('at = "+46m"\ntap = "ana"\nexpect = "OK"\nfare = 250',
                      'at = "+46m"\ntap = "ana"\nexpect = "OK"\nfare = 0')
    assert bad != src
    path = tmp_path / "wrong.toml"
    path.write_text(bad)
    line = bad.splitlines().index('at = "+46m"')  # the [[step]] header is the line above
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(FARE + [str(path), "--junit", str(junit)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert "%s:%d: tap ana via qr: expected fare 0, got 250" % (path, line) in proc.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "1"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["%s:%d tap ana via qr -> OK 250" % (path, line)]


def test_bad_file_is_an_error_with_its_line(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('start = 2026-11-23T07:00:00+08:00\n[[rider]]\nname = "a"\naccount = 1\n'
                    '[[step]]\ntap = "a"\nexpect = "GREEN"\n')
    with pytest.raises(scenario.ScenarioError, match=r"typo.toml:5: expect = 'GREEN'"):
        scenario.load(path)
