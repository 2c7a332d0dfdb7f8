"""Every `fare` command, given what people really pass by mistake: a file that is not there, the
wrong kind of file (a key ring for a configuration, a text file for a database, a PNG for a
credential, a file signed by another operator or damaged), and an output that cannot be
written. Each must end with one line on standard error that says what is wrong, and a non-zero
exit status; never a Python traceback, never a silent success.

The commands run in this process (host_tools.cli.main, capsys): each case takes milliseconds.
Files that a case must leave alone (a database, a wallet's counter, a provisioning folder) are
checked afterwards."""
import hashlib
import json
import sqlite3
import time

import pytest

from clikit import fails
from host_tools.common import ecsign, signedfile
from host_tools.depot import depotdb
from host_tools.issuing import config_build
from host_tools.issuing.issuer import IssuerStore
from host_tools.sim.wallet import Wallet
from validator import signedfile as sf

NOW = int(time.time())


@pytest.fixture(scope="module")
def f(tmp_path_factory):
    """The files of one depot and back office, good and bad, by name."""
    d = tmp_path_factory.mktemp("files")
    store = IssuerStore(d / "issuer")
    store.create_operator(1)
    store.create_key(10, NOW - 86400, NOW + 30 * 86400)
    op, op_kid = store.operator()
    paths = {"dir": d, "issuer": d / "issuer", "operator": d / "issuer" / "operator.json",
             "keyring_json": d / "issuer" / "keyring.json"}
    paths["keyring"] = d / "keyring.fvs"
    store.export_keyring(paths["keyring"])
    paths["config"] = d / "config.fvs"
    paths["config"].write_bytes(config_build.build({"line": 1}, 3, op, op_kid))
    other = ecsign.new_key()  # another operator's key
    paths["config_other"] = d / "config-other.fvs"
    paths["config_other"].write_bytes(config_build.build({"line": 1}, 3, other, 7))
    bad = bytearray(paths["config"].read_bytes())
    bad[sf.HEADER_SIZE + 2] ^= 1
    paths["config_bad"] = d / "config-bad.fvs"
    paths["config_bad"].write_bytes(bytes(bad))
    paths["denylist_bad"] = d / "deny-bad.fvs"
    from host_tools.issuing import denylist_build
    data, _, _ = denylist_build.build_list({denylist_build.parse_id("account", "5"): 0}, 2, op,
                                           op_kid)
    data = bytearray(data)
    data[-1] ^= 1  # the signature's last byte
    paths["denylist_bad"].write_bytes(bytes(data))
    paths["text"] = d / "notes.txt"
    paths["text"].write_text("not what you think\n" * 20)
    paths["png"] = d / "qr.png"
    paths["png"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    paths["toml"] = d / "reader.toml"
    paths["toml"].write_text("line = 1\n[fares.1]\nadult = 200\n")
    paths["ids"] = d / "ids.csv"
    paths["ids"].write_text("account,5\n")
    paths["missing"] = d / "no-such-file"
    blocker = d / "a-file"
    blocker.write_text("in the way")
    paths["unwritable"] = blocker / "out"          # its folder is a file
    paths["unwritable_dir"] = blocker / "folder"
    paths["a_dir"] = d / "a-folder"
    paths["a_dir"].mkdir()
    w = Wallet()
    w.credential = store.issuer(10).issue(42, w.public_key, NOW - 60, NOW + 86400, 10, 5000, 1)
    w.save(d / "wallet")
    paths["wallet"] = d / "wallet"
    Wallet().save(d / "wallet-empty")
    paths["wallet_empty"] = d / "wallet-empty"
    paths["credential"] = d / "wallet" / "credential.cbor"
    db = depotdb.connect(str(d / "depot.sqlite"))
    db.close()
    paths["db"] = d / "depot.sqlite"
    other_app = sqlite3.connect(str(d / "other-app.sqlite"))
    other_app.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER)")
    other_app.commit()
    other_app.close()
    paths["other_app"] = d / "other-app.sqlite"
    paths["keys"] = d / "depot-keys"
    paths["keys"].mkdir()
    (paths["keys"] / "1201.key").write_text("ab" * 32)
    paths["opkey"] = "1:" + ecsign.public_bytes(op).hex()
    paths["pubhex"] = ecsign.public_bytes(op).hex()
    return {k: str(v) for k, v in paths.items()}


