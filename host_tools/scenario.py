"""Tap scenarios: TOML files that describe a reader, its riders and a timeline of taps, clock
moves, power cuts, depot syncs and deny-list pushes, each tap with the decision it must get.
`fare scenario FILE...` runs them against the real firmware on the simulated board, prints a
report, writes JUnit XML (--junit) and exits non-zero when an expectation fails, naming the
file and line of the step. The format is documented in docs/scenarios.md."""
import re
import sys
import time
import tomllib
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import cbor2

from host_tools import config_build, simbus, simreader, tokenformat
from host_tools.fw import validator  # noqa: F401
from validator import base45, reasons, tokens

REASON_NAMES = {m[0] for m in reasons.MESSAGES.values()}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TAMPER = {"credential": 0, "issuer_sig": 1, "dynamic": 2, "rider_sig": 3}
STEP_KEYS = {"at", "tap", "via", "code_age", "reuse", "counter", "leave", "scan", "card",
             "tamper", "expect", "fare", "repeat", "every", "power_cut", "sync", "fault", "note"}


class ScenarioError(ValueError):
    """A scenario file that cannot be run: names the file and line."""


class StepFailure:
    def __init__(self, where, what, message):
        self.where = where
        self.what = what
        self.message = message


class ForeignCard:
    """An ISO 14443-4 card without our application (a bank card, say)."""
    uid = b"\x04\x11\x22\x33"

    def apdu(self, cmd):
        return b"\x6a\x82"  # SELECT: file or application not found


# -- parsing ------------------------------------------------------------------------------------

def duration(v, where):
    if isinstance(v, int):
        return v
    m = re.fullmatch(r"([+-]?\d+)([smhd]?)", str(v).strip())
    if not m:
        raise ScenarioError("%s: %r is not a duration (like 90, \"90s\", \"10m\", \"-1d\")"
                            % (where, v))
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def step_lines(text):
    """Line numbers of the [[step]] headers, in order."""
    return [i for i, line in enumerate(text.splitlines(), 1)
            if re.match(r"\s*\[\[\s*step\s*\]\]", line)]


def load(path):
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError("%s: %s" % (path, e)) from None
    lines = step_lines(text)
    steps = doc.get("step", [])
    if len(lines) != len(steps):
        raise ScenarioError("%s: write each step as its own [[step]] table" % path)
    start = doc.get("start")
    if not isinstance(start, datetime) or start.tzinfo is None:
        raise ScenarioError("%s: `start` must be a date-time with its offset, like "
                            "2026-11-23T07:00:00+08:00" % path)
    for i, step in enumerate(steps):
        unknown = set(step) - STEP_KEYS
        if unknown:
            raise ScenarioError("%s:%d: unknown step key(s) %s" % (path, lines[i],
                                                                  ", ".join(sorted(unknown))))
        exp = step.get("expect")
        if exp is not None and exp not in REASON_NAMES:
            raise ScenarioError("%s:%d: expect = %r is not a reason code (%s)"
                                % (path, lines[i], exp, ", ".join(sorted(REASON_NAMES))))
    return doc, lines


# -- running ------------------------------------------------------------------------------------

