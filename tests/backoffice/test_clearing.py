"""Clearing on the real PostgreSQL: verdicts, duplicates, the credit window, charges, held rides."""
import pytest

from clearingkit import DAY0, T0, IssuerKey, Operator, Reader, Rider, put
from host_tools.backoffice import clearing
from host_tools.backoffice.pgconn import CentralError

DAY = clearing.parse_day("2026-11-24")


@pytest.fixture
def store(central_db, tmp_path):
    """A central store with an issuer key, the fare tables of lines 12 and 15 loaded."""
    op = Operator(tmp_path)
    iss = IssuerKey(7)
    op.load(central_db.url, [op.keyring([iss.entry()], 1)],
            [op.config(12, {"1": 200, "2": 100}), op.config(15, {"1": 300, "2": 150},
                                                                transfer_window=1800)])
    central_db.iss = iss
    central_db.op = op
    return central_db


def rides(db):
    return {(r, s): (v, st) for r, s, v, st in db.q(
        "SELECT reader_id, seq, verdict, state FROM clearing_rides")}


def test_a_day_of_two_buses(store):
    a, b = Reader(1201, 12), Reader(1202, 15)
    alice = Rider(store.iss, 100001)
    bob = Rider(store.iss, 100002, product=2, max_rides=2)
    recs = []
    r, shot = a.tap(alice, T0, 200)
    recs.append(r)
    recs.append(b.tap(alice, T0 + 20, 300, code=shot)[0])     # the screenshot on the other bus
    recs.append(a.tap(bob, T0 + 100, 100)[0])
    recs.append(a.tap(bob, T0 + 4000, 100)[0])
    recs.append(b.tap(bob, T0 + 8000, 150, kind="nfc")[0])     # over the limit of 2 rides
    recs.append(a.refusal(bob, T0 + 8100))
    with store.connect() as c:
        assert put(c, recs) == 6
    s = clearing.run(store.url, DAY, workers=0)
    assert (s.verified, s.ok, s.bad) == (5, 5, 0)
    assert s.batch_id == "20261124-1"
    got = rides(store)
    assert got[(1202, 1)] == ("ok", "duplicate") and got[(1201, 1)] == ("ok", "charge")
    charges = dict(store.q("SELECT account, amount FROM clearing_charges"))
    assert charges == {100001: 200, 100002: 350}
    assert store.q("SELECT records, readers, kept_reader FROM clearing_duplicates") == [(2, 2, 1201)]
    assert store.q("SELECT account, rides, over_rides, over_amount FROM clearing_exposure") == [
        (100002, 3, 1, 150)]
    # again: nothing new
    s = clearing.run(store.url, DAY, workers=0)
    assert s.verified == 0 and s.batch_id is None


def test_needs_its_inputs(central_db):
    with pytest.raises(CentralError, match="fare clearing load"):
        clearing.run(central_db.url, DAY, workers=0)


def tampered_day(store):
    """Reader 1201 with a genuine ride and every kind of tampered record; reader 1202 clean."""
    a, b = Reader(1201, 12), Reader(1202, 15)
    alice, bob = Rider(store.iss, 1), Rider(store.iss, 2)
    stranger = Rider(IssuerKey(99), 3)                        # a key the issuer never had
    forged = Rider(store.iss, 4, signer=IssuerKey(7).key)     # key id 7, another key's signature
    recs = [a.tap(alice, T0, 200)[0]]
    raw, ctr = alice.qr(T0 + 700)
    recs.append(a.record(T0 + 700, "qr", raw, alice.account, ctr, alice.cred_id, 150))  # fare
    raw, ctr = bob.qr(T0 + 800)
    recs.append(a.record(T0 + 800, "qr", raw, 99, ctr, bob.cred_id, 200))              # account
    raw, ctr = bob.qr(T0 + 1500)
    recs.append(a.record(T0 + 1500, "qr", raw, bob.account, ctr + 5, bob.cred_id, 200))  # counter
    recs.append(a.tap(stranger, T0 + 2000, 200)[0])
    recs.append(a.tap(forged, T0 + 2100, 200)[0])
    raw, ctr = bob.nfc(1202, T0 + 2200)                       # answered to reader 1202
    recs.append(a.record(T0 + 2200, "nfc", raw, bob.account, ctr, bob.cred_id, 200))
    recs.append(b.tap(bob, T0 + 3000, 300)[0])
    with store.connect() as c:
        put(c, recs)
    return a, b


