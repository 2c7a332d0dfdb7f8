"""The issuer and wallet host tools through the `fare` CLI: key files and their modes, rotation
and retirement in the exported key ring, credentials, ride codes as text and PNG, help texts."""
import os
import stat

import cbor2
import PIL.Image
import pytest
import zxingcpp

from clikit import fails
from host_tools import cli
from host_tools.common import tokenformat
from host_tools.issuing.issuer import IssuerStore
from host_tools.sim.wallet import Wallet
from validator import keyring, reasons as R, tokens

NOW = 1_780_000_000
DAY = 86400


def fare(*argv):
    return cli.main([str(a) for a in argv])


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def issuer_dir(tmp_path):
    d = tmp_path / "issuer"
    old = os.umask(0)  # even with a permissive umask, private keys are 0600
    try:
        fare("issuer", "--dir", d, "init-operator", "--key-id", 2)
        fare("issuer", "--dir", d, "new-key", "--key-id", 10, "--valid-from", NOW - 5 * DAY,
             "--valid-until", NOW + 5 * DAY)
        fare("issuer", "--dir", d, "new-key", "--key-id", 11, "--valid-from", NOW - DAY,
             "--valid-until", NOW + 30 * DAY)
    finally:
        os.umask(old)
    return d


def test_private_keys_are_owner_only_and_never_overwritten(issuer_dir, tmp_path, capsys):
    assert mode(issuer_dir / "operator.pem") == 0o600
    assert mode(issuer_dir / "issuer-keys" / "10.pem") == 0o600
    assert mode(issuer_dir / "issuer-keys" / "11.pem") == 0o600
    before = (issuer_dir / "operator.pem").read_bytes()
    assert "already has an operator key" in fails(capsys, "issuer", "--dir", issuer_dir,
                                                  "init-operator")
    assert "already exists" in fails(capsys, "issuer", "--dir", issuer_dir, "new-key",
                                     "--key-id", 10)
    assert (issuer_dir / "operator.pem").read_bytes() == before
    w = tmp_path / "w"
    old = os.umask(0)
    try:
        fare("wallet", "--dir", w, "new")
    finally:
        os.umask(old)
    assert mode(w / "rider.pem") == 0o600
    assert "already exists" in fails(capsys, "wallet", "--dir", w, "new")


def test_rotation_retirement_and_ride_codes_end_to_end(issuer_dir, tmp_path, capsys):
    wallets = {}
    for kid in (10, 11):
        w = tmp_path / ("w%d" % kid)
        fare("wallet", "--dir", w, "new")
        fare("wallet", "--dir", w, "enroll", "--issuer", issuer_dir, "--account", 1000 + kid,
             "--key-id", kid, "--valid-from", NOW - DAY, "--days", 2, "--max-rides", 7,
             "--max-amount", 900, "--product", 3)
        wallets[kid] = w
    # issue without --key-id picks the newest active key (11)
    w3 = tmp_path / "w3"
    fare("wallet", "--dir", w3, "new")
    fare("issuer", "--dir", issuer_dir, "issue", "--wallet", w3, "--account", 5,
         "--valid-from", NOW, "--out", tmp_path / "cred.cbor")
    fare("wallet", "--dir", w3, "import-credential", "--file", tmp_path / "cred.cbor")
    wallets[3] = w3

    ring_path = tmp_path / "keyring.fvs"
    tables = tmp_path / "tables"
    fare("issuer", "--dir", issuer_dir, "export-keyring", "--out", ring_path, "--tables", tables)
    ops = IssuerStore(issuer_dir).operator_keys()
    ring = keyring.KeyRing.load(str(ring_path), ops, NOW, tables=str(tables))
    assert ring.version == 1 and sorted(k.key_id for k in ring.keys()) == [10, 11]
    assert all(k.table is not None for k in ring.keys())

    capsys.readouterr()
    png = tmp_path / "code.png"
    fare("wallet", "--dir", wallets[10], "code", "--png", png, "--time", NOW)
    out = capsys.readouterr().out.splitlines()
    text = out[-1]
    assert "QR version 11-M" in out[0]
    assert [b.text for b in zxingcpp.read_barcodes(PIL.Image.open(png))] == [text]
    reason, tok = tokens.verify_qr(text, ring, NOW)
    assert reason == R.OK
    assert (tok.account, tok.key_id, tok.max_rides, tok.max_amount, tok.product, tok.counter,
            tok.valid_from, tok.valid_until) == (1010, 10, 7, 900, 3, 1, NOW - DAY, NOW + DAY)
    # the counter persists across runs and only goes up
    fare("wallet", "--dir", wallets[10], "code", "--time", NOW + 60)
    text2 = capsys.readouterr().out.strip()
    assert tokens.verify_qr(text2, ring, NOW)[1].counter == 2
    assert Wallet.load(wallets[10]).counter == 2
    fare("wallet", "--dir", wallets[3], "code")
    text3 = capsys.readouterr().out.strip()
    assert tokens.verify_qr(text3, ring, NOW)[1].key_id == 11

    # retire key 10 and export again: its codes are refused, key 11's still pass
    fare("issuer", "--dir", issuer_dir, "retire", "--key-id", 10)
    fare("issuer", "--dir", issuer_dir, "export-keyring", "--out", ring_path)
    ring = keyring.KeyRing.load(str(ring_path), ops, NOW)
    assert ring.version == 2
    assert tokens.verify_qr(text2, ring, NOW)[0] == R.KEY_RETIRED
    assert tokens.verify_qr(text3, ring, NOW)[0] == R.OK

    fare("wallet", "--dir", wallets[11], "show")
    shown = capsys.readouterr().out
    assert '"account": 1011' in shown and '"key_id": 11' in shown
    fare("issuer", "--dir", issuer_dir, "list")
    listing = capsys.readouterr().out
    assert "retired" in listing and "active" in listing