class Run:
    def __init__(self, path, workdir, echo=print):
        self.path = Path(path)
        self.doc, self.lines = load(path)
        self.workdir = Path(workdir)
        self.echo = echo
        self.checks = []      # (where, what, failure message or None, seconds)
        self.t0 = int(self.doc["start"].timestamp())

    def where(self, i):
        return "%s:%d" % (self.path, self.lines[i])

    def build(self):
        d = self.doc
        reader = d.get("reader", {})
        cfg = reader.get("config", {})
        try:
            config_build.settings(cfg)
        except config_build.SourceError as e:
            raise ScenarioError("%s: [reader.config]: %s" % (self.path, e)) from None
        self.products = dict(config_build.DEFAULT_PRODUCTS)
        self.products.update(cfg.get("products", {}))
        self.bus = simbus.SimBus(self.workdir, self.t0, reader_id=reader.get("id", 1001),
                                 config=cfg, log_blocks=reader.get("log_blocks"))
        w = self.bus.world
        issuers = d.get("issuer") or [{"key_id": 1}]
        for iss in issuers:
            vf, vu = [self.t0 + duration(v, "%s: [[issuer]] valid" % self.path)
                      for v in iss.get("valid", ["-30d", "+365d"])]
            w.add_issuer(iss["key_id"], vf, vu, iss.get("status", "active"),
                         iss.get("in_keyring", True))
        for r in d.get("rider", []):
            vf, vu = [self.t0 + duration(v, "%s: rider %s valid" % (self.path, r["name"]))
                      for v in r.get("valid", ["-1d", "+30d"])]
            product = r.get("product", "adult")
            product = self.products[product] if isinstance(product, str) else product
            w.add_rider(r["name"], r["account"], product=product, valid_from=vf, valid_until=vu,
                        max_rides=r.get("max_rides", 10), max_amount=r.get("max_amount", 5000),
                        key_id=r.get("issuer"), forged=r.get("forged", False))

    def run(self):
        self.build()
        self.bus.start()
        try:
            now = self.t0
            for i, step in enumerate(self.doc.get("step", [])):
                if "at" in step:
                    now = self._time(step["at"], now, i)
                self.bus.at(now)
                now = self._step(i, step, now)
        finally:
            self.bus.close()
        return self

    def _time(self, at, now, i):
        if isinstance(at, str) and at[:1] in "+-":
            return now + duration(at, self.where(i))
        if isinstance(at, str) and re.fullmatch(r"\d\d:\d\d(:\d\d)?", at):
            day = self.doc["start"]
            hh, mm, *ss = (int(x) for x in at.split(":"))
            return int(day.replace(hour=hh, minute=mm, second=ss[0] if ss else 0).timestamp())
        return self.t0 + duration(at, self.where(i))

    def _step(self, i, step, now):
        where = self.where(i)
        if step.get("power_cut"):
            self.bus.power_cut()
            self._check(where, "power cut", None)
            return now
        if "fault" in step:
            self.bus.reader.command("fault", "fault", what=step["fault"])
            self._check(where, "fault %s" % step["fault"], None)
            return now
        if "sync" in step:
            return self._sync(where, step["sync"], now)
        repeat = step.get("repeat", 1)
        every = duration(step.get("every", 0), where)
        for k in range(repeat):
            if k:
                now += every
                self.bus.at(now)
            self._tap(where, step, k)
        return now

    def _sync(self, where, s, now):
        s = s if isinstance(s, dict) else {}
        w = self.bus.world
        push_deny = bool(s.get("deny_accounts") or s.get("deny_riders") or s.get("denylist"))
        if push_deny:
            for name in s.get("deny_riders", []):
                if name not in w.riders:
                    raise ScenarioError("%s: deny_riders names no rider %r" % (where, name))
            w.deny(accounts=s.get("deny_accounts", []), riders=s.get("deny_riders", []))
        res = self.bus.sync(push_denylist=push_deny, push_keyring=s.get("keyring", False),
                            push_config=s.get("config"), set_time=s.get("set_time", True))
        failure = None
        if not res.ok:
            failure = "%s: sync failed: %s %s" % (where, res.status, res.message)
        else:
            refused = [(k, r) for k, r in res.pushes if isinstance(r, dict) and r.get("reason")]
            if refused:
                failure = "%s: the reader refused %s" % (where, refused)
        exp = s.get("expect_records")
        if failure is None and exp is not None and res.records_new != exp:
            failure = "%s: sync brought %d new records, expected %d" % (where, res.records_new,
                                                                       exp)
        self._check(where, "sync (%d new records)" % res.records_new, failure)
        return now

    def _tap(self, where, step, k):
        bus = self.bus
        w = bus.world
        what = None
        t = time.monotonic()
        if "scan" in step:
            what = "scan %r" % step["scan"][:24]
            out = bus.show_qr(step["scan"])
        elif step.get("card") == "foreign":
            what = "foreign card"
            out = bus.tap_nfc(card=ForeignCard())
        else:
            name = step.get("tap")
            if name not in w.riders:
                raise ScenarioError("%s: tap names no rider %r" % (where, name))
            rider = w.riders[name]
            via = step.get("via", "qr")
            what = "tap %s via %s" % (name, via)
            if via == "nfc":
                out = bus.tap_nfc(rider, leave_after=1 if step.get("leave") else None)
            elif "tamper" in step:
                code = rider.wallet.ride_code(bus.now - duration(step.get("code_age", 0), where),
                                              step.get("counter"))
                out = bus.show_qr(tamper(code, step["tamper"], where))
            else:
                out = bus.tap_qr(rider, code_age=duration(step.get("code_age", 0), where),
                                 counter=step.get("counter"), reuse=step.get("reuse", False))
        if repeat_tag := (" #%d" % (k + 1) if step.get("repeat", 1) > 1 else ""):
            what += repeat_tag
        failure = None
        exp = step.get("expect")
        if exp is not None and out.reason != exp:
            failure = "%s: %s: expected %s, got %s" % (where, what, exp, out.reason)
        elif "fare" in step and out.fare != step["fare"]:
            failure = "%s: %s: expected fare %d, got %d" % (where, what, step["fare"], out.fare)
        got = "%s%s" % (out.reason, " %d" % out.fare if out.accepted and out.fare else "")
        self._check(where, "%s -> %s" % (what, got), failure, time.monotonic() - t)

    def _check(self, where, what, failure, secs=0.0):
        self.checks.append((where, what, failure, secs))
        clock = time.strftime("%H:%M:%S", time.gmtime(self.bus.now + self._offset()))
        mark = "FAIL" if failure else "ok"
        self.echo("  %-4s %s  %s  %s" % (mark, where.split(":")[-1].rjust(4), clock, what))
        if failure:
            self.echo("       " + failure)

    def _offset(self):
        off = self.doc["start"].utcoffset()
        return int(off.total_seconds()) if off else 0

    @property
    def failures(self):
        return [c for c in self.checks if c[2]]


