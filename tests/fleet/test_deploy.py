"""Deployment for real: MicroPython's unix port served on a pty stands in for a board; `make
deploy` (fare deploy: mpy-cross + mpremote) puts the firmware and a provisioned identity on it,
and the deployed firmware then starts and answers. Also: provisioning once, and what can be
checked of `fare flash` without a board (image checks, partition layout, esptool command)."""
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import cbor2
import pytest
import serial

from mpharness import MICROPYTHON, ROOT, run_mp

from clikit import fails
from host_tools import cli
from host_tools.fleet import deploy, provision, targets
from host_tools.common import ecsign
from host_tools.fleet.ptyrepl import UnixPortOnPty

FIRMWARE_HEAP = "1m"  # the unix port keeps loaded bytecode in its heap; a device runs it from flash


def _operator(tmp_path, kid=1):
    key = ecsign.new_key()
    pub = ecsign.public_bytes(key)
    tmp_path.mkdir(parents=True, exist_ok=True)
    info = tmp_path / ("operator-%d.json" % kid)
    info.write_text(json.dumps({"key_id": kid, "public_key": pub.hex(), "valid_until": 0}))
    return info, pub


def _provisioned(tmp_path, reader_id=17):
    op, pub = _operator(tmp_path)
    out = tmp_path / "provision" / ("reader-%d" % reader_id)
    assert cli.main(["provision", "--reader-id", str(reader_id), "--operator-key-pub", str(op),
                     "--out", str(out)]) == 0
    return out, pub


# -- the unix port on a pty --------------------------------------------------------------------

def _read_until(ser, marker, deadline_s=20):
    got = b""
    end = time.monotonic() + deadline_s
    while marker not in got and time.monotonic() < end:
        got += ser.read(256)
    return got


