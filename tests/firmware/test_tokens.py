"""Tokens on CPython: fuzzing (nothing raises, nothing forged is accepted), the credential cache,
the QR image (zxing-cpp reads it back, version within budget), the format's size, the wallet's
card answers. The MicroPython end-to-end tests are in test_tokens_mp.py."""
import hashlib
import os

import cbor2
import PIL.Image
import pytest
import zxingcpp
from hypothesis import HealthCheck, given, settings, strategies as st

import tokenkit as tk
from host_tools.common import ecsign, tokenformat
from host_tools.issuing.issuer import Issuer
from host_tools.sim.wallet import Wallet, qr_symbol
from validator import base45, credential as C, keyring, p256, reasons as R, tokens

QR_BUDGET = 13
ALL_REASONS = {R.OK, R.MALFORMED, R.UNSUPPORTED, R.UNKNOWN_KEY, R.KEY_RETIRED, R.BAD_ISSUER_SIG,
               R.BAD_RIDER_SIG, R.NFC_FAILED}
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tk.World(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="module")
def ring(world):
    return world.keyring()


@pytest.fixture(scope="module")
def wallet(world):
    return world.wallet()


# --- fuzzing: random text never raises, mutated codes never pass ---

@FUZZ
@given(st.text(max_size=400) | st.binary(max_size=400)
       | st.text(alphabet=base45.ALPHABET, max_size=400).map(lambda s: "FV1:" + s))
def test_random_text_never_raises(ring, text):
    reason, tok = tokens.verify_qr(text, ring, tk.NOW)
    assert reason in ALL_REASONS - {R.OK, R.NFC_FAILED} and tok is None


