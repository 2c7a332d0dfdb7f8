# validator.p256 on MicroPython without host data: RFC 6979 known answers, recovery ids,
# hostile input of every type, fixed-base tables on the simulated flash (littlefs), the
# generator's table.
import gc
import hashlib
import flashdev
from validator import p256, p256_field as F, p256_progs as G

# RFC 6979 A.2.5: P-256 key and the SHA-256 signatures of "sample" and "test"
UX = 0x60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6
UY = 0x7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299
SIGS = [
    (b"sample", 0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
     0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8),
    (b"test", 0xF1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367,
     0x019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083),
]
N = p256.N
P = p256.P


def b32(v):
    return v.to_bytes(32, "big")


# textbook affine arithmetic on big ints, independent of the engine (Fermat inverses)
def aff_add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0]:
        if (a[1] + b[1]) % P == 0:
            return None
        lam = (3 * a[0] * a[0] - 3) * pow(2 * a[1], P - 2, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], P - 2, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return x, (lam * (a[0] - x) - a[1]) % P


def aff_mul(k, a):
    r = None
    while k:
        if k & 1:
            r = aff_add(r, a)
        a = aff_add(a, a)
        k >>= 1
    return r


# p256._msm over fixed [(FixedBase, k)] and variable [((x, y), k)] bases: affine sum or None
def msm(L, fixed, var):
    counts = []
    for i in range(len(var)):
        assert F.load_key(var[i][0], i)
    if var:
        assert not F.call(G.VAR1 if len(var) == 1 else G.VAR2) & 1
    for i in range(len(var)):
        counts.append(p256._wnaf(var[i][1], p256.NAF_WIDTH, 32, p256._naf[i], p256._pos[i]))
    if p256._msm(L, fixed, len(var), counts):
        return None
    F.call(G.TO_AFFINE)
    F.call(G.STORE_XY2, F.io)
    return int.from_bytes(F.io[0:32], "big"), int.from_bytes(F.io[32:64], "big")


PUB65 = b"\x04" + b32(UX) + b32(UY)
PUB33 = bytes((2 + (UY & 1),)) + b32(UX)


def cases():
    for msg, r, s in SIGS:
        yield hashlib.sha256(msg).digest(), b32(r) + b32(s), b32(r) + b32(N - s)


def recid_of(pub, digest, sig):
    ids = [i for i in range(4) if p256.verify_recoverable(pub, digest, sig, i)]
    assert len(ids) == 1, ids
    return ids[0]


def test_rfc6979_known_answers():
    assert p256.decode_point(PUB33) == (UX, UY) == p256.decode_point(PUB65)
    fb = p256.FixedBase(PUB33)
    for digest, sig, neg in cases():
        for pub in (PUB33, PUB65):
            assert p256.verify(pub, digest, sig) is True
            assert p256.verify(pub, digest, neg) is True  # s and n - s both verify
            rid = recid_of(pub, digest, sig)
            assert recid_of(pub, digest, neg) == rid ^ 1  # n - s flips R's y
            assert rid & 2 == 0  # R.x >= n is astronomically rare
            assert p256.verify_fixed(fb, digest, sig) is True
            assert p256.verify_fixed(fb, digest, neg) is True
            bad = bytearray(digest)
            bad[31] ^= 1
            bad = bytes(bad)
            assert p256.verify(pub, bad, sig) is False
            assert p256.verify_fixed(fb, bad, sig) is False
            for i in range(4):
                assert p256.verify_recoverable(pub, bad, sig, i) is False
        gc.collect()


def test_every_flipped_signature_bit_fails():
    digest, sig, _ = next(cases())
    fb = p256.FixedBase(PUB65)
    rid = recid_of(PUB33, digest, sig)
    for i in range(0, 512, 7):
        b = bytearray(sig)
        b[i >> 3] ^= 1 << (i & 7)
        b = bytes(b)
        assert p256.verify(PUB33, digest, b) is False
        assert p256.verify_recoverable(PUB33, digest, b, rid) is False
        assert p256.verify_fixed(fb, digest, b) is False


def test_hostile_input_gives_false_never_raises():
    digest, sig, _ = next(cases())
    rid = recid_of(PUB65, digest, sig)
    r, s = sig[:32], sig[32:]
    keys = [b"", b"\x00", PUB65[:-1], PUB65 + b"\x00", PUB33[:-1], PUB33 + b"\x00",
            b"\x05" + PUB65[1:], b"\x04" + PUB33[1:], b"\x01" + PUB33[1:],
            b"\x04" + b32(UX) + b32((UY + 1) % P),          # off the curve
            b"\x04" + b32(P) + b32(UY), b"\x04" + b32(UX) + b32(P),  # coordinates >= p
            b"\x04" + bytes(64), b"\x04" + b"\xff" * 64, b"\x02" + b"\xff" * 32,
            b"\x02" + b32(1),                                # no point with this x
            None, 0, 7, "x" * 65, "x" * 33, [4] * 65, (2,) * 33, 1.5, {}, bytearray(65)]
    for k in keys:
        assert p256.decode_point(k) is None
        assert p256.verify(k, digest, sig) is False
        assert p256.verify_recoverable(k, digest, sig, rid) is False
        try:
            p256.FixedBase(k)
            raise AssertionError("FixedBase took a bad key")
        except ValueError:
            pass
    sigs = [b"", sig[:63], sig + b"\x00", bytes(64), r + bytes(32), bytes(32) + s,
            b32(N) + s, r + b32(N), b"\xff" * 64, None, 5, "x" * 64, [0] * 64, sig.hex()]
    fb = p256.FixedBase(PUB65)
    for g in sigs:
        assert p256.verify(PUB65, digest, g) is False
        assert p256.verify_recoverable(PUB65, digest, g, rid) is False
        assert p256.verify_fixed(fb, digest, g) is False
    for d in (b"", digest[:31], digest + b"\x00", None, 3, "x" * 32, [1] * 32):
        assert p256.verify(PUB65, d, sig) is False
        assert p256.verify_recoverable(PUB65, d, sig, rid) is False
        assert p256.verify_fixed(fb, d, sig) is False
    for i in (-1, 4, 1 << 70, None, "0", 0.0, b"\x00", [rid]):
        assert p256.verify_recoverable(PUB65, digest, sig, i) is False
    for f in (None, PUB65, "table", 3):
        assert p256.verify_fixed(f, digest, sig) is False
    assert p256.verify_recoverable(PUB65, digest, sig, rid) is True