def test_unix_port_on_pty_speaks_raw_repl_and_raw_paste(tmp_path):
    with UnixPortOnPty(tmp_path / "dev") as dev:
        with serial.Serial(dev.port, 115200, timeout=0.2) as ser:
            ser.write(b"\r\x03\x03\x01")  # interrupt, then ctrl-A: raw REPL
            assert b"raw REPL; CTRL-B to exit\r\n>" in _read_until(ser, b"exit\r\n>")
            ser.write(b"print(6*7)\x04")
            got = _read_until(ser, b"\x04>")
            # "OK", the output (the unix port ends lines with "\n" where a board sends "\r\n"),
            # end of output, end of errors, prompt
            assert got.startswith(b"OK42") and got.endswith(b"\x04\x04>")
            ser.write(b"\x05A\x01")  # ask for raw-paste mode
            answer = _read_until(ser, b"R\x01")
            assert answer.startswith(b"R\x01")  # supported: mpremote uses it (fast copies)
        assert dev.alive()
    assert not dev.alive()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """One unix port on a pty, deployed once with `make deploy` (the technician's command)."""
    tmp = tmp_path_factory.mktemp("deploy")
    prov, pub = _provisioned(tmp)
    # the heap of the board a .mpy deploy is for (an ESP32-S3 with PSRAM; README): the whole
    # application imported over the REPL, then deployed again over mpremote
    with UnixPortOnPty(tmp / "device", heap=FIRMWARE_HEAP) as dev:
        proc = subprocess.run(
            ["make", "-o", ".venv/.installed", "deploy", "PORT=" + dev.port, "BOARD=unix_sim",
             "PROVISION=" + str(prov)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        yield {"dev": dev, "prov": prov, "pub": pub, "tmp": tmp, "make": proc}


def test_make_deploy_copies_compiled_firmware_and_identity(deployed):
    proc = deployed["make"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = deployed["dev"].root
    man = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert "main.py" in man and "board.mpy" in man and "validator/app.mpy" in man
    assert "drivers/pn532.mpy" in man and "validator/p256_gtable.bin" in man
    assert "validator/p256_gtable.mpy" not in man  # frozen-build twin of the .bin: not copied
    assert not [m for m in man if m.endswith(".py") and m != "main.py"]  # compiled, not sources
    assert (root / "provision" / "identity.cbor").read_bytes() == \
        (deployed["prov"] / "identity.cbor").read_bytes()
    for p in root.rglob("*.mpy"):
        assert p.read_bytes()[:2] == b"M\x06"  # mpy v6: what the firmware's MicroPython loads
    # progress: one line per file copied
    assert proc.stdout.count("cp ") >= len(man) and "[1/" in proc.stdout


def test_deployed_modules_import_over_the_repl(deployed):
    out = deploy.run_mpremote(deployed["dev"].port, "exec",
                              "import validator.app as a, board\n"
                              "print(a.FIRMWARE_VERSION, a.__file__, board.__file__)")
    version, app_file, board_file = out.split()
    assert app_file == "validator/app.mpy" and board_file == "board.mpy"
    assert version == _firmware_version()


def _firmware_version():
    for line in (ROOT / "firmware" / "validator" / "app.py").read_text().splitlines():
        if line.startswith("FIRMWARE_VERSION"):
            return line.split("=")[1].strip().strip('"')
    raise AssertionError("no FIRMWARE_VERSION")


def test_deployed_firmware_starts_and_answers(deployed):
    """Boot the deployed files as the unix_sim board does (main.py from the device root, no
    source path): the reader comes up with the provisioned identity and answers the bench."""
    root = deployed["dev"].root
    env = {k: v for k, v in os.environ.items() if k != "MICROPYPATH"}
    env.update(FV_PROVISION="provision", FV_FLASH="flash.img", FV_LOG_FLASH="triplog.img",
               FV_RTC="1767225600")
    proc = subprocess.Popen([MICROPYTHON, "-X", "heapsize=" + FIRMWARE_HEAP, "main.py"],
                            cwd=str(root), env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready = _next_event(proc, "ready")
        assert ready["reader_id"] == 17 and ready["firmware"] == _firmware_version()
        proc.stdin.write(b'{"cmd": "info"}\n')
        proc.stdin.flush()
        info = _next_event(proc, "info")
        assert info["reader_id"] == 17 and info["board"] == "unix_sim"
        proc.stdin.write(b'{"cmd": "stop"}\n')
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the first boot copied the identity into the reader's flash image
    assert (root / "flash.img").stat().st_size > 0


def _next_event(proc, name, deadline_s=120):
    # Read the pipe's fd directly and split lines here: select() on a buffered file object misses
    # lines already pulled into its buffer (two events arriving in one chunk would hang the wait).
    fd = proc.stdout.fileno()
    pending = proc.__dict__.setdefault("unsplit", bytearray())  # read, not yet split into lines
    end = time.monotonic() + deadline_s
    other = []  # lines that are not events: the firmware prints its tracebacks on stdout
    while time.monotonic() < end:
        while b"\n" in pending:
            i = pending.index(b"\n")
            line = bytes(pending[:i]).decode("utf-8", "replace").strip()
            del pending[:i + 1]
            if line.startswith("{"):
                ev = json.loads(line)
                if ev.get("ev") == name:
                    return ev
            elif line:
                other.append(line)
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        pending += chunk
    raise AssertionError("no %r event; stdout:\n%s\nstderr:\n%s" % (
        name, "\n".join(other[-40:]),
        proc.stderr.read().decode()[-3000:] if proc.poll() is not None else ""))


def test_redeploy_skips_unchanged_files_and_keeps_the_identity(deployed):
    dev, prov = deployed["dev"], deployed["prov"]
    lines = []
    rep = deploy.deploy(dev.port, "unix_sim", prov, echo=lines.append)
    assert rep.data == [] and rep.kept == ["provision/identity.cbor"]
    assert len(lines) == len(rep.code)


def test_deploy_refuses_to_replace_a_different_identity(deployed):
    dev = deployed["dev"]
    other, _ = _provisioned(deployed["tmp"] / "other", reader_id=18)
    before = (dev.root / "provision" / "identity.cbor").read_bytes()
    with pytest.raises(deploy.DeployError, match="different identity"):
        deploy.deploy(dev.port, "unix_sim", other)
    assert (dev.root / "provision" / "identity.cbor").read_bytes() == before
    # the CLI says so and exits non-zero
    assert cli.main(["deploy", "--port", dev.port, "--board", "unix_sim",
                     "--provision", str(other)]) == 1
    # and a provisioning run aimed at this board refuses before writing anything
    op, _ = _operator(deployed["tmp"] / "other", kid=2)
    fresh = deployed["tmp"] / "other" / "provision" / "reader-19"
    assert cli.main(["provision", "--reader-id", "19", "--operator-key-pub", str(op), "--out",
                     str(fresh), "--port", dev.port, "--board", "unix_sim"]) == 1
    assert not (fresh / "identity.cbor").exists()


def test_deploy_refuses_a_board_of_another_kind(deployed):
    with pytest.raises(deploy.DeployError, match="expects a esp32 device"):
        deploy.deploy(deployed["dev"].port, "esp32_devkitc", deployed["prov"])


def test_deploy_with_force_replaces_the_identity(tmp_path):
    prov, _ = _provisioned(tmp_path, reader_id=21)
    other, _ = _provisioned(tmp_path / "b", reader_id=22)
    with UnixPortOnPty(tmp_path / "device") as dev:
        deploy.deploy(dev.port, "unix_sim", prov)
        rep = deploy.deploy(dev.port, "unix_sim", other, force=True)
        assert rep.data == ["provision/identity.cbor"]
        got = provision.read_identity(dev.root / "provision" / "identity.cbor")
        assert got["reader_id"] == 22


# -- deploy planning (no device) ---------------------------------------------------------------

def _sha(p):
    import hashlib
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def test_plan_copies_missing_files_and_keeps_what_the_depot_pushed(tmp_path):
    prov, _ = _provisioned(tmp_path)
    (prov / "keyring.fvs").write_bytes(b"ring v1")
    (prov / "tables").mkdir()
    (prov / "tables" / "1.bin").write_bytes(b"t")
    t = targets.get("esp32_devkitc")
    ident = "/flash/identity.cbor"
    assert deploy.data_paths(t, prov) == [ident, "/flash/keyring.fvs", "/flash/tables/1.bin"]
    copy, kept = deploy.plan_data(t, prov, {})
    assert [r for _, r in copy] == [ident, "/flash/keyring.fvs", "/flash/tables/1.bin"]
    board = {ident: _sha(prov / "identity.cbor"), "/flash/keyring.fvs": "ab" * 32}
    copy, kept = deploy.plan_data(t, prov, board)
    assert [r for _, r in copy] == ["/flash/tables/1.bin"]
    assert kept == [ident, "/flash/keyring.fvs"]  # a newer key ring from the depot stays
    copy, _ = deploy.plan_data(t, prov, board, replace_data=True)
    assert [r for _, r in copy] == ["/flash/keyring.fvs", "/flash/tables/1.bin"]
    board[ident] = "cd" * 32
    with pytest.raises(deploy.DeployError, match="different identity"):
        deploy.plan_data(t, prov, board, replace_data=True)
    copy, _ = deploy.plan_data(t, prov, board, force=True)
    assert ident in [r for _, r in copy]
    (prov / "identity.cbor").unlink()
    with pytest.raises(deploy.DeployError, match="fare provision"):
        deploy.plan_data(t, prov, {})


def test_device_checks_name_the_problem(monkeypatch):
    t = targets.get("esp32_devkitc")
    ok = {"platform": "esp32", "mpy_version": deploy.mpy_cross_version(), "arch": "xtensawin",
          "version": [1, 29, 0]}
    deploy.check_device(t, ok)
    with pytest.raises(deploy.DeployError, match="expects a esp32 device"):
        deploy.check_device(t, dict(ok, platform="rp2"))
    with pytest.raises(deploy.DeployError, match="flash MicroPython 1.29.0"):
        deploy.check_device(t, dict(ok, mpy_version=(6, 1), version=[1, 20, 0]))
    with pytest.raises(deploy.DeployError, match="xtensawin code, the device is armv7m"):
        deploy.check_device(t, dict(ok, arch="armv7m"))


def test_build_compiles_the_manifest_for_the_board(tmp_path):
    t = targets.get("esp32_devkitc")
    files = deploy.build(t, "xtensawin", tmp_path)
    remote = [r for _, r in files]
    assert remote[-1] == "/main.py"
    for name in ("/board.mpy", "/pins.mpy", "/esp32_board.mpy", "/pn532_i2c.mpy",
                 "/validator/app.mpy", "/drivers/feedback.mpy", "/validator/p256_gtable.bin"):
        assert name in remote, name
    assert "/validator/p256_gtable.mpy" not in remote
    for local, r in files:
        if r.endswith(".mpy"):
            head = local.read_bytes()[:4]
            assert head[:2] == b"M\x06", r
    frozen = deploy.build(t, "xtensawin", tmp_path / "f", frozen=True)
    assert [r for _, r in frozen] == ["/main.py"]


# -- provisioning ------------------------------------------------------------------------------

def test_provision_writes_the_identity_once(tmp_path):
    op, pub = _operator(tmp_path)
    out = tmp_path / "prov" / "reader-5"
    path = provision.provision(out, 5, [provision.parse_operator_key(str(op))], now=1767225600)
    ident = cbor2.loads(path.read_bytes())
    assert ident[1] == 5 and ident[2] == [[1, pub, 0]] and ident[4] == 1767225600
    assert len(ident[3]) == 32
    assert sorted(ident) == [1, 2, 3, 4]
    key = tmp_path / "prov" / "depot-keys" / "5.key"
    assert bytes.fromhex(key.read_text().strip()) == ident[3]
    for p in (path, key):
        assert p.stat().st_mode & 0o777 == 0o600
    for d in (out, key.parent):
        assert d.stat().st_mode & 0o777 == 0o700
    # the depot reads the key where provisioning put it
    from host_tools.depot import readersync
    assert readersync.load_keys(key.parent) == {5: ident[3]}
    # once: an existing identity or depot key is not replaced without force
    with pytest.raises(provision.ProvisionError, match="already provisioned|exists"):
        provision.provision(out, 5, [[1, pub, 0]])
    path.unlink()
    with pytest.raises(provision.ProvisionError, match="sync secret at the depot"):
        provision.provision(out, 5, [[1, pub, 0]])
    provision.provision(out, 5, [[1, pub, 0]], force=True)
    assert cbor2.loads(path.read_bytes())[3] != ident[3]  # a fresh secret
    assert bytes.fromhex(key.read_text().strip()) == cbor2.loads(path.read_bytes())[3]


def test_provision_cli_refuses_to_overwrite(tmp_path, capsys):
    out, _ = _provisioned(tmp_path)
    capsys.readouterr()
    op, _ = _operator(tmp_path, kid=3)
    before = (out / "identity.cbor").read_bytes()
    assert cli.main(["provision", "--reader-id", "17", "--operator-key-pub", str(op), "--out",
                     str(out)]) == 1
    assert "use --force" in capsys.readouterr().err
    assert (out / "identity.cbor").read_bytes() == before
    assert cli.main(["provision", "--reader-id", "17", "--operator-key-pub", str(op), "--out",
                     str(out), "--force"]) == 0
    assert (out / "identity.cbor").read_bytes() != before


def test_firmware_reads_the_identity_provisioning_writes(tmp_path):
    op, pub = _operator(tmp_path)
    keys = [provision.parse_operator_key(str(op)),
            provision.parse_operator_key("7:%s:1800000000" % pub.hex())]
    path = provision.provision(tmp_path / "r", 4000000000, keys)
    out = run_mp("from validator import app\n"
                 "rid, ops, secret = app.load_identity(%r)\n"
                 "print(rid, sorted(ops), ops[7][1], len(secret))\n" % str(path), heap="1m")
    assert out.split() == ["4000000000", "[1,", "7]", "1800000000", "32"]


def test_operator_key_specs(tmp_path):
    op, pub = _operator(tmp_path, kid=9)
    assert provision.parse_operator_key(str(op)) == [9, pub, 0]
    assert provision.parse_operator_key("9:%s:123" % pub.hex()) == [9, pub, 123]
    unc = ecsign.public_bytes(ecsign.new_key(), compressed=False)
    assert provision.parse_operator_key("2:" + unc.hex())[1] == unc
    for bad, why in (("9", "KID:PUBHEX"), ("x:%s" % pub.hex(), "integers"),
                     ("9:zz", "not hex"), ("9:" + "02" + "00" * 31, "33 or 65"),
                     ("9:" + "02" + "ff" * 32, "not a point"),
                     ("70000:%s" % pub.hex(), "16 bits")):
        with pytest.raises(provision.ProvisionError, match=why):
            provision.parse_operator_key(bad)
    with pytest.raises(provision.ProvisionError, match="distinct"):
        provision.make_identity(1, [[1, pub, 0], [1, pub, 0]], b"\0" * 32, 0)
    with pytest.raises(provision.ProvisionError, match="at least one"):
        provision.make_identity(1, [], b"\0" * 32, 0)
    with pytest.raises(provision.ProvisionError, match="reader id"):
        provision.make_identity(0, [[1, pub, 0]], b"\0" * 32, 0)


# -- what deploy says when the board cannot take the reader ------------------------------------

def test_frozen_deploy_onto_firmware_without_the_application_fails(tmp_path, capsys):
    """--frozen copies only main.py: a firmware without the frozen application would boot to
    ImportError. The unix port has no frozen reader: deploy must refuse, naming the cause."""
    prov, _ = _provisioned(tmp_path)
    with UnixPortOnPty(tmp_path / "device") as dev:
        line = fails(capsys, "deploy", "--frozen", "--port", dev.port, "--board", "unix_sim",
                     "--provision", prov)
    assert "no frozen reader application" in line and "A frozen build" in line
    assert "boot to ImportError" in line


def test_deploy_to_a_missing_or_a_silent_port_says_which(tmp_path, capsys, monkeypatch):
    import pty
    import tty
    line = fails(capsys, "deploy", "--port", tmp_path / "ttyNOPE", "--board", "unix_sim")
    assert "serial port %s not found" % (tmp_path / "ttyNOPE") in line
    assert "in use" not in line
    monkeypatch.setattr(deploy, "PROBE_TIMEOUT", 3)
    master, slave = pty.openpty()  # a port where nothing answers
    try:
        tty.setraw(slave)
        line = fails(capsys, "deploy", "--port", os.ttyname(slave), "--board", "unix_sim")
    finally:
        os.close(master)
        os.close(slave)
    assert "did not answer within 3 s" in line and "Traceback" not in line


def test_make_bench_device_measures_on_the_board(deployed, tmp_path):
    # the day a board is at hand: the same verifications and taps, timed on it (here the unix
    # port on a pty, deployed as a board is), printed beside the estimate; bench/ is removed after
    proc = subprocess.run(["make", "-o", ".venv/.installed", "bench-device",
                           "PORT=" + deployed["dev"].port, "ARGS=--cases 2 --rounds 1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for label in ("rider verify, new key", "rider verify, cached key",
                  "issuer verify (table file)", "tap, first sighting", "tap, cached credential"):
        line = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith(label)]
        assert line and float(line[0].split()[len(label.split())]) > 0, proc.stdout
        assert "estimate" in line[0]
    assert not (deployed["dev"].root / "bench").exists()
    assert deployed["dev"].alive()


def test_bench_device_without_a_port_says_how():
    proc = subprocess.run(["make", "-o", ".venv/.installed", "bench-device"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage: make bench-device PORT=" in proc.stdout