def _argv(template, f):
    return [a.format(**f) if isinstance(a, str) else a for a in template]


SYNC = ["sync", "--port", "/dev/ttyNOPE", "--no-progress", "--db", "{db}"]
CASES = {
    # -- issuer --
    "issuer init-operator into a folder that is a file": (
        ["issuer", "--dir", "{unwritable_dir}", "init-operator"], "is a file, not a folder"),
    "issuer new-key into a folder that is a file": (
        ["issuer", "--dir", "{unwritable_dir}", "new-key", "--key-id", "3"], "is a file"),
    "issuer list without an issuer folder": (
        ["issuer", "--dir", "{missing}", "list"], "no issuer keys in"),
    "issuer retire in a missing folder": (
        ["issuer", "--dir", "{missing}", "retire", "--key-id", "3"], "no issuer key 3"),
    "issuer export-keyring without an issuer folder": (
        ["issuer", "--dir", "{missing}", "export-keyring", "--out", "{dir}/k.fvs"],
        "no operator key in"),
    "issuer export-keyring to an unwritable place": (
        ["issuer", "--dir", "{issuer}", "export-keyring", "--out", "{unwritable}"],
        "cannot write key ring file"),
    "issuer issue for a missing wallet": (
        ["issuer", "--dir", "{issuer}", "issue", "--wallet", "{missing}", "--account", "1",
         "--out", "{dir}/c.cbor"], "no wallet in"),
    "issuer issue to an unwritable place": (
        ["issuer", "--dir", "{issuer}", "issue", "--wallet", "{wallet}", "--account", "1",
         "--out", "{unwritable}"], "cannot write credential file"),
    # -- wallet --
    "wallet new into a folder that is a file": (
        ["wallet", "--dir", "{unwritable_dir}", "new"], "is a file, not a folder"),
    "wallet code without a wallet": (["wallet", "--dir", "{missing}", "code"], "no wallet in"),
    "wallet code without a credential": (
        ["wallet", "--dir", "{wallet_empty}", "code"], "has no credential yet"),
    "wallet code --png to an unwritable place": (
        ["wallet", "--dir", "{wallet}", "code", "--png", "{unwritable}"], "cannot write PNG"),
    "wallet show without a wallet": (["wallet", "--dir", "{missing}", "show"], "no wallet in"),
    "wallet enroll without a wallet": (
        ["wallet", "--dir", "{missing}", "enroll", "--issuer", "{issuer}", "--account", "1"],
        "no wallet in"),
    "wallet enroll with a missing issuer folder": (
        ["wallet", "--dir", "{wallet_empty}", "enroll", "--issuer", "{missing}", "--account", "1"],
        "no issuer key to sign with"),
    "wallet import-credential of a missing file": (
        ["wallet", "--dir", "{wallet_empty}", "import-credential", "--file", "{missing}"],
        "cannot read credential file"),
    "wallet import-credential of a PNG": (
        ["wallet", "--dir", "{wallet_empty}", "import-credential", "--file", "{png}"],
        "is not a credential"),
    "wallet import-credential of another rider's credential": (
        ["wallet", "--dir", "{wallet_empty}", "import-credential", "--file", "{credential}"],
        "for another rider key"),
    # -- deny lists --
    "denylist build from a missing source": (
        ["denylist", "build", "{missing}", "--version", "1", "--issuer-dir", "{issuer}",
         "-o", "{dir}/d.fvs"], "cannot read source"),
    "denylist build from a binary source": (
        ["denylist", "build", "{png}", "--version", "1", "--issuer-dir", "{issuer}",
         "-o", "{dir}/d.fvs"], "is not a text file"),
    "denylist build from a signed file": (
        ["denylist", "build", "{config}", "--version", "1", "--issuer-dir", "{issuer}",
         "-o", "{dir}/d.fvs"], "is a signed file, not a source"),
    "denylist build to an unwritable place": (
        ["denylist", "build", "{ids}", "--version", "1", "--issuer-dir", "{issuer}",
         "-o", "{unwritable}"], "cannot write deny list file"),
    "denylist delta on a missing base": (
        ["denylist", "delta", "{missing}", "{ids}", "--version", "2", "--issuer-dir",
         "{issuer}", "-o", "{dir}/dd.fvs"], "cannot read base deny list"),
    "denylist delta on a configuration as base": (
        ["denylist", "delta", "{config}", "{ids}", "--version", "4", "--issuer-dir",
         "{issuer}", "-o", "{dir}/dd.fvs"], "not a full deny list"),
    "denylist show of a missing file": (
        ["denylist", "show", "{missing}", "--operator-key", "{opkey}"], "cannot read"),
    "denylist show of a configuration": (
        ["denylist", "show", "{config}", "--operator-key", "{opkey}"],
        "is a configuration, not a full deny list"),
    "denylist show --check on a list with a broken signature": (
        ["denylist", "show", "{denylist_bad}", "--operator-key", "{opkey}", "--check",
         "account:5"], "signature does not verify"),
    # -- configurations --
    "config build from a missing source": (
        ["config", "build", "{missing}", "--version", "1", "--issuer-dir", "{issuer}",
         "-o", "{dir}/c.fvs"], "cannot read"),
    "config build from a binary file": (
        ["config", "build", "{png}", "--version", "1", "--issuer-dir", "{issuer}",
         "-o", "{dir}/c.fvs"], "is not a text file"),
    "config build to an unwritable place": (
        ["config", "build", "{toml}", "--version", "1", "--issuer-dir", "{issuer}",
         "-o", "{unwritable}"], "cannot write configuration file"),
    "config check of a signed file": (["config", "check", "{config}"], "is a signed file"),
    "config show of a missing file": (
        ["config", "show", "{missing}", "--operator-key", "{opkey}"], "cannot read"),
    "config show of a key ring": (
        ["config", "show", "{keyring}", "--operator-key", "{opkey}"],
        "is a key ring, not a configuration"),
    "config show of a broken signature": (
        ["config", "show", "{config_bad}", "--operator-key", "{opkey}"],
        "signature does not verify with operator key 1"),
    "config show of another operator's file": (
        ["config", "show", "{config_other}", "--operator-key", "{opkey}"],
        "signed by operator key 7, not by the operator key given"),
    "config show without an operator key": (
        ["config", "show", "{config}", "--issuer-dir", "{missing}"], "give --operator-key"),
    # -- depot --
    "sync with missing keys": (SYNC + ["--keys", "{missing}"], "--keys {missing} does not exist"),
    "sync with a key ring as keys": (SYNC + ["--keys", "{keyring}"], "is not a text file"),
    "sync with a text file as keys": (SYNC + ["--keys", "{text}"], "neither a folder"),
    "sync into a text file as database": (
        ["sync", "--port", "/dev/ttyNOPE", "--no-progress", "--keys", "{keys}", "--db",
         "{text}"], "is not a depot database"),
    "sync into another application's database": (
        ["sync", "--port", "/dev/ttyNOPE", "--no-progress", "--keys", "{keys}", "--db",
         "{other_app}"], "has tables invoices"),
    "sync pushing a key ring as configuration": (
        SYNC + ["--keys", "{keys}", "--operator-key", "{opkey}", "--push-config", "{keyring}"],
        "--push-config {keyring} is a key ring, not a configuration"),
    "sync pushing a configuration as key ring": (
        SYNC + ["--keys", "{keys}", "--operator-key", "{opkey}", "--push-keyring", "{config}"],
        "is a configuration, not a key ring"),
    "sync pushing a configuration with a broken signature": (
        SYNC + ["--keys", "{keys}", "--operator-key", "{opkey}", "--push-config",
                "{config_bad}"], "signature does not verify"),
    "sync pushing a missing file": (
        SYNC + ["--keys", "{keys}", "--operator-key", "{opkey}", "--push-denylist",
                "{missing}"], "cannot read full deny list file"),
    "sync pushing without an operator key": (
        SYNC + ["--keys", "{keys}", "--push-config", "{config}", "--depot-config",
                "{dir}/none.toml"], "cannot read depot configuration"),
    "report on a missing database": (["report", "--db", "{missing}"], "no depot database at"),
    "report on a text file": (["report", "--db", "{text}"], "is not a depot database"),
    "report on another application's database": (
        ["report", "--db", "{other_app}"], "is not a depot database"),
    "report on a day not in the calendar": (
        ["report", "--db", "{db}", "--day", "2026-13-45"], "is not a date in the calendar"),
    "report on a day written another way": (
        ["report", "--db", "{db}", "--day", "23/11/2026"], "is not written YYYY-MM-DD"),
    "report to an unwritable place": (
        ["report", "--db", "{db}", "--out", "{unwritable}"], "cannot write report file"),
    "report in an unknown time zone": (
        ["report", "--db", "{db}", "--time-zone", "Mars/Olympus"], "unknown time zone"),
    "report with a depot configuration that is not TOML": (
        ["report", "--db", "{db}", "--depot-config", "{png}"], "is not a text file"),
    "export from a missing database": (["export", "--db", "{missing}"], "no depot database"),
    "export from a text file": (["export", "--db", "{text}"], "is not a depot database"),
    "export to an unwritable place": (
        ["export", "--db", "{db}", "--out", "{unwritable}"], "cannot write export file"),
    "export to a folder": (["export", "--db", "{db}", "--out", "{a_dir}"], "is a directory"),
    # -- fleet --
    "provision with a key ring file as the operator key": (
        ["provision", "--reader-id", "5", "--operator-key-pub", "{keyring_json}", "--out",
         "{dir}/prov-a"], "is not an operator key file"),
    "provision with a missing operator key file": (
        ["provision", "--reader-id", "5", "--operator-key-pub", "{dir}/none.json", "--out",
         "{dir}/prov-a"], "cannot read operator key file"),
    "provision with a key ring as the configuration": (
        ["provision", "--reader-id", "5", "--operator-key-pub", "{operator}", "--config",
         "{keyring}", "--out", "{dir}/prov-a"], "--config {keyring} is a key ring, not a"),
    "provision with a configuration as the key ring": (
        ["provision", "--reader-id", "5", "--operator-key-pub", "{operator}", "--keyring",
         "{config}", "--out", "{dir}/prov-a"], "is a configuration, not a key ring"),
    "provision with a configuration of another operator": (
        ["provision", "--reader-id", "5", "--operator-key-pub", "{operator}", "--config",
         "{config_other}", "--out", "{dir}/prov-a"], "signed by operator key 7"),
    "provision with a damaged configuration": (
        ["provision", "--reader-id", "5", "--operator-key-pub", "{operator}", "--config",
         "{config_bad}", "--out", "{dir}/prov-a"], "signature does not verify"),
    "provision with a missing configuration": (
        ["provision", "--reader-id", "5", "--operator-key-pub", "{operator}", "--config",
         "{missing}", "--out", "{dir}/prov-a"], "cannot read configuration file"),
    "provision into a folder that is a file": (
        ["provision", "--reader-id", "5", "--operator-key-pub", "{operator}", "--out",
         "{unwritable_dir}"], "is a file, not a folder"),
    "deploy to a missing port": (
        ["deploy", "--port", "{missing}", "--board", "unix_sim"], "not found"),
    "deploy a missing provisioning folder": (
        ["deploy", "--port", "{missing}", "--board", "unix_sim", "--provision", "{dir}/none"],
        "is not a folder"),
    "flash a missing image": (
        ["flash", "--port", "/dev/null", "--board", "esp32_devkitc", "--firmware", "{missing}",
         "--dry-run"], "not found"),
    "flash a text file as image": (
        ["flash", "--port", "/dev/null", "--board", "esp32_devkitc", "--firmware", "{text}",
         "--dry-run"], "image too small"),
    "serve-unix-port on a file as root": (
        ["serve-unix-port", "--root", "{unwritable_dir}"], "is a file, not a folder"),
    # -- simulation --
    "sim into an unwritable place": (["sim", "--out", "{unwritable_dir}"], "is a file"),
    "sim into a file": (["sim", "--out", "{text}"], "is not a directory"),
    "scenario of a missing file": (["scenario", "{missing}"], "cannot read scenario file"),
    "scenario of a binary file": (["scenario", "{png}"], "is not a text file"),
    "scenario of a signed file": (["scenario", "{config}"], "is a signed file"),
    "scenario with an unwritable JUnit report": (
        ["scenario", "{toml}", "--junit", "{unwritable}"], "cannot write JUnit report"),
    "emulate qr with a missing codes file": (
        ["emulate", "qr", "--file", "{missing}"], "cannot read codes file"),
    "emulate pn532 with a missing wallet": (
        ["emulate", "pn532", "--wallet", "{missing}"], "no wallet in"),
    "p256-tables table of a missing key": (
        ["p256-tables", "table", "zz", "-o", "{dir}/t.p2t"], "not a P-256 public key"),
    "p256-tables table to an unwritable place": (
        ["p256-tables", "table", "{pubhex}", "-o", "{unwritable}"], "cannot write"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_mistake_is_one_line_and_a_non_zero_exit(case, f, capsys):
    template, expect = CASES[case]
    line = fails(capsys, *_argv(template, f))
    assert expect.format(**f) in line, line


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_read_only_commands_never_create_or_alter_a_database(f, tmp_path, capsys):
    missing = tmp_path / "typo.sqlite"
    for cmd in (["report"], ["export"], ["export", "--format", "json"]):
        fails(capsys, *cmd, "--db", missing)
        assert not missing.exists() and list(tmp_path.iterdir()) == []
    before = _digest(f["other_app"])
    fails(capsys, "report", "--db", f["other_app"])
    fails(capsys, "export", "--db", f["other_app"])
    fails(capsys, "sync", "--port", "/dev/ttyNOPE", "--keys", f["keys"], "--db", f["other_app"])
    assert _digest(f["other_app"]) == before
    tables = sqlite3.connect(f["other_app"]).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert tables == [("invoices",)]


def test_a_failed_png_uses_up_no_counter_value(f, capsys):
    counter = json.loads(open(f["wallet"] + "/state.json").read())["counter"]
    fails(capsys, "wallet", "--dir", f["wallet"], "code", "--png", f["unwritable"])
    fails(capsys, "wallet", "--dir", f["wallet"], "code", "--png", f["a_dir"])
    assert json.loads(open(f["wallet"] + "/state.json").read())["counter"] == counter


def test_a_refused_provisioning_writes_nothing(f, tmp_path, capsys):
    out = tmp_path / "reader-5"
    fails(capsys, "provision", "--reader-id", 5, "--operator-key-pub", f["operator"],
          "--config", f["keyring"], "--out", out)
    assert not out.exists() and not (tmp_path / "depot-keys").exists()


def test_the_good_files_pass_the_same_checks(f, tmp_path, capsys):
    """The fixtures' good files are accepted by the commands that refused the bad ones (so that
    the refusals above are about the mistake, not about the set-up)."""
    from clikit import fare
    rc, out, err = fare(capsys, "config", "show", f["config"], "--operator-key", f["opkey"])
    assert rc == 0 and "signature: valid, operator key 1" in out, err
    rc, out, err = fare(capsys, "provision", "--reader-id", 5, "--operator-key-pub",
                        f["operator"], "--config", f["config"], "--keyring", f["keyring"],
                        "--out", tmp_path / "reader-5")
    assert rc == 0, err
    assert (tmp_path / "reader-5" / "config.fvs").read_bytes() == open(f["config"], "rb").read()
    rc, out, err = fare(capsys, "report", "--db", f["db"])
    assert rc == 0 and "no trips" in out, err
    rc, out, err = fare(capsys, "export", "--db", f["db"], "--out", tmp_path / "t.csv")
    assert rc == 0 and (tmp_path / "t.csv").read_text().startswith("reader_id,seq,time,")


def test_the_version(capsys):
    from host_tools import cli
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("fare ")


def test_every_command_and_option_explains_itself():
    """Every command has a description (its --help says what it does) and every option a
    help text."""
    import argparse
    from host_tools import cli
    missing = []

    def walk(parser, name):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs and not parser.description:
            missing.append("%s: no description" % name)
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub_name, sub in a.choices.items():
                    walk(sub, name + " " + sub_name)
            elif not a.help and a.dest != "help":
                missing.append("%s %s: no help" % (name, "/".join(a.option_strings) or a.dest))
    walk(cli.build_parser(), "fare")
    assert missing == []
