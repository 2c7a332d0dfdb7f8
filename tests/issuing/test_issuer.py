"""The issuer refuses to sign what every reader would refuse: a retired, expired, not yet valid
or unknown key, a credential field outside the reader's bounds, a rider key that is not a P-256
point. The reader's own code (validator.keyring, validator.credential) is the oracle. And the
CLI reports these as a message, not a traceback."""
import json
import os
import subprocess
import sys

import cbor2
import pytest

from clikit import fails
from host_tools import cli
from host_tools.common import tokenformat
from host_tools.issuing.issuer import ACTIVE, RETIRED, Issuer, IssuerStore
from host_tools.sim.wallet import Wallet
from mpharness import ROOT
from validator import credential as C, keyring, reasons as R, tokens

NOW = 1_780_000_000
DAY = 86400
U32 = 2**32
U64 = 2**64
# key id -> (valid from, valid until, status)
KEYS = {
    10: (NOW - 5 * DAY, NOW + 5 * DAY, ACTIVE),
    11: (NOW - 5 * DAY, NOW + 5 * DAY, RETIRED),
    12: (NOW - 10 * DAY, NOW - 1, ACTIVE),          # expired just before NOW
    13: (NOW + 1, NOW + 10 * DAY, ACTIVE),          # valid from just after NOW
}


def fare(*argv):
    return cli.main([str(a) for a in argv])


@pytest.fixture
def store(tmp_path):
    s = IssuerStore(tmp_path / "issuer")
    s.create_operator(2)
    for kid, (vf, vu, status) in KEYS.items():
        s.create_key(kid, vf, vu)
        if status == RETIRED:
            s.retire(kid)
    return s


def test_store_signs_with_a_key_exactly_when_readers_accept_it(store, tmp_path):
    ring_path = tmp_path / "keyring.fvs"
    store.export_keyring(ring_path)
    ring = keyring.KeyRing.load(str(ring_path), store.operator_keys(), NOW)
    times = sorted({t + d for vf, vu, _ in KEYS.values() for t in (vf, vu) for d in (-1, 0, 1)})
    checked = {True: 0, False: 0}
    for kid in list(KEYS) + [99]:
        for t in times:
            reader_accepts = ring.lookup(kid, t)[0] == R.OK
            if reader_accepts:
                assert store.issuer(kid, now=t).key_id == kid
            else:
                with pytest.raises(LookupError):
                    store.issuer(kid, now=t)
            checked[reader_accepts] += 1
    assert checked[True] and checked[False]


@pytest.mark.parametrize("kid, now, message", [
    (11, NOW, "issuer key 11 is retired"),
    (12, NOW, "issuer key 12 expired at %d" % (NOW - 1)),
    (13, NOW, "issuer key 13 is not valid before %d" % (NOW + 1)),
    (99, NOW, "no issuer key 99"),
])
def test_store_says_why_a_key_cannot_sign(store, kid, now, message):
    with pytest.raises(LookupError, match=message):
        store.issuer(kid, now=now)


def test_default_key_is_never_retired_or_expired(store):
    assert store.issuer(now=NOW).key_id == 10
    assert store.issuer(now=NOW + 6 * DAY).key_id == 13   # 10 has expired, 11 is retired
    store.retire(10)
    with pytest.raises(LookupError, match="no active issuer key valid at %d" % NOW):
        store.issuer(now=NOW)


# --- credential fields: the reader's verify_qr is the oracle ---

RIDER = Wallet()
SIGNER = Issuer.new(7)


def fields(**change):
    f = dict(key_id=7, cred_id=bytes(range(16)), account=123456789,
             rider_pub=RIDER.public_key, valid_from=NOW, valid_until=NOW + DAY, max_rides=10,
             max_amount=5000, product=2)
    f.update(change)
    return f


def unchecked_credential(f):
    """The credential's CBOR without the host's checks (what a careless issuer would sign)."""
    return cbor2.dumps({C.C_VERSION: C.VERSION, C.C_KEY_ID: f["key_id"], C.C_ID: f["cred_id"],
                        C.C_ACCOUNT: f["account"], C.C_RIDER_KEY: f["rider_pub"],
                        C.C_VALID_FROM: f["valid_from"], C.C_VALID_UNTIL: f["valid_until"],
                        C.C_MAX_RIDES: f["max_rides"], C.C_MAX_AMOUNT: f["max_amount"],
                        C.C_PRODUCT: f["product"]}, canonical=True)


