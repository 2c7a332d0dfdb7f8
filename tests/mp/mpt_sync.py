# Depot sync pieces on MicroPython that need no reader: the framing (COBS + CRC-32), HMAC-SHA256
# against RFC 4231 vectors. The reader's SyncServer on MicroPython (precompiled, as a reader runs
# it) is in tests/mp/sync_mp_cases.py, run by tests/firmware/test_sync_mp.py.
from validator import framing, hmac256

def test_framing_round_trip_and_resync():
    for n in (0, 1, 5, 253, 254, 255, 256, 508, 600, 2000):
        data = bytes((i * 7 + n) & 0xFF if i % 5 else 0 for i in range(n))
        wire = framing.encode(data)
        assert b"\x00" not in wire[1:-1] and wire[0] == 0 and wire[-1] == 0
        assert len(wire) <= framing.max_wire_size(n)
        assert framing.cobs_decode(framing.cobs_encode(data)) == data
        dec = framing.FrameDecoder(2304)
        got = []
        for i in range(0, len(wire), 7):  # in small pieces, as a UART delivers them
            got += dec.feed(wire[i:i + 7])
        assert got == [data], n
    dec = framing.FrameDecoder(100)
    noisy = b"\x13\x37garbage" + framing.encode(b"a") + bytes(framing.encode(b"b"))[:-3] + \
        framing.encode(bytes(300)) + framing.encode(b"c")
    assert dec.feed(noisy) == [b"a", b"c"] and dec.bad == 3


def test_crc32_fallback_is_the_same_function():
    for data in (b"", b"123456789", bytes(range(256))):
        assert framing._crc32_py(data) == framing.crc32(data)
    assert framing.crc32(b"123456789") == 0xCBF43926


def test_hmac_sha256_rfc4231():
    cases = [
        (b"\x0b" * 20, b"Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (b"Jefe", b"what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ]
    for key, msg, want in cases:
        assert hmac256.hmac_sha256(key, msg).hex() == want
        assert hmac256.Hmac(key).tag(msg[:3], msg[3:]).hex() == want
    assert hmac256.equal(b"abc", b"abc") and not hmac256.equal(b"abc", b"abd")