def test_tampered_records_make_a_suspect_reader_and_are_not_charged(store):
    tampered_day(store)
    s = clearing.run(store.url, DAY, workers=0)
    got = rides(store)
    assert [got[(1201, n)][0] for n in range(1, 8)] == [
        "ok", "fare_mismatch", "account_mismatch", "counter_mismatch", "unknown_key",
        "bad_issuer_sig", "nfc_other_reader"]
    assert got[(1201, 1)][1] == "held" and got[(1202, 1)] == ("ok", "charge")
    assert s.bad == 6 and s.suspects == 1 and s.held == 1
    (n, verdicts, evidence), = store.q("SELECT bad_records, verdicts, evidence FROM "
                                       "clearing_suspects WHERE reader_id = 1201")
    assert n == 6 and verdicts["fare_mismatch"] == 1
    assert "fare 150, line 12 product 1 costs 200" in evidence[0]["detail"]
    assert dict(store.q("SELECT account, amount FROM clearing_charges")) == {2: 300}
    # the operator decides: the reader's rides that stand are charged, the others never
    assert clearing.decide(store.url, 1201, DAY, "charge", note="looked at it") == 7
    s = clearing.run(store.url, DAY, workers=0)
    assert s.batch_id == "20261124-2" and s.batch_rides == 1 and s.suspects == 0
    assert dict(store.q("SELECT account, amount FROM clearing_charges WHERE batch_id = %s",
                        (s.batch_id,))) == {1: 200}


def test_a_voided_day_is_never_charged(store):
    tampered_day(store)
    clearing.run(store.url, DAY, workers=0)
    clearing.decide(store.url, 1201, DAY, "void")
    s = clearing.run(store.url, DAY, workers=0)
    assert s.batch_id is None and rides(store)[(1201, 1)] == ("ok", "void")
    with pytest.raises(CentralError, match="not suspect"):
        clearing.decide(store.url, 1202, DAY, "void")


