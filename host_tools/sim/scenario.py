"""Tap scenarios: TOML files that describe a reader, its riders and a timeline of taps, clock
moves, power cuts, depot syncs and deny-list pushes, each tap with the decision it must get.
`fare scenario FILE...` runs them against the real firmware on the simulated board, prints a
report, writes JUnit XML (--junit) and exits non-zero when an expectation fails or a step cannot
be run, naming the file and line of the step. The format is documented in docs/scenarios.md."""
import re
import time
import tomllib
import traceback
from datetime import datetime, time as time_of_day
from pathlib import Path
from xml.etree import ElementTree as ET

import cbor2

from host_tools.issuing import config_build
from host_tools.sim import simbus, simreader
from host_tools.common import tokenformat
from host_tools.common.clierrors import UserError, check_output, read_bytes, read_text
from host_tools.common.fw import validator  # noqa: F401
from validator import base45, reasons, tokens

REASON_NAMES = {m[0] for m in reasons.MESSAGES.values()}
ACCEPTED_NAMES = {reasons.name(code) for code in reasons.ACCEPTED}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TAMPER = {"credential": 0, "issuer_sig": 1, "dynamic": 2, "rider_sig": 3}
CARDS = ("foreign",)
# What the unix_sim board's bench can break (boards/unix_sim/board.py, Board._command).
FAULTS = ("log_flash", "crash")

TOP_KEYS = {"name", "start", "reader", "issuer", "rider", "step"}
READER_KEYS = {"id", "log_blocks", "config"}
ISSUER_KEYS = {"key_id", "valid", "status", "in_keyring"}
RIDER_KEYS = {"name", "account", "product", "issuer", "valid", "max_rides", "max_amount",
              "forged"}
SYNC_KEYS = {"set_time", "denylist", "deny_accounts", "deny_riders", "keyring", "config",
             "expect_records"}
# Each step does one thing; the keys each kind of step may have besides `at` and `note`.
STEP_KINDS = {
    "tap": {"tap", "via", "code_age", "reuse", "counter", "tamper", "leave", "repeat", "every",
            "expect", "fare"},
    "scan": {"scan", "repeat", "every", "expect", "fare"},
    "card": {"card", "repeat", "every", "expect", "fare"},
    "sync": {"sync"},
    "power_cut": {"power_cut"},
    "fault": {"fault"},
}
STEP_KEYS = set().union(*STEP_KINDS.values()) | {"at", "note"}
QR_ONLY = ("code_age", "reuse", "counter", "tamper")
NFC_ONLY = ("leave",)


class ScenarioError(ValueError):
    """A scenario file that cannot be run: names the file and line."""


class ForeignCard:
    """An ISO 14443-4 card without our application (a bank card, say)."""
    uid = b"\x04\x11\x22\x33"

    def apdu(self, cmd):
        return b"\x6a\x82"  # SELECT: file or application not found


# -- values -------------------------------------------------------------------------------------

def duration(v, where):
    """Seconds from 90, "90s", "10m", "-1d"; `where` names the file, line and key."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    m = re.fullmatch(r"([+-]?\d+)([smhd]?)", v.strip()) if isinstance(v, str) else None
    if not m:
        raise ScenarioError("%s: %r is not a duration (like 90, \"90s\", \"10m\", \"-1d\")"
                            % (where, v))
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def whole(v, where, minimum=0):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ScenarioError("%s: %r is not a whole number" % (where, v))
    if v < minimum:
        raise ScenarioError("%s: %d is below %d" % (where, v, minimum))
    return v


def flag(v, where):
    if not isinstance(v, bool):
        raise ScenarioError("%s: %r is not true or false" % (where, v))
    return v


def string(v, where):
    if not isinstance(v, str):
        raise ScenarioError("%s: %r is not a string" % (where, v))
    return v


def table(v, where):
    if not isinstance(v, dict):
        raise ScenarioError("%s: must be a table (like { key = value })" % where)
    return v


def no_unknown_keys(d, known, where):
    unknown = set(d) - known
    if unknown:
        raise ScenarioError("%s: unknown key(s) %s (known: %s)"
                            % (where, ", ".join(sorted(unknown)), ", ".join(sorted(known))))


def check_config(cfg, where):
    """The reader's config source, checked by the builder the depot uses (ranges included)."""
    try:
        config_build.body(table(cfg, where))
    except config_build.SourceError as e:
        raise ScenarioError("%s: %s" % (where, e)) from None


