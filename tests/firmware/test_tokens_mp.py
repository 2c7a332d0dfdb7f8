"""End to end on the MicroPython binary: wallet-made QR ride codes and NFC exchanges verify on the
reader's code; every flipped bit is refused with the right reason; unknown, retired, expired and
not-yet-valid issuer keys are refused; a recorded NFC answer is useless against a fresh challenge."""
import hashlib
import os

import cbor2
import pytest

import tokenkit as tk
from host_tools.common import ecsign, tokenformat
from host_tools.sim.wallet import Wallet
from validator import reasons as R
from validator import tokens

U64 = 2**64 - 1


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tk.World(tmp_path_factory.mktemp("tokens"))


def flip(data, i, bit):
    b = bytearray(data)
    b[i] ^= 1 << bit
    return bytes(b)


def strict(data):
    """Independent oracle for 'decodes strictly': cbor2 reads it and writes the same bytes back."""
    try:
        v = cbor2.loads(data)
    except Exception:
        return None
    try:
        return v if cbor2.dumps(v) == data else None
    except Exception:
        return None


def uint(v, limit=2**64):
    return type(v) is int and 0 <= v < limit


def expect_credential(cred, world, now):
    """The reason the reader must give for a ride code whose credential bytes are `cred` (and
    whose issuer signature was made over other bytes), from the format spec in docs/tokens.md."""
    m = strict(cred)
    if type(m) is not dict:
        return R.MALFORMED
    v = m.get(1)
    if v != 1:
        return R.UNSUPPORTED if uint(v) else R.MALFORMED
    ok = (set(m) == set(range(1, 11)) and uint(m[2], 2**32) and type(m[3]) is bytes
          and len(m[3]) == 16 and uint(m[4]) and type(m[5]) is bytes and len(m[5]) == 33
          and m[5][0] in (2, 3) and all(uint(m[k]) for k in (6, 7, 9))
          and uint(m[8], 2**32) and uint(m[10], 2**32))
    if not ok:
        return R.MALFORMED
    entry = {e["key_id"]: e for e in world.entries}.get(m[2])
    if entry is None:
        return R.UNKNOWN_KEY
    if entry["status"] or not entry["valid_from"] <= now <= entry["valid_until"]:
        return R.KEY_RETIRED
    return R.BAD_ISSUER_SIG


def expect_dynamic(dyn):
    m = strict(dyn)
    if type(m) is not dict or set(m) != {1, 2} or not (uint(m[1]) and uint(m[2])):
        return R.MALFORMED
    return R.BAD_RIDER_SIG


def expect_flip(code, i, bit, world):
    regions = tk.code_regions(code)
    bad = flip(code, i, bit)
    if i in regions["heads"]:
        return R.MALFORMED
    for name, (a, b) in regions.items():
        if name != "heads" and a <= i < b:
            part = bad[a:b]
            break
    if name == "cred":
        return expect_credential(part, world, world.now)
    if name == "isig":
        return R.BAD_ISSUER_SIG
    if name == "dyn":
        return expect_dynamic(part)
    if name == "rsig":
        return R.BAD_RIDER_SIG
    return R.BAD_RIDER_SIG if part[0] <= 3 else R.MALFORMED  # recid


def test_wallet_qr_codes_verify_with_every_field(world):
    w = world.wallet(account=U64, max_rides=12, max_amount=7000, product=4)
    cred, isig = tokenformat.split_blob(w.credential)
    fields = tokenformat.decode_credential(cred)
    texts = [w.ride_code(world.now + k) for k in range(3)]
    got = tk.run_cases(world, [tk.qr_case(t) for t in texts] + [tk.qr_case(texts[0] + "\r\n")])
    for k, (reason, tok, _) in enumerate(got):
        assert reason == R.OK
        assert tok["kind"] == "qr"
        assert tok["cred_id"] == fields["cred_id"]
        assert tok["cred_hash"] == hashlib.sha256(cred).hexdigest()
        assert (tok["account"], tok["key_id"], tok["max_rides"], tok["max_amount"],
                tok["product"]) == (U64, tk.ACTIVE_KID, 12, 7000, 4)
        assert (tok["valid_from"], tok["valid_until"]) == (fields["valid_from"],
                                                           fields["valid_until"])
        j = k if k < 3 else 0
        assert (tok["time"], tok["counter"]) == (world.now + j, j + 1)
        assert bytes.fromhex(tok["raw"]) == tokens.base45.decode(texts[j][4:])


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_flipped_bit_anywhere_is_refused_with_the_right_reason(world, use_cache):
    w = world.wallet()
    code = w.ride_code_bytes(world.now)
    cases, want = [tk.qr_case(tokenformat.qr_text(code))], [R.OK]  # first: warms the cache
    for i in range(len(code)):
        for bit in range(8):
            cases.append(tk.qr_case(tokenformat.qr_text(flip(code, i, bit)), i=i, bit=bit))
            want.append(expect_flip(code, i, bit, world))
    got = tk.run_cases(world, cases, cache=64 if use_cache else 0,
                       heap="110k" if use_cache else "4m")
    wrong = [(c.get("i"), c.get("bit"), w_, g[0]) for c, w_, g in zip(cases, want, got)
             if g[0] != w_]
    assert not wrong, "flips with the wrong reason (byte, bit, wanted, got): %r" % wrong[:20]
    # every part of the code was hit, and each kind of refusal happened
    assert {R.MALFORMED, R.UNSUPPORTED, R.UNKNOWN_KEY, R.BAD_ISSUER_SIG,
            R.BAD_RIDER_SIG} <= set(want)