def reader_reason(f):
    """What a reader says of a ride code made with this credential, signed by an issuer key it
    trusts (under the credential's key id when that is a valid id) and by RIDER."""
    cred = unchecked_credential(f)
    kid = f["key_id"] if type(f["key_id"]) is int and 0 <= f["key_id"] < U32 else SIGNER.key_id
    ring = keyring.KeyRing.from_body(
        tokenformat.keyring_body([Issuer(SIGNER.key, kid).entry(0, U64 - 1)]))
    isig = tokenformat.sign_credential(SIGNER.key, cred)
    text = tokenformat.qr_text(tokenformat.ride_code_bytes(RIDER.key, cred, isig, NOW, 1))
    return tokens.verify_qr(text, ring, NOW)[0]


# where parse_credential's tuple has each field
PARSED_INDEX = {"key_id": 0, "account": 2, "valid_from": 4, "valid_until": 5, "max_rides": 6,
                "max_amount": 7, "product": 8}
LIMITS = {"key_id": U32, "account": U64, "valid_from": U64, "valid_until": U64,
          "max_rides": U32, "max_amount": U64, "product": U32}


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_largest_value_of_each_field_is_issued_and_parsed(name):
    top = LIMITS[name] - 1
    f = fields(**{name: top}, **({"valid_until": top} if name == "valid_from" else {}))
    cred = tokenformat.credential_bytes(**f)
    assert cred == unchecked_credential(f)
    assert C.parse_credential(cred)[PARSED_INDEX[name]] == top
    assert reader_reason(f) == R.OK     # times are the policy's business, not verify_qr's


@pytest.mark.parametrize("name, bad", [(n, v) for n in sorted(LIMITS)
                                       for v in (LIMITS[n], -1, True, 1.0)])
def test_out_of_bounds_field_is_refused_by_issuer_as_by_reader(name, bad):
    f = fields(**{name: bad})
    with pytest.raises(ValueError, match=name.replace("_", ".")):
        tokenformat.credential_bytes(**f)
    assert reader_reason(f) == R.MALFORMED


@pytest.mark.parametrize("rider_pub, why, reader", [
    (b"\x02" + b"\xff" * 32, "not a point", R.BAD_RIDER_SIG),        # x >= p
    (b"\x02" + (1).to_bytes(32, "big"), "not a point", R.BAD_RIDER_SIG),  # no point has x = 1
    (b"\x04" + bytes(32), "compressed", R.MALFORMED),                 # 33 bytes, wrong prefix
    (b"\x02" + bytes(31), "compressed", R.MALFORMED),                 # short
    (RIDER.key.get_verifying_key().to_string("uncompressed"), "compressed", R.MALFORMED),
], ids=["x>=p", "x=1", "prefix04", "short", "uncompressed"])
def test_rider_key_must_be_a_compressed_p256_point(rider_pub, why, reader):
    f = fields(rider_pub=rider_pub)
    with pytest.raises(ValueError, match=why):
        tokenformat.credential_bytes(**f)
    assert reader_reason(f) == reader


def test_validity_must_not_end_before_it_starts():
    assert tokenformat.credential_bytes(**fields(valid_from=NOW, valid_until=NOW))
    with pytest.raises(ValueError, match="before valid_from"):
        tokenformat.credential_bytes(**fields(valid_from=NOW, valid_until=NOW - 1))


def test_credential_id_must_be_16_bytes():
    for cred_id in (bytes(15), bytes(17), "x" * 16):
        with pytest.raises(ValueError, match="credential id"):
            tokenformat.credential_bytes(**fields(cred_id=cred_id))


# --- the CLI: a message and no file, not a traceback ---

def test_issue_with_a_retired_or_expired_key_is_refused(store, tmp_path, capsys):
    out = tmp_path / "cred.cbor"
    rider = Wallet().public_key.hex()
    for kid, message in ((11, "retired"), (12, "expired")):
        assert message in fails(capsys, "issuer", "--dir", store.dir, "issue", "--rider-key",
                                rider, "--account", 1, "--key-id", kid, "--valid-from", NOW,
                                "--out", out)
        assert not out.exists()
    fare("issuer", "--dir", store.dir, "issue", "--rider-key", rider, "--account", 1,
         "--key-id", 10, "--valid-from", NOW, "--out", out)
    assert tokenformat.decode_credential(tokenformat.split_blob(out.read_bytes())[0])["key_id"] == 10