# -- loading ------------------------------------------------------------------------------------

def header_lines(text, name):
    """Line numbers of the [[name]] headers, in order."""
    pattern = re.compile(r"\s*\[\[\s*%s\s*\]\]" % re.escape(name))
    return [i for i, line in enumerate(text.splitlines(), 1) if pattern.match(line)]


def header_line(text, dotted):
    """Line number of the first [dotted] or [dotted.sub] header, or None."""
    name = r"\s*\.\s*".join(re.escape(part) for part in dotted.split("."))
    pattern = re.compile(r"\s*\[\s*%s\s*[\].]" % name)
    return next((i for i, line in enumerate(text.splitlines(), 1) if pattern.match(line)), None)


class Step:
    """One [[step]], checked and placed on the timeline: `time` is when it (its first tap, for
    a repeated tap) happens."""

    def __init__(self, line, where, kind, data, when):
        self.line = line
        self.where = where
        self.kind = kind
        self.data = data
        self.time = when

    @property
    def repeat(self):
        return self.data.get("repeat", 1)

    def action(self, k=0):
        """What the step does, without what came of it (a stable test name)."""
        d = self.data
        if self.kind == "tap":
            s = "tap %s via %s" % (d["tap"], d.get("via", "qr"))
        elif self.kind == "scan":
            s = "scan %r" % d["scan"][:24]
        elif self.kind == "card":
            s = "%s card" % d["card"]
        elif self.kind == "fault":
            s = "fault %s" % d["fault"]
        else:
            s = self.kind.replace("_", " ")
        return s + (" #%d" % (k + 1) if self.repeat > 1 else "")


