"""The firmware drivers on the MicroPython binary against the emulators over real ptys
(boards/unix_sim/uart.PtyUart on the slave side): card present and absent, a phone moved away
mid-exchange, checksum errors, NACKs, timeouts, garbage, oversize lines; after each failure the
driver reports one clean error and the next exchange or line works.

No wall-clock sleeps decide anything: the MicroPython side waits with generous deadlines, and
only the tests of timeouts use short driver timeouts (on the driver's own clock)."""
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from mpharness import ROOT, compiled_tree, device_heap, run_mp
from host_tools.sim import pn532_emu
from host_tools.sim.pn532_emu import DemoCard, PN532Emulator
from host_tools.sim.qr_emu import QrEmulator

PN532_PRELUDE = r"""
import sys, json
from uart import PtyUart
from drivers import pn532
from drivers.pn532 import PN532, NfcError
r = PN532(PtyUart(sys.argv[1]), ack_timeout_ms=1000, response_timeout_ms=3000,
          poll_timeout_ms=3000)
SELECT = b"\x00\xa4\x04\x00\x07\xf0FAREV1\x00"
APDU = b"\x80\xb0\x00\x00\x10"
def attempt(f, *a):
    try:
        v = f(*a)
    except NfcError as e:
        return "E:" + e.kind + ":%d" % e.status
    if v is None:
        return None
    if isinstance(v, bytes):
        return v.hex()
    return repr(v)
def tap(apdu=APDU):
    t = attempt(r.poll)
    return [t, attempt(r.exchange, apdu) if t and not t.startswith("E:") else None]
def report(**kw):
    print(json.dumps(kw))
"""

ECHO = (bytes(reversed(bytes.fromhex("80b0000010"))) + b"\x90\x00").hex()


def run(code, path, heap="110k"):
    out = run_mp(PN532_PRELUDE + code, heap=heap, args=[path], timeout=120)
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def emu():
    e = PN532Emulator(DemoCard())
    e.start()
    yield e
    e.stop()


def test_tap_over_the_pty(emu):
    out = run(r"""
fw = r.begin()
t = r.poll()
report(fw=list(fw), uid=t.uid.hex(), ats=t.ats.hex(), iso=t.iso14443_4,
       select=attempt(r.exchange, SELECT), apdu=attempt(r.exchange, APDU),
       resends=r.resends, nacks=r.nacks_sent)
""", emu.path)
    assert out == {"fw": [0x32, 1, 6, 7], "uid": DemoCard.uid.hex(), "ats": "0578807002",
                   "iso": True, "select": "9000", "apdu": ECHO, "resends": 0, "nacks": 0}
    assert emu.wakeups == 1
    assert emu.commands == [0x14, 0x02, 0x12, 0x32, 0x4A, 0x40, 0x40]
    assert emu.flags == pn532_emu.F_AUTO_RATS and emu.syntax_errors == 0


def test_long_answers_chained_and_extended_frames():
    class Big:
        def apdu(self, cmd):
            return bytes(range(256)) + cmd + b"\x90\x00"
    e = PN532Emulator(Big(), max_chunk=200)
    e.start()
    try:
        out = run(r"""
r.begin()
r.poll()
long = b"\x80\x01\x00\x00" + bytes(range(250))
a = r.exchange(long)
report(ok=(a == bytes(range(256)) + long + b"\x90\x00"), n=len(a))
""", e.path)
    finally:
        e.stop()
    assert out == {"ok": True, "n": 256 + 254 + 2}


def test_card_absent_then_present(emu):
    emu.away(2)
    out = run(r"""
r.begin()
report(taps=[tap(), tap(), tap()])
""", emu.path)
    assert out["taps"] == [[None, None], [None, None], [out["taps"][2][0], ECHO]]
    assert out["taps"][2][0].startswith("Target(")