def test_issuer_key_checks(world):
    cases, want = [], []
    for kid, reason in ((tk.RETIRED_KID, R.KEY_RETIRED), (tk.EXPIRED_KID, R.KEY_RETIRED),
                        (tk.FUTURE_KID, R.KEY_RETIRED), (tk.UNKNOWN_KID, R.UNKNOWN_KEY),
                        (tk.ACTIVE_KID, R.OK)):
        cases.append(tk.qr_case(world.wallet(kid=kid).ride_code(world.now)))
        want.append(reason)
    # the key ring is checked at the time given: the future key is fine once it starts
    cases.append(tk.qr_case(world.wallet(kid=tk.FUTURE_KID).ride_code(world.now), now=world.now + 2))
    want.append(R.OK)
    # a credential signed by one key but naming another
    w = Wallet()
    cred = tokenformat.credential_bytes(tk.ACTIVE_KID, os.urandom(16), 1, w.public_key, 0, 1, 1,
                                        1, 1)
    isig = tokenformat.sign_credential(world.issuers[tk.UNKNOWN_KID].key, cred)
    w.credential = tokenformat.credential_blob(cred, isig)
    cases.append(tk.qr_case(w.ride_code(world.now)))
    want.append(R.BAD_ISSUER_SIG)
    assert [g[0] for g in tk.run_cases(world, cases)] == want


def test_unsupported_and_malformed_texts(world):
    w = world.wallet()
    text = w.ride_code(world.now)
    other = Wallet()
    cred = tokenformat.credential_bytes(tk.ACTIVE_KID, os.urandom(16), 1, other.public_key, 0,
                                        1, 1, 1, 1, version=2)
    other.credential = tokenformat.credential_blob(
        cred, tokenformat.sign_credential(world.issuers[tk.ACTIVE_KID].key, cred))
    cases = {
        "FV2:" + text[4:]: R.UNSUPPORTED,
        "FV10:" + text[4:]: R.UNSUPPORTED,
        other.ride_code(world.now): R.UNSUPPORTED,
        "HC1:" + text[4:]: R.MALFORMED,
        "fv1:" + text[4:]: R.MALFORMED,
        text[:-1]: R.MALFORMED,
        text + "0": R.MALFORMED,
        text[:200]: R.MALFORMED,
        text + "00": R.MALFORMED,   # one trailing byte
        "FV1:": R.MALFORMED,
        "": R.MALFORMED,
        "FV1:" + "A" * 700: R.MALFORMED,   # over the length bound
        text.replace(":", "é", 1): R.MALFORMED,
        "FV1:" + tokens.base45.encode(cbor2.dumps([1, 2, 3])): R.MALFORMED,
    }
    got = tk.run_cases(world, [tk.qr_case(t) for t in cases])
    assert [g[0] for g in got] == list(cases.values())


def record_exchange(world, w, rand, reader_id=77, now=None, chunk=tokens.READ_CHUNK):
    """Run the exchange on CPython with the wallet's card; return its responses in order."""
    now = world.now if now is None else now
    card = w.card(clock=lambda: now, chunk=chunk)
    reason, tok = tokens.read_nfc(card.apdu, world.keyring(), reader_id, now, rand)
    assert reason == R.OK
    return card.log


def test_nfc_exchange_verifies_and_a_recorded_answer_fails_a_fresh_challenge(world):
    w = world.wallet(account=42)
    rand_a, rand_b = os.urandom(16), os.urandom(16)
    log = record_exchange(world, w, rand_a)
    responses = [r for _, r in log]
    cases = [
        tk.nfc_case(responses, rand_a),                         # the live exchange
        tk.nfc_case(responses, rand_b),                         # replayed, fresh nonce
        tk.nfc_case(responses, rand_a, reader_id=78),           # replayed at another reader
        tk.nfc_case(responses, rand_a, now=world.now + 1),      # replayed a second later
    ]
    got = tk.run_cases(world, cases)
    assert [g[0] for g in got] == [R.OK, R.BAD_RIDER_SIG, R.BAD_RIDER_SIG, R.BAD_RIDER_SIG]
    reason, tok, sent = got[0]
    assert sent == [c.hex() for c, _ in log]               # the reader sent the same APDUs
    assert all(len(bytes.fromhex(c)) <= 240 and len(r) <= 240 for c, r in zip(sent, responses))
    assert (tok["kind"], tok["account"], tok["time"], tok["counter"]) == ("nfc", 42, world.now, 1)
    # the transcript is enough for the back office to re-verify the rider's signature
    cred, isig, dyn, rsig, recid, challenge = cbor2.loads(bytes.fromhex(tok["raw"]))
    assert challenge == tokens.make_challenge(77, world.now, rand_a)
    cred_blob = tokenformat.split_blob(w.credential)
    assert [cred, isig] == list(cred_blob)
    vk = ecsign.CURVE and __import__("ecdsa").VerifyingKey.from_string(
        cbor2.loads(cred)[5], curve=ecsign.CURVE)
    assert vk.verify_digest(rsig, tokenformat.rider_digest_nfc(cred, isig, challenge, dyn))
    # a QR signature is not an NFC signature (domain separation)
    assert tokenformat.rider_digest_qr(cred, isig, dyn) != tokenformat.rider_digest_nfc(
        cred, isig, challenge, dyn)


