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
    assert got[(1202, 1)] == ("ok", "duplicate") and got[(1201, 1)] == ("ok", "charged")
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
    assert got[(1201, 1)][1] == "held" and got[(1202, 1)] == ("ok", "charged")
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