def test_phone_moved_away_mid_exchange():
    class LeavingPhone(DemoCard):
        n = 0

        def apdu(self, cmd):
            self.n += 1
            if self.n == 2:            # the second APDU of the tap: the phone is gone
                emu.away(1)
                raise RuntimeError("out of the field")
            return super().apdu(cmd)
    emu = PN532Emulator(LeavingPhone())
    emu.start()
    try:
        out = run(r"""
r.begin()
r.poll()
first = attempt(r.exchange, SELECT)
second = attempt(r.exchange, APDU)
after = attempt(r.exchange, APDU)           # no target any more: poll first
report(first=first, second=second, after=after, taps=[tap(), tap()])
""", emu.path)
    finally:
        emu.stop()
    assert out["first"] == "9000"
    assert out["second"] == "E:card:1"              # status 0x01: the target has not answered
    assert out["after"] == "E:no_target:0"
    assert out["taps"][0] == [None, None]            # away for one poll
    assert out["taps"][1][1] == ECHO                 # tapped again: works


def test_checksum_errors_nacks_garbage_split(emu):
    for fault in ("bad_checksum", "bad_lcs", "nack", "garbage", "split", "extended",
                  "garbage"):
        emu.inject(fault, cmd=0x40)
    emu.inject("garbage", cmd=0x4A)
    out = run(r"""
r.begin()
r.poll()
got = [attempt(r.exchange, APDU) for _ in range(7)]
report(got=got, nacks=r.nacks_sent, resends=r.resends)
""", emu.path)
    assert out == {"got": [ECHO] * 7, "nacks": 2, "resends": 1}
    assert emu.nacks_received == 2
    assert emu.pending_faults() == []


def test_timeouts_and_error_frames_then_recovery(emu):
    # each failing exchange is followed by a working one ("delay" 0 s: an answer on time)
    emu.inject("silent", cmd=0x40)
    emu.inject("delay", cmd=0x40, arg=0)
    emu.inject("error_frame", cmd=0x40)
    emu.inject("delay", cmd=0x40, arg=0)
    emu.inject("drop", cmd=0x40, times=3)
    emu.inject("silent", cmd=0x4A)
    out = run(r"""
r.begin()
res = []
r.poll_timeout_ms = 200
res.append(attempt(r.poll))                 # the chip still searching when we give up: no card
r.poll_timeout_ms = 3000
r.poll()
r.response_timeout_ms = 200
res.append(attempt(r.exchange, APDU))       # acknowledged, never answered: aborted
r.response_timeout_ms = 3000
res.append(tap())                           # and the next tap works
res.append(attempt(r.exchange, APDU))       # syntax error frame
res.append(tap())
r.ack_timeout_ms = 150
res.append(attempt(r.exchange, APDU))       # three sends, never acknowledged
r.ack_timeout_ms = 1000
res.append(tap())
report(res=res, aborts=r.aborts, resends=r.resends)
""", emu.path)
    res = out["res"]
    assert res[0] is None
    assert res[1] == "E:timeout:0"
    assert res[3] == "E:protocol:0"
    assert res[5] == "E:no_ack:0"
    for i in (2, 4, 6):
        assert res[i][1] == ECHO
    assert out["aborts"] == 2 and out["resends"] == 2
    assert emu.acks_received == 2                    # the aborts reached the chip
    assert emu.commands.count(0x40) == 1 + 1 + 1 + 1 + 3 + 1
    assert emu.pending_faults() == []


def test_same_driver_in_the_roomy_heap(emu):
    emu.inject("bad_checksum", cmd=0x40)
    out = run(r"""
r.begin()
report(tap=tap())
""", emu.path, heap="4m")
    assert out["tap"][1] == ECHO


# --- QR scanner ---

QR_PRELUDE = r"""
import sys, json, time
from uart import PtyUart
from drivers import qrscanner
q = qrscanner.QrScanner(PtyUart(sys.argv[1]), stale_ms=5000)
def lines(n, deadline_ms=20000):
    got = []
    t0 = time.ticks_ms()
    while len(got) < n and time.ticks_diff(time.ticks_ms(), t0) < deadline_ms:
        line = q.poll()
        if line is None:
            time.sleep_ms(1)
        else:
            got.append(line)
    return got
"""