def test_nfc_flipped_bits_and_broken_exchanges(world):
    w = world.wallet()
    rand = os.urandom(16)
    log = record_exchange(world, w, rand)
    responses = [r for _, r in log]
    assert len(responses) == 3  # SELECT, one READ, CHALLENGE
    cases, want = [], []
    # flips in the credential blob ([credential, issuer sig]) and in the answer
    # ([dynamic, rider sig, recid]); the status words too
    blob = responses[1][:-2]
    cred, isig = cbor2.loads(blob)
    cred_at = blob.index(cred)
    for i, bit in ((i, bit) for i in range(len(blob)) for bit in range(8)):
        bad = flip(blob, i, bit)
        cases.append(tk.nfc_case([responses[0], bad + b"\x90\x00", responses[2]], rand))
        if cred_at <= i < cred_at + len(cred):
            want.append(expect_credential(bad[cred_at:cred_at + len(cred)], world, world.now))
        elif i >= len(blob) - 64:
            want.append(R.BAD_ISSUER_SIG)
        else:
            want.append(R.MALFORMED)
    ans = responses[2][:-2]
    dyn, rsig, recid = cbor2.loads(ans)
    dyn_at = ans.index(dyn)
    for i, bit in ((i, bit) for i in range(len(ans)) for bit in range(8)):
        bad = flip(ans, i, bit)
        cases.append(tk.nfc_case(responses[:2] + [bad + b"\x90\x00"], rand))
        if dyn_at <= i < dyn_at + len(dyn):
            want.append(expect_dynamic(bad[dyn_at:dyn_at + len(dyn)]))
        elif len(ans) - 65 <= i < len(ans) - 1:
            want.append(R.BAD_RIDER_SIG)
        elif i == len(ans) - 1:
            want.append(R.BAD_RIDER_SIG if bad[i] <= 3 else R.MALFORMED)
        else:
            want.append(R.MALFORMED)
    for k in range(3):
        for j in (1, 2):
            bad = list(responses)
            bad[k] = flip(bad[k], len(bad[k]) - j, 3)
            cases.append(tk.nfc_case(bad, rand))
            want.append(R.NFC_FAILED)
    # the device leaves the field before each answer
    for k in range(3):
        cases.append(tk.nfc_case(responses[:k] + [None], rand))
        want.append(R.NFC_FAILED)
    # not our application / not our protocol version / truncated and oversized answers
    cases.append(tk.nfc_case([b"\x6a\x82"], rand))
    want.append(R.UNSUPPORTED)
    cases.append(tk.nfc_case([b"\x6d\x00"], rand))
    want.append(R.NFC_FAILED)
    cases.append(tk.nfc_case([cbor2.dumps({1: 2, 2: 100}) + b"\x90\x00"], rand))
    want.append(R.UNSUPPORTED)
    cases.append(tk.nfc_case([cbor2.dumps({1: 1, 2: 5000}) + b"\x90\x00"], rand))
    want.append(R.MALFORMED)
    cases.append(tk.nfc_case([b"\x90"], rand))
    want.append(R.NFC_FAILED)
    cases.append(tk.nfc_case([responses[0], b"\x01" * 300 + b"\x90\x00"], rand))
    want.append(R.NFC_FAILED)
    cases.append(tk.nfc_case([responses[0], b"\x90\x00"], rand))   # empty READ answer
    want.append(R.NFC_FAILED)
    cases.append(tk.nfc_case([responses[0]] + [blob[:1] + b"\x90\x00"] * 20, rand))  # dribbling
    want.append(R.NFC_FAILED)
    got = tk.run_cases(world, cases)
    wrong = [(k, w_, g[0]) for k, (w_, g) in enumerate(zip(want, got)) if g[0] != w_]
    assert not wrong, "(case, wanted, got): %r" % wrong[:20]


def test_nfc_reads_the_credential_in_chunks(world):
    w = world.wallet()
    rand = os.urandom(16)
    log = record_exchange(world, w, rand, chunk=64)
    reads = [c for c, _ in log if c[1] == tokens.INS_READ]
    assert len(reads) == 3
    got = tk.run_cases(world, [tk.nfc_case([r for _, r in log], rand)])
    assert got[0][0] == R.OK
    assert got[0][2] == [c.hex() for c, _ in log]