def test_charges_payments_and_the_next_deny_list(store, tmp_path, capsys):
    """The loop: charge file, payment results (imported twice: no change), the deny list built
    from the store and its delta; the account that pays later leaves the list."""
    import json
    from host_tools import cli
    from host_tools.issuing import denylist_build as dlb
    a, b = Reader(1201, 12), Reader(1202, 15)
    riders = [Rider(store.iss, 500 + i) for i in range(4)]
    recs = [a.tap(r, T0 + 60 * i, 200)[0] for i, r in enumerate(riders)]
    r, shot = a.tap(riders[3], T0 + 3600, 200)
    recs += [r, b.tap(riders[3], T0 + 3620, 300, code=shot)[0]]
    with store.connect() as c:
        put(c, recs)
    db = store.url
    assert cli.main(["clearing", "run", "--db", db, "--through", "2026-11-24", "--workers", "0",
                     "--no-progress"]) == 0
    assert "20261124-1: 5 rides, 4 accounts charged, 10.00" in capsys.readouterr().out
    out_csv, out_json = tmp_path / "charges.csv", tmp_path / "charges.json"
    assert cli.main(["clearing", "export-charges", "--db", db, "--out", str(out_csv),
                     "--out", str(out_json)]) == 0
    doc = json.loads(out_json.read_text())
    assert doc["format"] == "fare-charges" and doc["total"] == 1000 and doc["count"] == 4
    assert out_csv.read_text().splitlines()[0] == "charge_id,batch_id,account,rides,amount,currency"
    results = {"format": "fare-payment-results", "version": 1, "results": [
        {"charge_id": c["charge_id"], "account": c["account"], "amount": c["amount"],
         "status": "failed" if c["account"] in ("500", "501") else "paid",
         "reason": "insufficient funds" if c["account"] in ("500", "501") else "",
         "at": "2026-11-24T19:00:00Z"} for c in doc["charges"]]}
    res = tmp_path / "results.json"
    res.write_text(json.dumps(results))
    assert cli.main(["clearing", "import-payments", str(res), "--db", db]) == 0
    assert "4 new" in capsys.readouterr().out
    before = store.q("SELECT * FROM clearing_payments ORDER BY 1, 2, 3")
    assert cli.main(["clearing", "import-payments", str(res), "--db", db]) == 0
    assert "0 new, 4 recorded already" in capsys.readouterr().out
    assert store.q("SELECT * FROM clearing_payments ORDER BY 1, 2, 3") == before
    # a result for a charge that is not there refuses the whole file
    bad = tmp_path / "bad.csv"
    bad.write_text("charge_id,account,amount,status,reason,at\n"
                   "20261124-1/502,502,200,paid,,2026-11-25T01:00:00Z\n"
                   "20261124-1/999,999,200,paid,,2026-11-25T01:00:00Z\n")
    assert cli.main(["clearing", "import-payments", str(bad), "--db", db]) == 1
    assert "no charge 20261124-1/999" in capsys.readouterr().err
    # the deny list: two unpaid accounts, the screenshot's credential
    now = DAY0 + 86400 + 5 * 3600
    full, delta = tmp_path / "deny.fvs", tmp_path / "deny-delta.fvs"
    args = ["denylist", "build", "--from-central", db, "--out", str(full), "--created", str(now),
            "--issuer-dir", str(store.op.dir / "issuer"), "--payment-grace", "1h"]
    assert cli.main(args) == 0
    assert "v1, 3 entries (3 added, 0 removed, 0 kept)" in capsys.readouterr().out
    _, model = dlb.read_list(full.read_bytes())
    tag_a, tag_c = dlb.KINDS["account"], dlb.KINDS["credential"]
    assert model.denied(tag_a, (500).to_bytes(8, "big"), now)
    assert model.denied(tag_c, riders[3].cred_id, now)
    assert not model.denied(tag_a, (502).to_bytes(8, "big"), now)
    # account 500 pays after all: it leaves the list, and the delta says so
    late = tmp_path / "late.csv"
    late.write_text("charge_id,account,amount,status,reason,at\n"
                    "20261124-1/500,500,200,paid,,2026-11-25T09:00:00Z\n")
    assert cli.main(["clearing", "import-payments", str(late), "--db", db]) == 0
    full2 = tmp_path / "deny2.fvs"
    args[args.index(str(full))] = str(full2)
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "v2, 2 entries (0 added, 1 removed, 2 kept)" in out and "paid (1 charge" in out
    assert "delta v1 -> v2, +0 -1 entries" in out
    _, model2 = dlb.read_list(full2.read_bytes())
    assert not model2.denied(tag_a, (500).to_bytes(8, "big"), now)
    assert model2.denied(tag_a, (501).to_bytes(8, "big"), now)
    assert store.q("SELECT kind, reason FROM denylist_entries WHERE version = 2 ORDER BY 1") == [
        ("account", "payment_failed"), ("credential", "duplicates")]
    # a list whose files could not be written is not recorded: the next delta is from v2 still
    from host_tools.backoffice import clearingcli
    from host_tools.common.clierrors import UserError

    def disk_full(path, data, what):
        raise UserError("cannot write %s %s: no space left on device" % (what, path))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(clearingcli, "write_bytes", disk_full)
        assert cli.main(args) == 1
    assert "no space left" in capsys.readouterr().err
    assert store.q("SELECT max(version) FROM denylist_versions") == [(2,)]
    # --salt: a new layout, so a full list only; --known-good is checked against it
    good = tmp_path / "good.csv"
    good.write_text("account,502\naccount,503\n")
    full3 = tmp_path / "deny3.fvs"
    args[args.index(str(full2))] = str(full3)
    assert cli.main(args + ["--salt", "0011223344556677", "--known-good", str(good)]) == 0
    out = capsys.readouterr().out
    assert "v3, 2 entries" in out and "no delta: --salt/--width give the list a new layout" in out
    _, model3 = dlb.read_list(full3.read_bytes())
    assert model3.salt == bytes.fromhex("0011223344556677")
    assert model3.denied(tag_a, (501).to_bytes(8, "big"), now)
    assert cli.main(args + ["--salt", "00zz"]) == 1
    assert "--salt is 16 hex digits" in capsys.readouterr().err
    # the reports, on the terminal and as CSV
    assert cli.main(["clearing", "report", "--db", db, "--csv", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "Unpaid accounts" in out and "insufficient funds" in out
    days = (tmp_path / "rep" / "days.csv").read_text().splitlines()
    assert days[1].split(",")[:6] == ["2026-11-24", "12", "4", "5", "1000", "1000"]
    assert days[2].split(",")[:7] == ["2026-11-24", "15", "1", "1", "300", "0", "1"]