@pytest.mark.parametrize("suffix", [b"\r", b"\n", b"\r\n"])
def test_qr_lines_over_the_pty(suffix):
    code = "FV1:" + "0123456789ABCDEF" * 30
    e = QrEmulator(suffix=suffix, chunk=13, pause_s=0.0005)
    e.start()
    try:
        e.scan(code)
        e.send_raw(b"\x00\xff\x13\x80" + suffix)       # line noise
        e.scan("SECOND")
        e.oversize(5000)
        e.scan("AFTER OVERSIZE")
        out = run_mp(QR_PRELUDE + r"""
got = lines(3)
print(json.dumps({"got": got, "drops": q.drops}))
""", args=[e.path], timeout=120)
    finally:
        e.stop()
    r = json.loads(out.strip().splitlines()[-1])
    assert r == {"got": [code, "SECOND", "AFTER OVERSIZE"],
                 "drops": {"binary": 1, "oversize": 1}}


def test_qr_configuration_and_trigger_mode():
    e = QrEmulator(require_trigger=True)
    e.start()
    try:
        e.scan("WAITS FOR TRIGGER")
        out = run_mp(QR_PRELUDE + r"""
res = {}
res["before"] = lines(1, deadline_ms=300)         # command-trigger mode: nothing yet
res["mode"] = q.set_mode(qrscanner.MODE_COMMAND)
res["zone0"] = q.read_zone(qrscanner.ZONE_MODE)[0]
res["baud"] = q.set_baud(115200)
res["save"] = q.save()
res["trigger"] = q.trigger()
res["after"] = lines(1)
print(json.dumps(res))
""", args=[e.path], timeout=120)
    finally:
        e.stop()
    r = json.loads(out.strip().splitlines()[-1])
    assert r == {"before": [], "mode": True, "zone0": 1, "baud": True, "save": True,
                 "trigger": True, "after": ["WAITS FOR TRIGGER"]}
    assert e.zones[0x2A:0x2C] == b"\x1a\x00" and e.saves == 1 and e.triggers == 1
    assert e.bad_commands == 0


def test_pty_uart_is_raw_even_on_a_cooked_pty():
    """PtyUart must pass CR, LF and every byte through unchanged, whatever mode the pty had."""
    master, slave = os.openpty()           # cooked: echo, ICRNL, ONLCR, line buffering
    path = os.ttyname(slave)
    got = bytearray()

    def peer():
        while len(got) < 5:                # the firmware's bytes, then answer
            got.extend(os.read(master, 100))
        os.write(master, b"x\ry\n\x03")

    t = threading.Thread(target=peer, daemon=True)
    t.start()
    try:
        out = run_mp(r"""
import sys, time
from uart import PtyUart
u = PtyUart(sys.argv[1])
u.write(b"a\nb\r\x03")
buf = bytearray()
t0 = time.ticks_ms()
while len(buf) < 5 and time.ticks_diff(time.ticks_ms(), t0) < 20000:
    d = u.read(16)
    if d:
        buf.extend(d)
    else:
        time.sleep_ms(1)
print(bytes(buf).hex())
""", args=[path], timeout=60)
        t.join(5)
    finally:
        os.close(master)
        os.close(slave)
    assert bytes(got) == b"a\nb\r\x03"           # no ONLCR on the way out
    assert out.strip() == b"x\ry\n\x03".hex()    # no ICRNL, no ISIG, no echo on the way in


# --- the CLI (`fare emulate`) ---

# A suite started in the background (a non-interactive shell's `&`) hands its children SIGINT
# ignored, and Python then installs no KeyboardInterrupt handler: Ctrl-C, as the tests send it,
# would do nothing. The emulator starts with Ctrl-C as in a terminal. (Set in the child's own
# Python, not in a preexec_fn: that runs between fork and exec in a process with threads.)
CLI_WITH_CTRL_C = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                   "runpy.run_module('host_tools.cli', run_name='__main__', alter_sys=True)")