class Scenario:
    """A scenario file, read and checked: every problem this can see before the reader runs is
    a ScenarioError naming the file and line."""

    def __init__(self, path):
        self.path = Path(path)
        src = self.path.read_text(encoding="utf-8")
        try:
            doc = tomllib.loads(src)
        except tomllib.TOMLDecodeError as e:
            raise ScenarioError("%s: %s" % (self.path, e)) from None
        no_unknown_keys(doc, TOP_KEYS, str(self.path))
        self.name = string(doc.get("name", self.path.stem), "%s: name" % self.path)
        self.start = doc.get("start")
        if not isinstance(self.start, datetime) or self.start.tzinfo is None:
            raise ScenarioError("%s: `start` must be a date-time with its offset, like "
                                "2026-11-23T07:00:00+08:00" % self.path)
        self.t0 = int(self.start.timestamp())
        self._reader(doc.get("reader", {}), src)
        self.issuers = []
        for d, line in self._tables(doc, src, "issuer") or [({"key_id": 1}, None)]:
            self.issuers.append(self._issuer(d, self._where(line)))
        self.riders = {}
        for d, line in self._tables(doc, src, "rider"):
            self._rider(d, self._where(line))
        self.steps = self._timeline(self._tables(doc, src, "step"))

    def clock(self, t):
        """Local time of day at the start's offset; "+Nd" on a later day."""
        d = datetime.fromtimestamp(t, self.start.tzinfo)
        days = (d.date() - self.start.date()).days
        return d.strftime("%H:%M:%S") + (" %+dd" % days if days else "")

    def _tables(self, doc, src, name):
        """[(table, line)] of an array of tables written as [[name]] headers."""
        items = doc.get(name, [])
        lines = header_lines(src, name)
        if not isinstance(items, list) or len(lines) != len(items):
            raise ScenarioError("%s: write each %s as its own [[%s]] table"
                                % (self.path, name, name))
        return [(table(d, self._where(n)), n) for d, n in zip(items, lines)]

    def _where(self, line):
        return "%s:%d" % (self.path, line) if line else str(self.path)

    def _reader(self, reader, src):
        where = self._where(header_line(src, "reader"))
        no_unknown_keys(table(reader, where + ": [reader]"), READER_KEYS, where + ": [reader]")
        self.reader_id = whole(reader.get("id", 1001), where + ": [reader] id")
        self.log_blocks = reader.get("log_blocks")
        if self.log_blocks is not None:
            whole(self.log_blocks, where + ": [reader] log_blocks", minimum=1)
        self.config = reader.get("config", {})
        cfg_where = self._where(header_line(src, "reader.config") or header_line(src, "reader"))
        check_config(self.config, cfg_where + ": [reader.config]")
        self.products = dict(config_build.DEFAULT_PRODUCTS)
        self.products.update(self.config.get("products", {}))

    def _valid(self, d, default, where):
        v = d.get("valid", default)
        if not isinstance(v, list) or len(v) != 2:
            raise ScenarioError("%s: valid must be [from, until], like [\"-1d\", \"+30d\"]"
                                % where)
        return [self.t0 + duration(x, where + ": valid") for x in v]

    def _issuer(self, d, where):
        where += ": [[issuer]]"
        no_unknown_keys(d, ISSUER_KEYS, where)
        if "key_id" not in d:
            raise ScenarioError("%s: key_id is missing" % where)
        key_id = whole(d["key_id"], where + " key_id")
        if any(i["key_id"] == key_id for i in self.issuers):
            raise ScenarioError("%s: key id %d is given twice" % (where, key_id))
        status = d.get("status", "active")
        if status not in ("active", "retired"):
            raise ScenarioError("%s: status must be \"active\" or \"retired\", not %r"
                                % (where, status))
        valid_from, valid_until = self._valid(d, ["-30d", "+365d"], where)
        return {"key_id": key_id, "valid_from": valid_from, "valid_until": valid_until,
                "status": status,
                "in_keyring": flag(d.get("in_keyring", True), where + " in_keyring")}

    def _rider(self, d, where):
        where += ": [[rider]]"
        no_unknown_keys(d, RIDER_KEYS, where)
        for key in ("name", "account"):
            if key not in d:
                raise ScenarioError("%s: %s is missing" % (where, key))
        name = string(d["name"], where + " name")
        where += " %s" % name
        if name in self.riders:
            raise ScenarioError("%s: a rider of that name is already given" % where)
        product = d.get("product", "adult")
        if isinstance(product, str):
            if product not in self.products:
                raise ScenarioError("%s: product %r is not a product of this reader's "
                                    "configuration (products: %s; or give a product number)"
                                    % (where, product, ", ".join(sorted(self.products))))
            product = self.products[product]
        else:
            whole(product, where + " product")
        key_ids = [i["key_id"] for i in self.issuers]
        issuer = d.get("issuer", min(key_ids))
        if issuer not in key_ids:
            raise ScenarioError("%s: issuer %r is not an [[issuer]] key id (%s)"
                                % (where, issuer, ", ".join(map(str, key_ids))))
        valid_from, valid_until = self._valid(d, ["-1d", "+30d"], where)
        self.riders[name] = {
            "name": name, "account": whole(d["account"], where + " account"),
            "product": product, "valid_from": valid_from, "valid_until": valid_until,
            "max_rides": whole(d.get("max_rides", 10), where + " max_rides"),
            "max_amount": whole(d.get("max_amount", 5000), where + " max_amount"),
            "key_id": issuer, "forged": flag(d.get("forged", False), where + " forged")}

    # -- steps --------------------------------------------------------------------------------

    def _timeline(self, tables):
        if not tables:
            raise ScenarioError("%s: no [[step]]: the scenario would check nothing" % self.path)
        steps = []
        now = self.t0
        self._qr_shown = set()  # riders whose phone has shown a QR code (for `reuse`)
        for d, line in tables:
            where = self._where(line)
            kind = self._kind(d, where)
            if "note" in d:
                string(d["note"], where + ": note")
            if "at" in d:
                now = self._at(d["at"], now, where)
            step = Step(line, where, kind, d, now)
            getattr(self, "_check_" + kind)(d, where)
            if kind in ("tap", "scan", "card"):
                now = self._check_taps(d, where, now)
            steps.append(step)
        return steps

    def _kind(self, d, where):
        no_unknown_keys(d, STEP_KEYS, where + ": [[step]]")
        kinds = [k for k in STEP_KINDS if k in d]
        if len(kinds) > 1:
            raise ScenarioError("%s: a step does one thing, this one has %s (give each its own "
                                "[[step]])" % (where, " and ".join(kinds)))
        if not kinds:
            extra = sorted(set(d) - {"at", "note"})
            if extra:
                raise ScenarioError("%s: %s needs a tap, scan or card in the same step"
                                    % (where, ", ".join(extra)))
            if "at" not in d:
                raise ScenarioError("%s: the step does nothing: give it tap, scan, card, sync, "
                                    "power_cut, fault or at" % where)
            return "clock"
        extra = sorted(set(d) - STEP_KINDS[kinds[0]] - {"at", "note"})
        if extra:
            raise ScenarioError("%s: %s does not go with %s (give it its own [[step]])"
                                % (where, ", ".join(extra), kinds[0]))
        return kinds[0]

    def _at(self, at, now, where):
        if isinstance(at, time_of_day) and at.tzinfo is None:  # at = 07:30:00, unquoted
            at = at.strftime("%H:%M:%S")
        if isinstance(at, str) and at.strip()[:1] in ("+", "-"):
            t = now + duration(at, where + ": at")
        elif isinstance(at, str) and re.fullmatch(r"\d\d:\d\d(:\d\d)?", at.strip()):
            hh, mm, *ss = (int(x) for x in at.strip().split(":"))
            try:
                t = int(self.start.replace(hour=hh, minute=mm,
                                           second=ss[0] if ss else 0).timestamp())
            except ValueError:
                raise ScenarioError("%s: at = %r is not a time of day" % (where, at)) from None
        else:
            t = self.t0 + duration(at, where + ": at")
        if t < now:
            raise ScenarioError("%s: time goes backwards: at = %r is %s, the step before was at "
                                "%s (the simulated clock never runs backwards)"
                                % (where, at, self.clock(t), self.clock(now)))
        return t

    def _check_clock(self, d, where):
        pass

    def _check_power_cut(self, d, where):
        if d["power_cut"] is not True:
            raise ScenarioError("%s: power_cut = %r does nothing: write power_cut = true or "
                                "remove the step" % (where, d["power_cut"]))

    def _check_fault(self, d, where):
        if d["fault"] not in FAULTS:
            raise ScenarioError("%s: fault = %r: the simulated board has no such fault (%s)"
                                % (where, d["fault"], ", ".join(FAULTS)))

    def _check_sync(self, d, where):
        s = table(d["sync"], where + ": sync")
        where += ": sync"
        no_unknown_keys(s, SYNC_KEYS, where)
        for key in ("set_time", "denylist", "keyring"):
            if key in s:
                flag(s[key], "%s %s" % (where, key))
        for key in ("deny_accounts", "deny_riders"):
            if not isinstance(s.get(key, []), list):
                raise ScenarioError("%s %s: must be a list, like [1004]" % (where, key))
        for account in s.get("deny_accounts", []):
            whole(account, where + " deny_accounts")
        for name in s.get("deny_riders", []):
            if name not in self.riders:
                raise ScenarioError("%s deny_riders: no rider %r (riders: %s)"
                                    % (where, name, ", ".join(self.riders)))
        if "config" in s:
            check_config(s["config"], where + " config")
        if "expect_records" in s:
            whole(s["expect_records"], where + " expect_records")

    def _check_tap(self, d, where):
        name = d["tap"]
        if name not in self.riders:
            raise ScenarioError("%s: tap = %r: no such rider (riders: %s)"
                                % (where, name, ", ".join(self.riders)))
        via = d.get("via", "qr")
        if via not in ("qr", "nfc"):
            raise ScenarioError("%s: via must be \"qr\" or \"nfc\", not %r" % (where, via))
        wrong = [k for k in (QR_ONLY if via == "nfc" else NFC_ONLY) if k in d]
        if wrong:
            raise ScenarioError("%s: %s does not apply to via = %r" % (where, ", ".join(wrong),
                                                                      via))
        for key in ("reuse", "leave"):
            if key in d:
                flag(d[key], "%s: %s" % (where, key))
        if "code_age" in d:
            duration(d["code_age"], where + ": code_age")
        if "counter" in d:
            whole(d["counter"], where + ": counter")
        if "tamper" in d and d["tamper"] not in TAMPER:
            raise ScenarioError("%s: tamper must be one of %s" % (where, ", ".join(TAMPER)))
        if d.get("reuse"):
            # the previous code is shown as it was: nothing to make it with
            other = [k for k in ("code_age", "counter", "tamper") if k in d]
            if other:
                raise ScenarioError("%s: reuse shows the previous code again; %s does not apply"
                                    % (where, ", ".join(other)))
            if name not in self._qr_shown:
                raise ScenarioError("%s: reuse = true, but %s's phone has shown no QR code in "
                                    "an earlier step" % (where, name))
        elif via == "qr" and "tamper" not in d:
            self._qr_shown.add(name)

    def _check_scan(self, d, where):
        string(d["scan"], where + ": scan")

    def _check_card(self, d, where):
        if d["card"] not in CARDS:
            raise ScenarioError("%s: card must be one of %s, not %r"
                                % (where, ", ".join('"%s"' % c for c in CARDS), d["card"]))

    def _check_taps(self, d, where, now):
        """What every tap, scan or card step needs; returns the time of its last tap."""
        if "expect" not in d:
            raise ScenarioError("%s: the tap has no expect: give the reason code it must get "
                                "(%s)" % (where, ", ".join(sorted(REASON_NAMES))))
        if d["expect"] not in REASON_NAMES:
            raise ScenarioError("%s: expect = %r is not a reason code (%s)"
                                % (where, d["expect"], ", ".join(sorted(REASON_NAMES))))
        if "fare" in d:
            whole(d["fare"], where + ": fare")
        repeat = whole(d.get("repeat", 1), where + ": repeat", minimum=1)
        if "every" in d:
            if repeat == 1:
                raise ScenarioError("%s: every without repeat does nothing" % where)
            every = duration(d["every"], where + ": every")
            if every < 0:
                raise ScenarioError("%s: time goes backwards: every = %r" % (where, d["every"]))
            now += every * (repeat - 1)
        return now