@FUZZ
@given(st.data())
def test_mutated_ride_codes_never_verify(world, ring, wallet, data):
    code = bytearray(wallet.ride_code_bytes(world.now, counter=5))
    original = bytes(code)
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        if not code:
            break
        i = data.draw(st.integers(0, len(code) - 1))
        if op == "set":
            code[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            code.insert(i, data.draw(st.integers(0, 255)))
        elif op == "delete":
            del code[i]
        else:
            del code[i:]
    reason, tok = tokens.verify_qr(tokenformat.qr_text(bytes(code)), ring, world.now,
                                   tokens.CredCache())
    if bytes(code) == original:
        assert reason == R.OK
    else:
        assert reason in ALL_REASONS - {R.OK, R.NFC_FAILED} and tok is None


@FUZZ
@given(st.data())
def test_hostile_nfc_devices_never_raise(world, ring, wallet, data):
    """The device answers each APDU with random bytes, a mutated genuine answer, an exception,
    None or a wrong type; the reader gives a reason, never an exception, and OK only when every
    answer was the genuine one."""
    rand = bytes(16)
    card = wallet.card(clock=lambda: world.now)
    genuine = []

    def live(apdu):
        resp = card.apdu(apdu)
        genuine.append(resp)
        return resp
    assert tokens.read_nfc(live, ring, 9, world.now, rand)[0] == R.OK

    tampered = [False]

    def hostile(apdu):
        k = len(hostile.calls)
        hostile.calls.append(apdu)
        real = genuine[k] if k < len(genuine) else b"\x90\x00"
        choice = data.draw(st.sampled_from(["real", "real", "random", "mutate", "raise", "none",
                                            "type"]))
        if choice == "real":
            return real
        tampered[0] = True
        if choice == "random":
            return data.draw(st.binary(max_size=300))
        if choice == "mutate":
            b = bytearray(real)
            # (an index drawn independently of the length: the genuine answers grow with the
            # wallet's counter from one example to the next, and hypothesis replays examples)
            b[data.draw(st.integers(0, 1 << 16)) % len(b)] ^= data.draw(st.integers(1, 255))
            return bytes(b)
        if choice == "raise":
            raise data.draw(st.sampled_from([OSError(5), RuntimeError("x"), ValueError()]))
        if choice == "none":
            return None
        return 12345
    hostile.calls = []
    reason, tok = tokens.read_nfc(hostile, ring, 9, world.now, rand)
    assert reason in ALL_REASONS
    if reason == R.OK:
        assert tok.kind == "nfc"
        assert not tampered[0]
    else:
        assert tok is None


# --- the credential cache ---

def test_cache_skips_the_issuer_signature_but_never_a_tampered_one(world, ring, monkeypatch):
    w = world.wallet()
    cache = tokens.CredCache(4)
    calls = []
    real_verify = ring.verify

    def counting(key, digest, sig):
        calls.append(digest)
        return real_verify(key, digest, sig)
    monkeypatch.setattr(ring, "verify", counting)
    assert tokens.verify_qr(w.ride_code(world.now), ring, world.now, cache)[0] == R.OK
    assert tokens.verify_qr(w.ride_code(world.now), ring, world.now, cache)[0] == R.OK
    assert len(calls) == 1 and cache.hits == 1 and len(cache) == 1
    # same credential, issuer signature tampered: not served from the cache
    code = cbor2.loads(w.ride_code_bytes(world.now))
    code[1] = bytes([code[1][0] ^ 1]) + code[1][1:]
    assert tokens.verify_qr(tokenformat.qr_text(cbor2.dumps(code)), ring, world.now,
                            cache)[0] == R.BAD_ISSUER_SIG
    # the other valid form of the same signature (s -> n - s) verifies and replaces the entry
    code = cbor2.loads(w.ride_code_bytes(world.now))
    r, s = code[1][:32], int.from_bytes(code[1][32:], "big")
    code[1] = r + (ecsign.N - s).to_bytes(32, "big")
    text = tokenformat.qr_text(cbor2.dumps(code))
    assert tokens.verify_qr(text, ring, world.now, cache)[0] == R.BAD_RIDER_SIG  # rider signed the first form
    # the key ring decides even on a hit: a retired key is refused
    assert tokens.verify_qr(w.ride_code(world.now), ring, world.now + 31 * tk.DAY,
                            cache)[0] == R.KEY_RETIRED


def test_cache_hit_needs_the_same_issuer_key(world):
    w = world.wallet()
    cache = tokens.CredCache()
    ring = world.keyring()
    assert tokens.verify_qr(w.ride_code(world.now), ring, world.now, cache)[0] == R.OK
    # a ring where key 7 is someone else's: the cached credential is verified again, and fails
    other = Issuer.new(tk.ACTIVE_KID)
    ring2 = keyring.KeyRing.from_body(tokenformat.keyring_body(
        [other.entry(world.now - tk.DAY, world.now + tk.DAY)]))
    assert tokens.verify_qr(w.ride_code(world.now), ring2, world.now, cache)[0] == R.BAD_ISSUER_SIG


def test_cache_keeps_the_decoded_rider_key_of_each_credential(world):
    w, v = world.wallet(), world.wallet()
    cache = tokens.CredCache(4)
    ring = world.keyring()
    for wallet in (w, v):
        assert tokens.verify_qr(wallet.ride_code(world.now), ring, world.now, cache)[0] == R.OK
    for wallet in (w, v):
        cred_bytes, isig = cbor2.loads(wallet.credential)
        cred = cbor2.loads(cred_bytes)
        issuer = ring.lookup(cred[C.C_KEY_ID], world.now)[1]
        e = tokens.CredCache.entry(hashlib.sha256(cred_bytes).digest(), isig, issuer.public_key)
        assert cache.get_key(e) == p256.decode_key(cred[C.C_RIDER_KEY])
    # on a hit the rider's signature is checked against the kept point: still the rider's own
    hits = cache.hits
    assert tokens.verify_qr(w.ride_code(world.now + 1), ring, world.now + 1, cache)[0] == R.OK
    assert cache.hits == hits + 1
    code = cbor2.loads(base45.decode(v.ride_code(world.now + 2)[len(tokens.QR_PREFIX):]))
    code[3] = code[3][:-1] + bytes([code[3][-1] ^ 1])    # the rider signature, one bit off
    bad = tokens.QR_PREFIX + base45.encode(cbor2.dumps(code))
    assert tokens.verify_qr(bad, ring, world.now + 2, cache)[0] == R.BAD_RIDER_SIG
    assert cache.hits == hits + 2


def test_cache_is_bounded_and_gives_recently_used_entries_a_second_chance():
    cache = tokens.CredCache(3)
    e = [bytes([i]) * 32 for i in range(200)]
    for i in range(3):
        cache.put(e[i])
    assert cache.get(e[0]) and cache.get(e[2])     # used since the hand passed
    cache.put(e[3])                                  # replaces 1, the only one not used
    assert len(cache) == 3
    assert not cache.get(e[1])
    assert cache.get(e[0]) and cache.get(e[2]) and cache.get(e[3])
    for i in range(4, 200):
        cache.put(e[i])
    assert len(cache) == 3
    assert sum(cache.get(x) for x in e) == 3
    assert cache.get(e[199])
    # entries bind the credential, the issuer signature and the issuer key
    k = tokens.CredCache.entry
    assert len({k(b"a" * 32, b"s" * 64, b"p" * 33), k(b"b" * 32, b"s" * 64, b"p" * 33),
                k(b"a" * 32, b"t" * 64, b"p" * 33), k(b"a" * 32, b"s" * 64, b"q" * 33)}) == 4
    # a digest that straddles two slots is not an entry
    c = tokens.CredCache(2)
    c.put(b"x" * 16 + b"y" * 16)
    c.put(b"y" * 16 + b"z" * 16)
    assert not c.get(b"y" * 32)
    c.clear()
    assert len(c) == 0 and not c.get(b"y" * 16 + b"z" * 16)


# --- sizes and the QR image ---

def test_qr_png_decodes_to_the_same_text_within_budget(world, wallet, tmp_path):
    path = tmp_path / "code.png"
    text = wallet.qr_png(path, world.now)
    found = zxingcpp.read_barcodes(PIL.Image.open(path))
    assert [b.text for b in found] == [text]
    assert found[0].format == zxingcpp.BarcodeFormat.QRCode
    sym = qr_symbol(text)
    assert sym.mode == "alphanumeric" and sym.error == "M"
    assert sym.version <= QR_BUDGET
    assert tokens.verify_qr(text, world.keyring(), world.now)[0] == R.OK


def test_typical_ride_code_is_version_11_m(world):
    w = world.wallet(account=2**40 + 12345, max_rides=10, max_amount=20000, product=3)
    w.counter = 999
    text = w.ride_code(world.now)
    assert len(text) <= 362            # the alphanumeric capacity of 11-M
    assert qr_symbol(text).version == 11


def test_largest_ride_code_the_format_allows_fits_the_budget():
    """Every field at its largest: 32-bit ids and limits, 64-bit account, amounts, times and
    counter."""
    w = Wallet()
    iss = Issuer.new(2**32 - 1)
    big = 2**64 - 1
    w.credential = iss.issue(big, w.public_key, big, big, 2**32 - 1, big, 2**32 - 1)
    text = w.ride_code(big, counter=big)
    assert qr_symbol(text).version <= QR_BUDGET
    ring = keyring.KeyRing.from_body(tokenformat.keyring_body([iss.entry(0, big)]))
    reason, tok = tokens.verify_qr(text, ring, big - 1)
    assert reason == R.OK and tok.counter == big and tok.account == big


def test_nfc_apdus_fit_240_bytes(world, wallet):
    card = wallet.card(clock=lambda: world.now)
    assert tokens.read_nfc(card.apdu, world.keyring(), 1, world.now, os.urandom(16))[0] == R.OK
    assert [c[1] for c, _ in card.log] == [tokens.INS_SELECT, tokens.INS_READ,
                                           tokens.INS_CHALLENGE]
    assert all(len(c) <= 240 and len(r) <= 240 for c, r in card.log)


# --- the wallet's card ---

def test_card_status_words(world, wallet):
    card = wallet.card(clock=lambda: world.now)
    sw = lambda resp: resp[-2:].hex()  # noqa: E731
    assert sw(card.apdu(tokens.apdu_read(0, 10))) == "6985"           # not selected yet
    assert sw(card.apdu(b"\x00\xa4\x04\x00\x03\xa0\x00\x00\x00")) == "6a82"  # other AID
    assert sw(card.apdu(b"\x00\xa4")) == "6700"
    assert sw(card.apdu(tokens.apdu_select())) == "9000"
    assert sw(card.apdu(b"\x00\xb0\x00\x00\x10")) == "6e00"            # wrong class
    assert sw(card.apdu(b"\x80\x12\x00\x00\x00")) == "6d00"            # unknown instruction
    assert sw(card.apdu(tokens.apdu_read(5000, 10))) == "6b00"         # offset beyond the end
    assert sw(card.apdu(b"\x80\x88\x00\x00\x05abcde\x00")) == "6700"   # challenge too short
    got = card.apdu(tokens.apdu_read(0, 10))
    assert sw(got) == "9000" and got[:-2] == wallet.credential[:10]


def test_phone_without_credential_does_not_offer_the_application():
    card = Wallet().card()
    assert card.apdu(tokens.apdu_select())[-2:] == b"\x6a\x82"
    reason, tok = tokens.read_nfc(card.apdu, keyring.KeyRing(), 1, tk.NOW, bytes(16))
    assert (reason, tok) == (R.UNSUPPORTED, None)


def test_token_fields_and_digests_match_the_spec(world, ring):
    """The signed digests written out from docs/tokens.md, independently of tokens.py."""
    w = world.wallet(account=77)
    code = w.ride_code_bytes(world.now, counter=9)
    cred, isig, dyn, rsig, recid = cbor2.loads(code)
    assert cbor2.loads(dyn) == {1: world.now, 2: 9}
    digest = hashlib.sha256(b"FV-ride-qr-1" + hashlib.sha256(cred).digest() + isig
                            + dyn).digest()
    from ecdsa import VerifyingKey
    vk = VerifyingKey.from_string(cbor2.loads(cred)[5], curve=ecsign.CURVE)
    assert vk.verify_digest(rsig, digest)
    ik = VerifyingKey.from_string(world.issuers[tk.ACTIVE_KID].public_key, curve=ecsign.CURVE)
    assert ik.verify_digest(isig, hashlib.sha256(cred).digest())
    reason, tok = tokens.verify_qr(tokenformat.qr_text(code), ring, world.now)
    assert reason == R.OK
    assert (tok.kind, tok.account, tok.counter, tok.time, tok.raw) == ("qr", 77, 9, world.now,
                                                                      code)
    assert tok.cred_hash == hashlib.sha256(cred).digest()
    assert tok.cred_id == cbor2.loads(cred)[3]
