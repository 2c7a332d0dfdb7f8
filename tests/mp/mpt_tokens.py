# Token core pieces on MicroPython that need no host data: CBOR and base45 edge cases, the
# credential cache, key ring lookups, APDU building, and garbage that must give a reason.
from validator import p256  # noqa: F401  (first: the largest module to compile)
from validator import base45, cbor, keyring, reasons, tokens

G = bytes.fromhex("036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296")


def _raises(f, *a):
    try:
        f(*a)
    except cbor.CBORError:
        return True
    except base45.Base45Error:
        return True
    return False


def test_cbor_round_trip_and_refusals():
    v = {1: [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, -1, -25, -2**64],
         "t": "zh: 请上车", 2: b"\x00" * 30, 3: [True, False, None], 4: {}}
    data = cbor.encode(v)
    assert cbor.decode(data) == v
    assert cbor.decode(memoryview(data)) == v
    for bad in ("5f4101ff", "9f01ff", "f93c00", "c11a5f000000", "1805", "190010", "a201020103",
                "0100", "", "5bffffffffffffffff", "9bffffffffffffffff", "62c0af", "63eda080",
                "f7", "f820", "a1f501"):
        assert _raises(cbor.decode, bytes.fromhex(bad)), bad
    assert _raises(cbor.decode, b"\x81" * 7 + b"\x01")
    assert _raises(cbor.decode, b"\x81" * 600 + b"\x01")
    assert _raises(cbor.encode, 2**64)


def test_base45_vectors():
    assert base45.encode(b"Hello!!") == "%69 VD92EX0"
    assert base45.decode("%69 VD92EX0") == b"Hello!!"
    assert base45.decode(b"UJCLQE7W581") == b"base-45"
    for bad in ("A", "GGW", "ZZ", "ab", "BB8\n"):
        assert _raises(base45.decode, bad), bad


def test_cache_is_bounded_lru():
    c = tokens.CredCache(2)
    a, b, d = b"a" * 32, b"b" * 32, b"d" * 32
    c.put(a)
    c.put(b)
    assert c.get(a)
    c.put(d)                 # replaces b: a was used since
    assert not c.get(b)
    assert c.get(a) and c.get(d)
    assert len(c) == 2
    e = tokens.CredCache.entry(a, b"s" * 64, G)
    assert e != tokens.CredCache.entry(a, b"t" * 64, G) and len(e) == 32


def test_keyring_lookup():
    ring = keyring.KeyRing([keyring.IssuerKey(1, G, 100, 200),
                            keyring.IssuerKey(2, G, 100, 200, keyring.RETIRED)])
    assert ring.lookup(1, 100)[0] == reasons.OK
    assert ring.lookup(1, 201) == (reasons.KEY_RETIRED, None)
    assert ring.lookup(1, 99) == (reasons.KEY_RETIRED, None)
    assert ring.lookup(2, 150) == (reasons.KEY_RETIRED, None)
    assert ring.lookup(3, 150) == (reasons.UNKNOWN_KEY, None)


def test_apdus():
    assert tokens.apdu_select() == bytes.fromhex("00a4040007f046415245563100")
    assert tokens.apdu_read(0x0123, 0xe0) == bytes.fromhex("80b00123e0")
    ch = tokens.make_challenge(7, 1780000000, b"\x11" * 16)
    assert ch == bytes.fromhex("00000007" "6a18a500") + b"\x11" * 16
    assert tokens.apdu_challenge(ch) == bytes.fromhex("8088000018") + ch + b"\x00"


def test_garbage_gives_reasons():
    ring = keyring.KeyRing([keyring.IssuerKey(1, G, 0, 2**40)])
    for text in ("", "FV1:", "FV1:%%%", "FV2:ABC", "FV1:" + "0" * 599, "FV1:" + "0" * 1000,
                 b"FV1:\xff\xfe", bytearray(b"FV1:AB"), None, 42, "FV1:" + base45.encode(
                     cbor.encode([b"", b"x" * 64, b"", b"y" * 64, 0]))):
        r, tok = tokens.verify_qr(text, ring, 1000)
        assert tok is None and r in (reasons.MALFORMED, reasons.UNSUPPORTED), (text, r)

    def broken(apdu):
        raise OSError(110)
    assert tokens.read_nfc(broken, ring, 1, 1000, b"\x00" * 16) == (reasons.NFC_FAILED, None)
    assert tokens.read_nfc(lambda a: b"\x6a\x82", ring, 1, 1000, b"\x00" * 16) == (
        reasons.UNSUPPORTED, None)
    assert tokens.read_nfc(lambda a: None, ring, 1, 1000, b"\x00" * 16) == (
        reasons.NFC_FAILED, None)
