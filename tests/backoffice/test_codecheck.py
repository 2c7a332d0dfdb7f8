"""The host's re-verification of ride codes (host_tools/backoffice/codecheck.py) answers as the
reader does: a wallet's codes stand; every mutated code is refused by the host exactly when the
firmware (validator.tokens on CPython) refuses it, for the same reason, except a changed recovery
id, which the host does not use; the fast decoding path and the firmware's parsers agree."""
import os

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host_tools.backoffice import codecheck
from host_tools.common import tokenformat
from tokenkit import ACTIVE_KID, NOW, World
from validator import base45, cbor, reasons, tokens
from validator.credential import Reject, parse_credential, parse_dynamic

HOST_STATUS = {reasons.OK: "ok", reasons.MALFORMED: "malformed",
               reasons.UNSUPPORTED: "unsupported", reasons.UNKNOWN_KEY: "unknown_key",
               reasons.BAD_ISSUER_SIG: "bad_issuer_sig", reasons.BAD_RIDER_SIG: "bad_rider_sig"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("codecheck"))
    w.ring = w.keyring()
    w.checker_keys = {e["key_id"]: e["public_key"] for e in w.entries if e["key_id"] == ACTIVE_KID}
    w.rider = w.wallet(account=4242, product=2)
    w.code = base45.decode(w.rider.ride_code(NOW)[4:])
    return w


def host(world, code):
    return codecheck.Checker(world.checker_keys).check(code)


def firmware(world, code):
    return tokens.verify_qr("FV1:" + base45.encode(code), world.ring, NOW)[0]


def test_a_wallet_code_stands_with_its_fields(world):
    r = host(world, world.code)
    assert r.status == "ok" and r.kind == "qr" and r.time == NOW
    kid, cid, account, _, vf, vu, mr, ma, product = r.cred.fields
    assert (kid, account, product, mr, ma) == (ACTIVE_KID, 4242, 2, 10, 5000)
    assert r.counter == world.rider.counter


def test_an_nfc_transcript_names_the_reader_and_its_time(world):
    card = world.rider.card(clock=lambda: NOW)
    reason, tok = tokens.read_nfc(card.apdu, world.ring, 1201, NOW + 5, os.urandom(16))
    assert reason == reasons.OK
    r = host(world, tok.raw)
    assert (r.status, r.kind, r.challenge_reader, r.time) == ("ok", "nfc", 1201, NOW + 5)


def test_each_credential_and_each_signature_is_verified_once(world):
    c = codecheck.Checker(world.checker_keys)
    for _ in range(3):
        assert c.check(world.code).status == "ok"      # the same code three times
    assert c.check(base45.decode(world.rider.ride_code(NOW)[4:])).status == "ok"
    assert (c.issuer_verifies, c.rider_verifies, c.rider_reused) == (1, 2, 2)


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_a_mutated_code_is_refused_as_the_reader_refuses_it(world, data):
    code = bytearray(world.code)
    how = data.draw(st.sampled_from(("flip", "flip", "cut", "insert")))
    i = data.draw(st.integers(0, len(code) - 1))
    if how == "flip":
        code[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "cut":
        del code[i:]
    else:
        code.insert(i, data.draw(st.integers(0, 255)))
    code = bytes(code)
    fw, mine = firmware(world, code), host(world, code).status
    if fw == reasons.BAD_RIDER_SIG and mine == "ok":
        # only the recovery id changed: the reader's verifier needs it right, the host not
        a, b = cbor2.loads(code), cbor2.loads(world.code)
        assert a[:4] == b[:4] and a[4] != b[4]
        return
    assert mine == HOST_STATUS.get(fw, "?%s" % reasons.name(fw))


def _firmware_or_reason(parse, data):
    try:
        return parse(data)
    except Reject as e:
        return ("Reject", e.args[0])
    except cbor.CBORError:
        return ("Reject", reasons.MALFORMED)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_fast_path_parses_as_the_firmware(world, data):
    cred, _ = tokenformat.split_blob(world.rider.credential)
    dyn = tokenformat.dynamic_bytes(NOW, 17)
    for good in (cred, dyn):
        b = bytearray(good)
        for _ in range(data.draw(st.integers(0, 3))):
            b[data.draw(st.integers(0, len(b) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        b = bytes(b)
        fast = codecheck.parse_credential_fast if good is cred else codecheck.parse_dynamic_fast
        slow = parse_credential if good is cred else parse_dynamic
        assert _firmware_or_reason(fast, b) == _firmware_or_reason(slow, b)


def test_a_code_in_another_canonical_form_is_decoded_by_the_firmware(world):
    """Map keys in another order are fine for the reader: the host takes the slow path."""
    a = cbor2.loads(world.code)
    m = cbor2.loads(a[2])
    dyn = bytes([0xa2]) + cbor2.dumps(2) + cbor2.dumps(m[2]) + cbor2.dumps(1) + cbor2.dumps(m[1])
    assert codecheck.parse_dynamic_fast(dyn) == (m[1], m[2])