def tamper(code, part, where):
    """Flip one bit in a part of a QR ride code (the code stays well-formed CBOR)."""
    if part not in TAMPER:
        raise ScenarioError("%s: tamper must be one of %s" % (where, ", ".join(TAMPER)))
    items = cbor2.loads(bytes(base45.decode(code[len(tokens.QR_PREFIX):])))
    b = bytearray(items[TAMPER[part]])
    b[-1] ^= 0x01
    items[TAMPER[part]] = bytes(b)
    return tokenformat.qr_text(cbor2.dumps(items))


# -- reports ------------------------------------------------------------------------------------

def junit(runs, path):
    suites = ET.Element("testsuites")
    for run, error in runs:
        fails = len(run.failures) if run else 0
        checks = run.checks if run else []
        s = ET.SubElement(suites, "testsuite", name=str(run.path if run else error[0]),
                          tests=str(max(len(checks), 1)), failures=str(fails),
                          errors="1" if error else "0")
        for where, what, failure, secs in checks:
            c = ET.SubElement(s, "testcase", classname=Path(where.split(":")[0]).stem,
                              name="%s %s" % (where, what), time="%.3f" % secs)
            if failure:
                ET.SubElement(c, "failure", message=failure).text = failure
        if error:
            c = ET.SubElement(s, "testcase", classname="scenario", name=error[0])
            ET.SubElement(c, "error", message=error[1]).text = error[1]
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def cmd_scenario(args):
    import tempfile
    results = []
    total_fail = 0
    with tempfile.TemporaryDirectory(prefix="fare-scenario-") as tmp:
        for i, f in enumerate(args.files):
            print("scenario %s" % f)
            try:
                run = Run(f, Path(tmp) / str(i)).run()
                results.append((run, None))
                total_fail += len(run.failures)
            except (ScenarioError, OSError, KeyError, simreader.ReaderDied) as e:
                msg = str(e) if not isinstance(e, KeyError) else "%s: missing key %s" % (f, e)
                print("  ERROR %s" % msg)
                results.append((None, (str(f), msg)))
                total_fail += 1
    if args.junit:
        junit(results, args.junit)
    passed = sum(1 for r, _ in results if r for c in r.checks if not c[2])
    print("%d passed, %d failed" % (passed, total_fail))
    return 1 if total_fail else 0


def add_commands(sub):
    p = sub.add_parser("scenario", help="run tap scenario files against the simulated reader",
                       description=__doc__)
    p.add_argument("files", nargs="+", help="scenario TOML files")
    p.add_argument("--junit", help="write JUnit XML for CI to this file")
    p.set_defaults(func=cmd_scenario)