def load(path):
    """The scenario in `path`, checked; raises ScenarioError naming file and line."""
    return Scenario(path)


# -- running ------------------------------------------------------------------------------------

class Check:
    """One result: a step (one tap of a repeated step) that passed, failed its expectation
    (`failure`) or could not be run (`error`, with `detail` for the JUnit file)."""

    def __init__(self, line, action, observed="", failure=None, error=None, detail=None,
                 secs=0.0, reason=None):
        self.line = line
        self.action = action
        self.observed = observed
        self.reason = reason  # the reason code a tap got
        self.failure = failure
        self.error = error
        self.detail = detail or error
        self.secs = secs

    @property
    def name(self):
        return "line %d: %s" % (self.line, self.action) if self.line else self.action


class Run:
    """One scenario file run on its own simulated bus. `run()` never raises for a problem of
    the file or the reader: it ends up in `checks` (an error ends the file's run)."""

    def __init__(self, path, workdir, echo=print):
        self.path = Path(path)
        self.workdir = Path(workdir)
        self.echo = echo
        self.scenario = None
        self.bus = None
        self.checks = []

    @property
    def name(self):
        return self.scenario.name if self.scenario else self.path.stem

    @property
    def failures(self):
        return [c for c in self.checks if c.failure]

    @property
    def errors(self):
        return [c for c in self.checks if c.error]

    def run(self):
        try:
            self.scenario = load(self.path)
        except Exception as e:  # noqa: BLE001 -- any problem of this file is reported with it
            self.echo("scenario %s" % self.path)
            self._error(None, "load", e)
            return self
        self.echo("scenario %s (%s)" % (self.name, self.path))
        try:
            try:
                self._start()
            except Exception as e:  # noqa: BLE001
                self._error(None, "start", e, "%s: cannot start the simulated reader" % self.path)
                return self
            steps = self.scenario.steps
            for i, step in enumerate(steps):
                if not self._step(step):
                    if i + 1 < len(steps):
                        self.echo("       the rest of %s is not run (from line %d)"
                                  % (self.path, steps[i + 1].line))
                    break
        finally:
            if self.bus is not None:
                try:
                    self.bus.close()
                except Exception as e:  # noqa: BLE001
                    self._error(None, "stop", e, "%s: cannot stop the simulated reader"
                                % self.path)
        return self

    def _start(self):
        sc = self.scenario
        self.bus = simbus.SimBus(self.workdir, sc.t0, reader_id=sc.reader_id, config=sc.config,
                                 log_blocks=sc.log_blocks)
        w = self.bus.world
        for i in sc.issuers:
            w.add_issuer(i["key_id"], i["valid_from"], i["valid_until"], i["status"],
                         i["in_keyring"])
        for r in sc.riders.values():
            w.add_rider(r["name"], r["account"], product=r["product"],
                        valid_from=r["valid_from"], valid_until=r["valid_until"],
                        max_rides=r["max_rides"], max_amount=r["max_amount"],
                        key_id=r["key_id"], forged=r["forged"])
        self.bus.start()

    def _step(self, step):
        """Run one step; False when it could not be run (the reader's state is unknown)."""
        k = 0
        self._began = time.monotonic()
        try:
            self.bus.at(step.time)
            if step.kind == "clock":
                self._say("", step.line, step.action(), step.data.get("note"))
            elif step.kind == "power_cut":
                self.bus.power_cut()
                self._check(step, step.action())
            elif step.kind == "fault":
                self._fault(step.data["fault"])
                self._check(step, step.action())
            elif step.kind == "sync":
                self._sync(step)
            else:
                every = duration(step.data.get("every", 0), step.where)
                for k in range(step.repeat):
                    if k:
                        self._began = time.monotonic()
                        self.bus.at(step.time + k * every)
                    self._tap(step, k)
        except Exception as e:  # noqa: BLE001 -- reported with the step's file and line
            self._error(step, step.action(k), e)
            return False
        return True

    def _fault(self, what):
        reader = self.bus.reader
        if what == "crash":
            # a bug strikes in the reader loop: it reports the crash and reboots from its flash
            reader.command("fault", "crash", what=what)
            reader.wait_event("ready")
        else:
            reader.command("fault", "fault", what=what)

    def _sync(self, step):
        s = step.data["sync"]
        w = self.bus.world
        push_deny = bool(s.get("deny_accounts") or s.get("deny_riders") or s.get("denylist"))
        if push_deny:
            w.deny(accounts=s.get("deny_accounts", []), riders=s.get("deny_riders", []))
        res = self.bus.sync(push_denylist=push_deny, push_keyring=s.get("keyring", False),
                            push_config=s.get("config"), set_time=s.get("set_time", True))
        observed = "%d new records" % res.records_new
        failure = None
        if not res.ok:
            # a push the reader refuses ends the sync too (SyncLink.push raises)
            observed = "sync failed: %s %s" % (res.status, res.message)
            failure = "%s: %s" % (step.where, observed)
        elif "expect_records" in s and res.records_new != s["expect_records"]:
            failure = "%s: sync brought %d new records, expected %d" % (
                step.where, res.records_new, s["expect_records"])
        self._check(step, step.action(), observed, failure)

    def _tap(self, step, k):
        bus = self.bus
        d = step.data
        action = step.action(k)
        if step.kind == "scan":
            out = bus.show_qr(d["scan"])
        elif step.kind == "card":
            out = bus.tap_nfc(card=ForeignCard())
        else:
            rider = bus.world.riders[d["tap"]]
            code_age = duration(d.get("code_age", 0), step.where)
            if d.get("via", "qr") == "nfc":
                out = bus.tap_nfc(rider, leave_after=1 if d.get("leave") else None)
            elif "tamper" in d:
                code = rider.wallet.ride_code(bus.now - code_age, d.get("counter"))
                out = bus.show_qr(tamper(code, d["tamper"], step.where))
            else:
                out = bus.tap_qr(rider, code_age=code_age, counter=d.get("counter"),
                                 reuse=d.get("reuse", False))
        exp = d["expect"]
        failure = None
        if out.reason != exp:
            failure = "expected %s, got %s" % (exp, out.reason)
        elif out.accepted != (exp in ACCEPTED_NAMES):
            failure = "got %s, but the reader %s the rider (%s %s)" % (
                exp, "let in" if out.accepted else "refused", exp,
                "refuses" if out.accepted else "lets the rider in")
        elif "fare" in d and out.fare != d["fare"]:
            failure = "expected fare %d, got %d" % (d["fare"], out.fare)
        observed = "%s%s" % (out.reason, " %d" % out.fare if out.accepted and out.fare else "")
        if not out.accepted and out.reason in ACCEPTED_NAMES:
            observed += " (refused)"
        elif out.accepted and out.reason not in ACCEPTED_NAMES:
            observed += " (accepted)"
        self._check(step, action, observed,
                    failure and "%s: %s: %s" % (step.where, action, failure), out.reason)

    # -- results --------------------------------------------------------------------------------

    def _check(self, step, action, observed="", failure=None, reason=None):
        secs = time.monotonic() - self._began
        self.checks.append(Check(step.line, action, observed, failure, secs=secs, reason=reason))
        self._say("FAIL" if failure else "ok", step.line,
                  "%s -> %s" % (action, observed) if observed else action, step.data.get("note"))
        if failure:
            self.echo("       " + failure)

    def _error(self, step, action, exc, context=None):
        """A step (or the file, step None) that could not be run, reported with its location."""
        if isinstance(exc, ScenarioError):
            msg = str(exc)  # names file and line itself
        else:
            msg = "%s: %s" % (type(exc).__name__, exc)
            if step is not None:
                msg = "%s: %s: %s" % (step.where, action, msg)
            elif context:
                msg = "%s: %s" % (context, msg)
        detail = msg
        if not isinstance(exc, (ScenarioError, OSError, TimeoutError, simreader.ReaderDied)):
            detail += "\n\n" + "".join(traceback.format_exception(exc))  # a bug: where it is
        self.checks.append(Check(step.line if step else None, action, error=msg, detail=detail))
        first, *rest = msg.rstrip().splitlines()
        if step is not None:
            self._say("ERROR", step.line, action)
            self.echo("       " + first)
        else:
            self.echo("  ERROR " + first)
        for line in rest:  # the reader's stderr, for a reader that died or went silent
            self.echo("       | " + line)

    def _say(self, mark, line, what, note=None):
        clock = self.scenario.clock(self.bus.now) if self.bus else ""
        self.echo("  %-5s %4s  %s  %s%s" % (mark, line or "", clock, what,
                                            "  -- " + note if note else ""))


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
    """JUnit XML: one test suite per file, one test case per check, named by the step's line
    and action (never by what came of it, so that names stay the same from run to run)."""
    suites = ET.Element("testsuites", tests=str(sum(len(r.checks) for r in runs)),
                        failures=str(sum(len(r.failures) for r in runs)),
                        errors=str(sum(len(r.errors) for r in runs)))
    for run in runs:
        s = ET.SubElement(suites, "testsuite", name=run.name, file=str(run.path),
                          tests=str(len(run.checks)), failures=str(len(run.failures)),
                          errors=str(len(run.errors)),
                          time="%.3f" % sum(c.secs for c in run.checks))
        for c in run.checks:
            case = ET.SubElement(s, "testcase", classname=run.path.stem, name=c.name,
                                 file=str(run.path), time="%.3f" % c.secs)
            if c.line:
                case.set("line", str(c.line))
            if c.failure:
                ET.SubElement(case, "failure", message=c.failure).text = c.failure
            if c.error:
                ET.SubElement(case, "error", message=c.error.splitlines()[0]).text = c.detail
            if c.observed:
                ET.SubElement(case, "system-out").text = "got %s" % c.observed
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def check_files(files, junit_path):
    """Before anything runs: every scenario file is there and is text, and the JUnit report can
    be written (a CI job must not run everything to fail on a typo at the end)."""
    from validator import signedfile
    for f in files:
        if read_bytes(f, "scenario file").startswith(signedfile.MAGIC):
            raise UserError("%s is a signed file, not a scenario (TOML, docs/scenarios.md)" % f)
        read_text(f, "scenario file")
    if junit_path:
        check_output(junit_path, "JUnit report")


def cmd_scenario(args):
    import tempfile
    check_files(args.files, args.junit)
    runs = []
    junit_error = None
    try:
        with tempfile.TemporaryDirectory(prefix="fare-scenario-") as tmp:
            for i, f in enumerate(args.files):
                run = Run(f, Path(tmp) / str(i))
                runs.append(run)  # before it runs: an interrupted run still gets reported
                run.run()
    finally:
        if args.junit:
            try:
                junit(runs, args.junit)
            except OSError as e:
                junit_error = "cannot write %s: %s" % (args.junit, e)
                print(junit_error)
    passed = sum(1 for r in runs for c in r.checks if not (c.failure or c.error))
    failed = sum(len(r.failures) for r in runs)
    errors = sum(len(r.errors) for r in runs)
    print("%d passed, %d failed, %d errors" % (passed, failed, errors))
    return 1 if failed or errors or junit_error else 0


def add_commands(sub):
    p = sub.add_parser("scenario", help="run tap scenario files against the simulated reader",
                       description=__doc__)
    p.add_argument("files", nargs="+", help="scenario TOML files")
    p.add_argument("--junit", help="write JUnit XML for CI to this file (checked before "
                   "anything runs)")
    p.set_defaults(func=cmd_scenario)