def test_tables_module_for_a_frozen_build(issuer_dir, tmp_path):
    mod = tmp_path / "issuer_tables.py"
    fare("issuer", "--dir", issuer_dir, "export-keyring", "--out", tmp_path / "k.fvs",
         "--tables-module", mod)
    ns = {}
    exec(mod.read_text(), ns)
    assert sorted(ns["TABLES"]) == [10, 11]
    ring = keyring.KeyRing.load(str(tmp_path / "k.fvs"), IssuerStore(issuer_dir).operator_keys(),
                                NOW, tables=ns["TABLES"])
    assert all(k.fixed is not None and k.table is ns["TABLES"][k.key_id] for k in ring.keys())


def test_issue_without_a_usable_key_fails_cleanly(tmp_path, capsys):
    d = tmp_path / "empty"
    fare("issuer", "--dir", d, "init-operator")
    assert "no issuer key to sign with" in fails(
        capsys, "issuer", "--dir", d, "issue", "--rider-key", "02" + "11" * 32, "--account", 1,
        "--out", tmp_path / "c")
    assert "no issuer key 99" in fails(capsys, "issuer", "--dir", d, "retire", "--key-id", 99)


COMMANDS = {
    "issuer": ["init-operator", "new-key", "retire", "list", "export-keyring", "issue"],
    "wallet": ["new", "enroll", "import-credential", "code", "show"],
}


def test_help_explains_each_command(capsys):
    with pytest.raises(SystemExit) as e:
        fare("--help")
    assert e.value.code == 0
    top = capsys.readouterr().out
    assert "issuer" in top and "wallet" in top
    for group, actions in COMMANDS.items():
        with pytest.raises(SystemExit):
            fare(group, "--help")
        text = capsys.readouterr().out
        for action in actions:
            assert action in text
            with pytest.raises(SystemExit) as e:
                fare(group, action, "--help")
            assert e.value.code == 0
            helptext = capsys.readouterr().out
            assert "usage:" in helptext and len(helptext.splitlines()) >= 3


def test_wallet_api_basics(tmp_path):
    w = Wallet()
    with pytest.raises(RuntimeError):
        w.ride_code(NOW)
    from host_tools.issuing.issuer import Issuer
    iss = Issuer.new(1)
    w.credential = iss.issue(9, w.public_key, NOW, NOW + DAY, 1, 2, 3)
    w.save(tmp_path / "w")
    again = Wallet.load(tmp_path / "w")
    assert again.public_key == w.public_key and again.credential == w.credential
    code = cbor2.loads(tokens.base45.decode(again.ride_code(NOW)[4:]))
    assert cbor2.loads(code[2]) == {1: NOW, 2: 1}
    assert tokenformat.split_blob(again.credential)[0] == code[0]