def test_table_file_on_littlefs():
    dev = flashdev.FlashDev(64)
    flashdev.mount(dev, "/fl")
    try:
        p256.build_table(PUB33, "/fl/k1.tbl", 4, 8)
        fb = p256.FixedBase(PUB33, "/fl/k1.tbl")
        assert (fb.teeth, fb.width) == (4, 8)
        def run():
            for digest, sig, neg in cases():
                assert p256.verify_fixed(fb, digest, sig) is True
                assert p256.verify_fixed(fb, digest, neg) is True
                assert p256.verify_fixed(fb, hashlib.sha256(digest).digest(), sig) is False

        run()  # the first use allocates a few buffers
        gc.collect()
        before = gc.mem_free()
        run()
        gc.collect()
        assert gc.mem_free() >= before - 64, before - gc.mem_free()  # the table stays on flash
        fb.close()
        # a damaged table file is refused, so is a table of another key
        with open("/fl/k1.tbl", "r+b") as f:
            f.seek(5000)
            c = f.read(1)
            f.seek(5000)
            f.write(bytes((c[0] ^ 4,)))
        for pub in (PUB33, PUB65):
            try:
                p256.FixedBase(pub, "/fl/k1.tbl")
                raise AssertionError("damaged table accepted")
            except ValueError:
                pass
        p256.build_table(PUB65, "/fl/k2.tbl", 2, 5)
        other = b"\x04" + b32(p256.GX) + b32(p256.GY)
        try:
            p256.FixedBase(other, "/fl/k2.tbl")
            raise AssertionError("table of another key accepted")
        except ValueError:
            pass
        fb2 = p256.FixedBase(PUB65, "/fl/k2.tbl")
        digest, sig, _ = next(cases())
        assert p256.verify_fixed(fb2, digest, sig) is True
        fb2.close()
    finally:
        flashdev.umount("/fl")
        dev.close()


def test_ram_table_and_blob_agree():
    blob = p256.build_table(PUB65, None, 4, 5)
    assert len(blob) == p256.HEADER_SIZE + 4 * 16 * 64
    a = p256.FixedBase(PUB65)
    b = p256.FixedBase(PUB33, bytes(blob))
    assert (a.teeth, a.width) == (p256.RAM_TABLE_TEETH, p256.RAM_TABLE_WIDTH)
    for t in range(4):
        for m in (1, 7, 16):
            assert a.entry(t, m) == b.entry(t, m)
    # entry (t, m) = m * 2^(64 t) * Q, checked against textbook arithmetic
    assert a.entry(1, 7) == aff_mul(7 << 64, (UX, UY))


def test_generator_table():
    g = p256._generator()
    assert (g.x, g.y) == (p256.GX, p256.GY)
    assert g._data is None  # read by offset from p256_gtable.bin, not held in RAM
    assert (g.teeth, g.width) == (4, 8)
    assert g.entry(0, 3) == aff_mul(3, (p256.GX, p256.GY))
    assert g.entry(3, 100) == aff_mul(100 << 192, (p256.GX, p256.GY))


def test_decoded_point_as_key():
    pt = p256.decode_point(PUB33)
    for digest, sig, neg in cases():
        rid = recid_of(PUB65, digest, sig)
        assert p256.verify(pt, digest, sig) is True
        assert p256.verify_recoverable(pt, digest, neg, rid ^ 1) is True
        for bad in ((UX, (UY + 1) % P), (UX + P, UY), (UX, UY, 1), [UX, UY], (UX, P - UY)):
            assert p256.verify(bad, digest, sig) is False
            assert p256.verify_recoverable(bad, digest, sig, rid) is False


def test_chain_exceptional_additions():
    # P + P and P + (-P) inside the doubling chain (fixed and variable bases colliding)
    G = (p256.GX, p256.GY)
    assert msm(256, [], [(G, 1), (G, 1)]) == aff_add(G, G)
    assert msm(256, [], [(G, 1), ((p256.GX, P - p256.GY), 1)]) is None
    gb = p256._generator()
    for k in (1, 3, (1 << 128) + 1, N - 1):
        for L in (64, 128, 256):
            assert msm(L, [(gb, k)], [(G, N - k)]) is None
        assert msm(64, [(gb, k), (gb, N - k)], []) is None
        gc.collect()
    assert msm(128, [(gb, 5)], [(G, 5)]) == aff_mul(10, G)