def start_cli(*args):
    proc = subprocess.Popen([sys.executable, "-c", CLI_WITH_CTRL_C, "emulate", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=str(ROOT))
    first = proc.stdout.readline()          # "... emulator on /dev/pts/N (link ...)"
    assert " emulator on " in first, first
    return proc, first.split(" on ")[1].split()[0]


def test_cli_pn532_with_a_wallet_and_stdin_commands(tmp_path):
    from host_tools.sim.wallet import Wallet
    Wallet().save(tmp_path / "w")            # no credential yet: our application answers 6A82
    proc, path = start_cli("pn532", "--wallet", str(tmp_path / "w"), "--link",
                           str(tmp_path / "nfc"))
    try:
        assert os.path.realpath(tmp_path / "nfc") == path
        out = run(r"""
r.begin()
report(tap=tap(SELECT))
""", str(tmp_path / "nfc"))
        assert out["tap"][1] == "6a82"
        proc.stdin.write("remove\n")
        proc.stdin.flush()
        assert "apdus=1" in proc.stdout.readline()
        out = run(r"""
r.begin()
report(tap=tap(SELECT))
""", path)
        assert out["tap"] == [None, None]
    finally:
        proc.stdin.close()
        assert proc.wait(20) == 0
    assert not os.path.lexists(tmp_path / "nfc")


def test_cli_qr_types_codes():
    proc, path = start_cli("qr", "--hold", "--garbage", "--chunk", "5", "FV1:ONE", "FV1:TWO")
    try:
        assert proc.stdout.readline().startswith("scanned 7 chars")
        out = run_mp(QR_PRELUDE + r"""
print(json.dumps({"got": lines(2), "drops": q.drops}))
""", args=[path], timeout=120)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 130
    assert json.loads(out.strip().splitlines()[-1]) == {"got": ["FV1:ONE", "FV1:TWO"],
                                                         "drops": {"binary": 2}}


def test_cli_help_explains():
    out = subprocess.run([sys.executable, "-m", "host_tools.cli", "emulate", "pn532", "--help"],
                         capture_output=True, text=True, cwd=str(ROOT)).stdout
    for word in ("--wallet", "--fault", "remove", "bad_checksum", "remove_card"):
        assert word in out
    from host_tools.sim.emulators import parse_fault
    assert parse_fault("remove_card:2@0x40") == ("remove_card", "2", 0x40)
    with pytest.raises(ValueError):
        parse_fault("meltdown")


# --- with the validator: a wallet's phone through the PN532 emulator into tokens.read_nfc ---

NFC_MODULES = ("validator.p256", "validator.tokens", "validator.keyring", "uart", "drivers.pn532")


def test_nfc_challenge_response_through_the_pn532(tmp_path):
    import tokenkit as tk
    world = tk.World(tmp_path)
    w = world.wallet(account=4711)
    phone = w.card(clock=lambda: world.now)
    emu = PN532Emulator(phone)
    # a tap is SELECT, READ, CHALLENGE; "delay" 0 s is an answer on time
    emu.inject("bad_checksum", cmd=0x40)                # tap 1: a garbled answer, NACKed
    emu.inject("delay", cmd=0x40, arg=0, times=3)       # tap 1 READ, CHALLENGE; tap 2 SELECT
    emu.inject("remove_card", cmd=0x40)                 # tap 2: the phone leaves during READ
    emu.start()
    ops = [[k, v[0].hex(), v[1]] for k, v in world.operator_keys().items()]
    try:
        out = run_mp(r"""
import sys, json
from validator import p256
from validator import tokens, keyring, reasons
from uart import PtyUart
from drivers.pn532 import PN532
ops = {}
for kid, pub, until in json.loads(sys.argv[2]):
    ops[kid] = (bytes.fromhex(pub), until)
now = int(sys.argv[4])
ring = keyring.KeyRing.load(sys.argv[3], ops, now)
r = PN532(PtyUart(sys.argv[1]), ack_timeout_ms=1000, response_timeout_ms=3000,
          poll_timeout_ms=3000)
r.begin()
res = []
for rand in (b"A" * 16, b"B" * 16, b"C" * 16):
    t = r.poll()
    if t is None:
        res.append("no card")
        t = r.poll()
    reason, tok = tokens.read_nfc(r.exchange, ring, 77, now, rand)
    res.append([reasons.name(reason), tok.account if tok else None])
print(json.dumps({"res": res, "nacks": r.nacks_sent}))
""", args=[emu.path, json.dumps(ops), world.keyring_path, world.now], timeout=300,
                     path=compiled_tree(),                # as the reader runs: precompiled,
                     heap=device_heap(NFC_MODULES))      # with the device's 110 KB for data
    finally:
        emu.stop()
    r = json.loads(out.strip().splitlines()[-1])
    assert r == {"res": [["OK", 4711], ["NFC_FAILED", None], "no card", ["OK", 4711]],
                 "nacks": 1}