@pytest.mark.parametrize("argv, message", [
    (["--rider-key", "02" + "ff" * 32], "not a point"),
    (["--rider-key", "zz"], "not hex"),
    (["--rider-key", "RIDER", "--account", -1], "account"),
    (["--rider-key", "RIDER", "--max-rides", U32], "max rides"),
    (["--rider-key", "RIDER", "--valid-until", NOW - 1], "before valid_from"),
])
def test_issue_refuses_fields_readers_refuse(store, tmp_path, argv, message, capsys):
    rider = Wallet().public_key.hex()
    argv = [rider if a == "RIDER" else a for a in argv]
    if "--account" not in argv:
        argv += ["--account", 1]
    out = tmp_path / "cred.cbor"
    assert message in fails(capsys, "issuer", "--dir", store.dir, "issue", *argv, "--valid-from",
                            NOW, "--out", out)
    assert not out.exists()


def test_enroll_refusals_are_messages(store, tmp_path, capsys):
    w = tmp_path / "w"
    fare("wallet", "--dir", w, "new")
    for argv, message in ((["--key-id", 11], "retired"), (["--key-id", 99], "no issuer key 99"),
                          (["--account", U64], "account")):
        argv = argv + (["--account", 1] if "--account" not in argv else [])
        assert message in fails(capsys, "wallet", "--dir", w, "enroll", "--issuer", store.dir,
                                "--valid-from", NOW, *argv)
        assert not (w / "credential.cbor").exists()
    assert "no wallet in" in fails(capsys, "wallet", "--dir", tmp_path / "nowallet", "enroll",
                                   "--issuer", store.dir, "--account", 1, "--valid-from", NOW)


def test_enroll_failure_exits_with_a_line_not_a_traceback(store, tmp_path):
    w = tmp_path / "w"
    fare("wallet", "--dir", w, "new")
    run = subprocess.run([sys.executable, "-m", "host_tools.cli", "wallet", "--dir", str(w),
                          "enroll", "--issuer", str(store.dir), "--account", "1",
                          "--key-id", "11", "--valid-from", str(NOW)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stderr.strip() == "fare wallet: no issuer key to sign with: issuer key 11 is " \
                                 "retired: readers refuse what it signs"


def test_secrets_are_not_left_where_git_would_commit_them(tmp_path, capsys):
    """The operator's private key written inside a git working tree, where `git add -A` would
    pick it up, is warned about; outside one, or where .gitignore covers it, it is not. This
    repository's .gitignore covers the folders the README's commands would write."""
    import shutil
    if shutil.which("git") is None:
        pytest.skip("no git")
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    assert fare("issuer", "--dir", repo / "keys", "init-operator") == 0
    err = capsys.readouterr().err
    assert "warning: the operator's private key" in err and "git add -A" in err
    (repo / ".gitignore").write_text("issuer/\n")
    fare("issuer", "--dir", repo / "issuer", "init-operator")
    assert "warning" not in capsys.readouterr().err
    fare("issuer", "--dir", tmp_path / "outside", "init-operator")
    assert "warning" not in capsys.readouterr().err
    if (ROOT / ".git").exists():
        names = ["issuer/operator.pem", "issuer/issuer-keys/1.pem", "provision/reader-1/identity.cbor",
                 "provision/depot-keys/1.key", "wallet/rider.pem", "depot.sqlite"]
        proc = subprocess.run(["git", "-C", str(ROOT), "check-ignore", *names],
                              capture_output=True, text=True)
        assert proc.stdout.split() == names


def test_validity_is_printed_as_dates(tmp_path, capsys):
    d = tmp_path / "issuer"
    fare("issuer", "--dir", d, "init-operator")
    fare("issuer", "--dir", d, "new-key", "--key-id", 3, "--valid-from", 1795471200, "--days", 30)
    assert "valid 2026-11-23 22:00 UTC .. 2026-12-23 22:00 UTC" in capsys.readouterr().out
    assert fare("issuer", "--dir", d, "list") == 0
    out = capsys.readouterr().out
    assert "valid from" in out and "2026-11-23 22:00 UTC  2026-12-23 22:00 UTC  active" in out
    assert "1795471200" not in out
    w = tmp_path / "w"
    fare("wallet", "--dir", w, "new")
    fare("wallet", "--dir", w, "enroll", "--issuer", d, "--account", 9, "--valid-from",
         1795471200, "--days", 2)
    capsys.readouterr()
    fare("wallet", "--dir", w, "show")
    cred = json.loads(capsys.readouterr().out)["credential"]
    assert cred["valid_until_utc"] == "2026-11-25 22:00:00 UTC"
