"""validator.p256 on CPython: known answers (NIST CAVP SigVer, RFC 6979), differential tests
against python-ecdsa (hypothesis), hostile input, fixed-base tables and their generators.
The same checks run on the MicroPython binary in test_p256_mp.py and mp/mpt_p256.py."""
import hashlib
import random
from pathlib import Path

import pytest
from ecdsa import NIST256p, SigningKey, VerifyingKey
from ecdsa.ellipticcurve import INFINITY, Point
from ecdsa.keys import BadSignatureError, MalformedPointError
from ecdsa.util import sigdecode_string
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_tools.common import ecsign
from host_tools.issuing import p256tables
from validator import p256
from p256_xtensa_kit import msm_affine

N = p256.N
P = p256.P
CAVP = (Path(__import__("cryptography_vectors").__file__).parent
        / "asymmetric" / "ECDSA" / "FIPS_186-3" / "SigVer.rsp")

# RFC 6979, appendix A.2.5 (P-256), SHA-256 signatures
RFC6979_X = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
RFC6979_UX = 0x60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6
RFC6979_UY = 0x7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299
RFC6979_SIGS = [
    (b"sample", 0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
     0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8),
    (b"test", 0xF1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367,
     0x019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083),
]


def i2b(v, n=32):
    return v.to_bytes(n, "big")


def uncompressed(x, y):
    return b"\x04" + i2b(x) + i2b(y)


def compressed(x, y):
    return bytes((2 + (y & 1),)) + i2b(x)


def cavp_cases():
    """[(pub65, digest, sig64, expected)] of the [P-256,SHA-256] section of SigVer.rsp."""
    cases, section, cur = [], None, {}
    for line in CAVP.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
            continue
        if section != "[P-256,SHA-256]" or " = " not in line:
            continue
        k, v = line.split(" = ", 1)
        cur[k] = v
        if k == "Result":
            digest = hashlib.sha256(bytes.fromhex(cur["Msg"])).digest()
            pub = b"\x04" + bytes.fromhex(cur["Qx"]) + bytes.fromhex(cur["Qy"])
            sig = bytes.fromhex(cur["R"]) + bytes.fromhex(cur["S"])
            cases.append((pub, digest, sig, v.startswith("P")))
            cur = {}
    return cases


def rfc6979_cases():
    """[(pub65, digest, sig64, recid)] from RFC 6979 A.2.5."""
    pub = uncompressed(RFC6979_UX, RFC6979_UY)
    out = []
    for msg, r, s in RFC6979_SIGS:
        digest = hashlib.sha256(msg).digest()
        out.append((pub, digest, i2b(r) + i2b(s), true_recid(pub, digest, i2b(r) + i2b(s))))
    return out


def ecdsa_verify(pub, digest, sig):
    """python-ecdsa's verdict (the reference). When u1*G + u2*Q is the point at infinity
    python-ecdsa 0.19 raises TypeError (x() is None): that is a rejection."""
    try:
        vk = VerifyingKey.from_string(pub, curve=NIST256p, hashfunc=hashlib.sha256)
        return vk.verify_digest(sig, digest, sigdecode=sigdecode_string)
    except (BadSignatureError, MalformedPointError, ValueError, AssertionError, TypeError):
        return False


def true_recid(pub, digest, sig):
    """Recovery id of a signature that verifies (python-ecdsa arithmetic), else None."""
    if not ecdsa_verify(pub, digest, sig):
        return None
    q = VerifyingKey.from_string(pub, curve=NIST256p).pubkey.point
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    e = int.from_bytes(digest, "big")
    w = pow(s, -1, N)
    R = NIST256p.generator * (e * w % N) + q * (r * w % N)
    return (R.y() & 1) | (2 if R.x() != r else 0)


def key_from(secret):
    return SigningKey.from_secret_exponent(secret, curve=NIST256p, hashfunc=hashlib.sha256)


# ------------------------------------------------------------------ known answers


def test_cavp_sigver_p256_sha256():
    cases = cavp_cases()
    assert len(cases) == 15 and any(c[3] for c in cases) and not all(c[3] for c in cases)
    for pub, digest, sig, ok in cases:
        assert p256.verify(pub, digest, sig) is ok
        x, y = p256.decode_point(pub)
        assert p256.verify(compressed(x, y), digest, sig) is ok
        assert p256.verify_fixed(p256.FixedBase(pub), digest, sig) is ok
        assert ecdsa_verify(pub, digest, sig) is ok  # the reference agrees with NIST
        rid = true_recid(pub, digest, sig)
        for recid in range(4):
            assert p256.verify_recoverable(pub, digest, sig, recid) is (ok and recid == rid)


def test_rfc6979_vectors():
    # the RFC's key pair and signatures; python-ecdsa's deterministic signer reproduces them
    sk = key_from(RFC6979_X)
    assert ecsign.public_bytes(sk, compressed=False) == uncompressed(RFC6979_UX, RFC6979_UY)
    for (pub, digest, sig, recid), (msg, r, s) in zip(rfc6979_cases(), RFC6979_SIGS):
        assert ecsign.sign_digest(sk, digest) == (sig, recid)
        for key in (pub, compressed(RFC6979_UX, RFC6979_UY)):
            assert p256.verify(key, digest, sig)
            assert p256.verify_recoverable(key, digest, sig, recid)
            assert not p256.verify_recoverable(key, digest, sig, recid ^ 1)
            assert p256.verify_fixed(p256.FixedBase(key), digest, sig)
            other = i2b(r) + i2b(N - s)  # n - s verifies too (standard ECDSA), R's y flips
            assert p256.verify(key, digest, other)
            assert p256.verify_recoverable(key, digest, other, recid ^ 1)
            assert not p256.verify(key, hashlib.sha256(msg + b".").digest(), sig)


# ------------------------------------------------------------------ differential (hypothesis)

TAMPER = ("none", "neg_s", "sig_bit", "digest_bit", "key_bit", "other_key", "swap_rs")


def make_case(secret, digest, tamper, where, comp):
    sk = key_from(secret)
    sig, recid = ecsign.sign_digest(sk, digest)
    pub = ecsign.public_bytes(sk, compressed=comp)
    if tamper == "neg_s":
        sig = sig[:32] + i2b(N - int.from_bytes(sig[32:], "big"))
        recid ^= 1
    elif tamper == "sig_bit":
        b = bytearray(sig)
        b[where % 64] ^= 1 << (where % 8)
        sig = bytes(b)
    elif tamper == "digest_bit":
        b = bytearray(digest)
        b[where % 32] ^= 1 << (where % 8)
        digest = bytes(b)
    elif tamper == "key_bit":
        b = bytearray(pub)
        b[1 + where % (len(pub) - 1)] ^= 1 << (where % 8)
        pub = bytes(b)
    elif tamper == "other_key":
        pub = ecsign.public_bytes(key_from((secret * 7 + 1) % (N - 1) + 1), compressed=comp)
    elif tamper == "swap_rs":
        sig = sig[32:] + sig[:32]
    return pub, digest, sig, recid


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, N - 1), st.binary(min_size=32, max_size=32), st.sampled_from(TAMPER),
       st.integers(0, 10 ** 6), st.booleans())
def test_differential_against_python_ecdsa(secret, digest, tamper, where, comp):
    pub, digest, sig, recid = make_case(secret, digest, tamper, where, comp)
    want = ecdsa_verify(pub, digest, sig)
    if tamper in ("none", "neg_s"):
        assert want
    assert p256.verify(pub, digest, sig) is want
    rid = true_recid(pub, digest, sig)
    for r in range(4):
        assert p256.verify_recoverable(pub, digest, sig, r) is (want and r == rid)
    if want:
        assert rid == recid
    if p256.decode_point(pub) is not None:
        assert p256.verify_fixed(p256.FixedBase(pub, p256tables.table_bytes(pub, 2, 4)),
                                 digest, sig) is want


@settings(max_examples=60, deadline=None)
@given(st.integers(1, N - 1), st.integers(1, N - 1), st.integers(0, 2 ** 256 - 1),
       st.integers(1, N - 1))
def test_random_signatures_agree(secret, r, e, s):
    # mostly invalid signatures, sometimes with tiny or huge scalars: same verdict as the reference
    sk = key_from(secret)
    digest, sig = i2b(e), i2b(r) + i2b(s)
    for comp in (True, False):
        pub = ecsign.public_bytes(sk, compressed=comp)
        want = ecdsa_verify(pub, digest, sig)
        assert p256.verify(pub, digest, sig) is want
        assert p256.verify_recoverable(pub, digest, sig, 0) is (want and true_recid(pub, digest, sig) == 0)


def test_edge_scalars():
    # u1 = 0 (e = 0 mod n), e >= n, s = 1, s = n - 1, r = 1, huge and tiny keys
    rng = random.Random(5)
    for secret in (1, 2, N - 1, N - 2, rng.randrange(1, N)):
        sk = key_from(secret)
        for digest in (bytes(32), i2b(N), i2b(N + 5), b"\xff" * 32, i2b(1)):
            sig, recid = ecsign.sign_digest(sk, digest)
            for comp in (True, False):
                pub = ecsign.public_bytes(sk, compressed=comp)
                assert p256.verify(pub, digest, sig)
                assert p256.verify_recoverable(pub, digest, sig, recid)
                assert p256.verify_fixed(p256.FixedBase(pub), digest, sig)
        # u1*G + u2*Q = O (Q = k*G, u2 = 1, u1 = n - k): no R, so no signature verifies
        digest = i2b(N - secret)
        sig = i2b(1) + i2b(1)
        for comp in (True, False):
            pub = ecsign.public_bytes(sk, compressed=comp)
            assert p256.verify(pub, digest, sig) is False
            for recid in range(4):
                assert p256.verify_recoverable(pub, digest, sig, recid) is False
            assert p256.verify_fixed(p256.FixedBase(pub), digest, sig) is False
        # forged-looking signatures with extreme scalars: the reference decides
        pub = ecsign.public_bytes(sk)
        for r, s in ((1, 1), (1, N - 1), (N - 1, 1), (N - 1, N - 1)):
            sig = i2b(r) + i2b(s)
            digest = i2b(rng.randrange(2 ** 256))
            assert p256.verify(pub, digest, sig) is ecdsa_verify(pub, digest, sig)


def test_recid_with_r_plus_n():
    # R.x >= n (recid bit 1) is rare (~2^-128); build one: r = R.x - n for a chosen R.
    # With the signer's secret unknown we use the scheme backwards: pick k, d and solve s.
    rng = random.Random(11)
    G = NIST256p.generator
    found = 0
    for _ in range(2000):
        x = rng.randrange(N, P)
        y2 = (x ** 3 - 3 * x + NIST256p.curve.b()) % P
        y = pow(y2, (P + 1) // 4, P)
        if y * y % P != y2:
            continue
        # a signature with R = (x, y): choose u1, u2 freely, Q = (R - u1 G) / u2
        u1, u2 = rng.randrange(1, N), rng.randrange(1, N)
        R = Point(NIST256p.curve, x, y)
        Q = (R + (G * (N - u1))) * pow(u2, -1, N)
        r = x - N
        s = r * pow(u2, -1, N) % N
        e = u1 * s % N
        pub = uncompressed(Q.x(), Q.y())
        digest, sig = i2b(e), i2b(r) + i2b(s)
        assert ecdsa_verify(pub, digest, sig)
        recid = (y & 1) | 2
        assert p256.verify(pub, digest, sig)
        assert p256.verify_recoverable(pub, digest, sig, recid)
        assert not p256.verify_recoverable(pub, digest, sig, recid & 1)
        assert p256.verify_fixed(p256.FixedBase(pub), digest, sig)
        found += 1
        if found == 3:
            break
    assert found == 3


@settings(max_examples=200, deadline=None)
@given(st.integers(1, N - 1))
def test_half_gcd(u):
    v, w = p256._half_gcd(u, N)
    assert v != 0 and (v * u - w) % N == 0
    assert abs(v) < 2 ** 128 and 0 < w < 2 ** 128


# ------------------------------------------------------------------ hostile input

GOOD = rfc6979_cases()[0]
HOSTILE = [None, 0, 1, -1, 2 ** 300, "", "x" * 33, "x" * 65, [], [4] * 65, [2] * 33, (4,) * 65,
           {}, object(), 1.5, b"", b"\x00", bytearray(65), memoryview(GOOD[0]), True]


def hostile_keys():
    x, y = RFC6979_UX, RFC6979_UY
    return [
        b"\x00",                                   # SEC1 infinity
        uncompressed(x, y)[:-1], uncompressed(x, y) + b"\x00",
        compressed(x, y)[:-1], compressed(x, y) + b"\x00",
        b"\x05" + uncompressed(x, y)[1:],          # bad prefixes
        b"\x04" + compressed(x, y)[1:] + bytes(32),
        b"\x01" + compressed(x, y)[1:], b"\x04" + compressed(x, y)[1:],
        uncompressed(x, (y + 1) % P),              # off the curve
        uncompressed(x + P, y) if x + P < 2 ** 256 else uncompressed(P, y),  # x >= p
        uncompressed(x, y + P) if y + P < 2 ** 256 else uncompressed(x, P),  # y >= p
        uncompressed(P, 0), uncompressed(0, 0), b"\x04" + b"\xff" * 64,
        compressed(P + 3, 0), b"\x02" + b"\xff" * 32,
        b"\x02" + i2b(1), b"\x03" + i2b(7),  # x with no point (x^3 - 3x + b is a non-residue)
    ]


def hostile_sigs():
    r = GOOD[2][:32]
    s = GOOD[2][32:]
    return [bytes(64), r + bytes(32), bytes(32) + s, i2b(N) + s, r + i2b(N), i2b(N + 1) + s,
            r + b"\xff" * 32, b"\xff" * 64, GOOD[2][:63], GOOD[2] + b"\x00", b""]


def test_hostile_keys_signatures_digests():
    pub, digest, sig, recid = GOOD
    assert p256.verify(pub, digest, sig) and p256.verify_recoverable(pub, digest, sig, recid)
    assert p256.decode_point(b"\x02" + i2b(5)) is not None
    for k in hostile_keys():
        assert p256.decode_point(k) is None, k
        assert p256.verify(k, digest, sig) is False
        for rid in range(4):
            assert p256.verify_recoverable(k, digest, sig, rid) is False
        with pytest.raises(ValueError):
            p256.FixedBase(k)
    fb = p256.FixedBase(pub)
    for bad in hostile_sigs():
        assert p256.verify(pub, digest, bad) is False
        assert p256.verify_fixed(fb, digest, bad) is False
        for rid in range(4):
            assert p256.verify_recoverable(pub, digest, bad, rid) is False
    for d in (digest[:31], digest + b"\x00", b"", digest.hex()):
        assert p256.verify(pub, d, sig) is False
        assert p256.verify_recoverable(pub, d, sig, recid) is False
        assert p256.verify_fixed(fb, d, sig) is False
    for rid in (-1, 4, 256, None, "0", 1.0, b"\x00", True if recid != 1 else False):
        assert p256.verify_recoverable(pub, digest, sig, rid) is False


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(range(len(HOSTILE))), st.integers(0, 3))
def test_hostile_types_never_raise(i, which):
    pub, digest, sig, recid = GOOD
    args = [pub, digest, sig, recid]
    args[which] = v = HOSTILE[i]
    if which < 3:
        assert p256.verify(*args[:3]) is False
    assert p256.verify_recoverable(*args) is (which == 3 and type(v) is int and v == recid)
    fb = p256.FixedBase(pub)
    if which in (1, 2):
        assert p256.verify_fixed(fb, *args[1:3]) is False
    assert p256.verify_fixed(HOSTILE[i], digest, sig) is False


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=70), st.binary(max_size=70), st.binary(max_size=70),
       st.integers(-2, 5))
def test_random_bytes_never_raise(pub, digest, sig, recid):
    assert p256.verify(pub, digest, sig) is False
    assert p256.verify_recoverable(pub, digest, sig, recid) is False


# ------------------------------------------------------------------ tables


def test_firmware_table_builder_matches_host_generator():
    pub = ecsign.public_bytes(key_from(12345))
    for teeth, width in ((4, 8), (4, 5), (2, 6), (1, 3), (8, 2)):
        assert bytes(p256.build_table(pub, None, teeth, width)) == \
            p256tables.table_bytes(pub, teeth, width)


def test_generated_generator_table_is_current():
    # the committed generated files are what the generator makes today
    assert p256tables.GTABLE_BIN.read_bytes() == p256tables.gtable_bytes()
    assert p256tables.GTABLE_PATH.read_text() == p256tables.gtable_module()
    ns = {}
    exec(p256tables.GTABLE_PATH.read_text(), ns)
    assert ns["DATA"] == p256tables.gtable_bytes()
    g = p256._generator()
    assert (g.x, g.y) == (NIST256p.generator.x(), NIST256p.generator.y())
    assert g.teeth == p256tables.G_TEETH and g.width == p256tables.G_WIDTH
    # entry (t, m) = m * 2^(64 t) * G
    for t, m in ((0, 1), (0, 128), (1, 77), (3, 128), (3, 1)):
        pt = NIST256p.generator * (m << (64 * t))
        assert g.entry(t, m) == (pt.x(), pt.y())


def test_issuer_table_module_and_file(tmp_path):
    keys = {7: ecsign.public_bytes(key_from(777)), 9: ecsign.public_bytes(key_from(999), False)}
    src = p256tables.issuer_table_module(keys)
    ns = {}
    exec(src, ns)
    assert sorted(ns["TABLES"]) == [7, 9]
    digest = hashlib.sha256(b"credential").digest()
    for kid, pub in keys.items():
        fb = p256.FixedBase(pub, ns["TABLES"][kid])
        sig, _ = ecsign.sign_digest(key_from(777 if kid == 7 else 999), digest)
        assert p256.verify_fixed(fb, digest, sig)
        assert not p256.verify_fixed(fb, digest[::-1], sig)
        # the same blob as a table file, read by offset
        path = tmp_path / ("%d.tbl" % kid)
        path.write_bytes(ns["TABLES"][kid])
        ff = p256.FixedBase(pub, str(path))
        assert p256.verify_fixed(ff, digest, sig)
        ff.close()
        # a table never serves another key
        with pytest.raises(ValueError):
            p256.FixedBase(keys[9 if kid == 7 else 7], ns["TABLES"][kid])


def test_tampered_tables_are_refused(tmp_path):
    pub = ecsign.public_bytes(key_from(4242))
    blob = p256tables.table_bytes(pub, 2, 4)
    p256.FixedBase(pub, blob)
    bad = [blob[:-1], blob + b"\x00", b"", b"P2T1", b"X" + blob[1:]]
    for i in (4, 5, 6, 8, 50, 80, 104, 104 + 64 * 3 + 5, len(blob) - 1):
        b = bytearray(blob)
        b[i] ^= 0x01
        bad.append(bytes(b))
    # a consistent table (right checksum) whose entries are of another point
    other = p256tables.table_bytes(ecsign.public_bytes(key_from(4243)), 2, 4)
    bad.append(blob[:72] + other[72:])
    for b in bad:
        with pytest.raises(ValueError):
            p256.FixedBase(pub, b)
        path = tmp_path / "t.tbl"
        path.write_bytes(b)
        with pytest.raises(ValueError):
            p256.FixedBase(pub, str(path))
    with pytest.raises(OSError):
        p256.FixedBase(pub, str(tmp_path / "missing.tbl"))
    for t in (1234, [blob], None.__class__):
        with pytest.raises((ValueError, TypeError)):
            p256.FixedBase(pub, t)


def recover_public_key(digest, sig, recid):
    """(x, y) of Q = r^-1 (s R - e G), with R the point the recovery id names: x = r (+ n if
    bit 1), y of the parity of bit 0 (python-ecdsa arithmetic)."""
    curve = NIST256p.curve
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    e = int.from_bytes(digest, "big")
    x = r + (N if recid & 2 else 0)
    y = pow((x ** 3 + curve.a() * x + curve.b()) % P, (P + 1) // 4, P)
    if y & 1 != recid & 1:
        y = P - y
    q = (Point(curve, x, y) * s + NIST256p.generator * (-e % N)) * pow(r, -1, N)
    return q.x(), q.y()


def test_ecsign_recid_matches_recovered_point():
    rng = random.Random(3)
    for _ in range(20):
        sk = key_from(rng.randrange(1, N))
        digest = i2b(rng.randrange(2 ** 256))
        sig, recid = ecsign.sign_digest(sk, digest)
        assert recid == true_recid(ecsign.public_bytes(sk), digest, sig)
        # the recovery id, used as its definition says, leads back to the signer's key
        q = sk.get_verifying_key().pubkey.point
        assert recover_public_key(digest, sig, recid) == (q.x(), q.y())
        assert recover_public_key(digest, sig, recid ^ 1) != (q.x(), q.y())


def test_decoded_point_as_key():
    # a cache of decode_point results may pass (x, y) instead of SEC1 bytes; still checked
    for pub, digest, sig, recid in rfc6979_cases():
        pt = p256.decode_point(pub)
        assert p256.verify(pt, digest, sig) and p256.verify_recoverable(pt, digest, sig, recid)
        assert not p256.verify_recoverable(pt, digest, sig, recid ^ 1)
        x, y = pt
        for bad in ((x, (y + 1) % P), (x, P - y + P), (x + P, y), (x, y, 1), (x,), (str(x), y),
                    (x, float(y)), (-x, y), [x, y], (0, 0), (x, y - P)):
            assert p256.verify(bad, digest, sig) is False
            assert p256.verify_recoverable(bad, digest, sig, recid) is False
        assert p256.verify((x, P - y), digest, sig) is False  # -Q


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2 ** 256 - 1), st.integers(1, N - 1), st.integers(1, N - 1),
       st.integers(0, 2 ** 256 - 1))
def test_native_scalars(e, r, s, v):
    # u1 = e/s, u2 = r/s mod n (native Montgomery products mod n, inverse by Fermat), k*v mod n
    from validator import p256_field as F
    sig = i2b(r) + i2b(s)
    si = pow(s, -1, N)
    assert F.scalars(i2b(e), sig) == (e * si % N, r * si % N)
    assert F.scalar_mul(e, v) == e * v % N


def test_generator_table_fallbacks(tmp_path, monkeypatch):
    # a damaged or missing p256_gtable.bin, then a damaged module: slower, never wrong or dead
    import sys
    import types
    pub, digest, sig, recid = rfc6979_cases()[0]
    bad = bytearray(p256tables.gtable_bytes())
    bad[5000] ^= 1
    (tmp_path / "p256_gtable.bin").write_bytes(bytes(bad))
    monkeypatch.setattr(p256, "__file__", str(tmp_path / "p256.py"))
    monkeypatch.setattr(p256, "_gbase", None)
    g = p256._generator()
    assert g._f is None and (g.teeth, g.width) == (4, 8)  # the module's blob
    assert p256.verify(pub, digest, sig) and p256.verify_recoverable(pub, digest, sig, recid)
    monkeypatch.setattr(p256, "_gbase", None)
    monkeypatch.setitem(sys.modules, "validator.p256_gtable", types.SimpleNamespace(DATA=b"junk"))
    import validator
    monkeypatch.setattr(validator, "p256_gtable", sys.modules["validator.p256_gtable"], raising=False)
    g = p256._generator()
    assert (g.teeth, g.width) == (p256.RAM_TABLE_TEETH, p256.RAM_TABLE_WIDTH)
    assert p256.verify(pub, digest, sig) and p256.verify_recoverable(pub, digest, sig, recid)
    fb = p256.FixedBase(pub)
    assert p256.verify_fixed(fb, digest, sig) and not p256.verify_fixed(fb, digest, sig[::-1])
    monkeypatch.setattr(p256, "_gbase", None)


def test_p256tables_command_line(tmp_path):
    pub = ecsign.public_bytes(key_from(31337))
    assert p256tables.main(["table", pub.hex(), "-o", str(tmp_path / "k.p2t"), "--teeth", "2",
                            "--width", "5"]) == 0
    fb = p256.FixedBase(pub, str(tmp_path / "k.p2t"))
    assert (fb.teeth, fb.width) == (2, 5)
    fb.close()
    assert p256tables.main(["issuer", "5=" + pub.hex(), "-o", str(tmp_path / "m.py")]) == 0
    ns = {}
    exec((tmp_path / "m.py").read_text(), ns)
    assert ns["TABLES"][5] == p256tables.table_bytes(pub)
    with pytest.raises(ValueError):
        p256tables.table_bytes(b"\x02" + i2b(1))
    with pytest.raises(ValueError):
        p256tables.table_bytes(pub, 3, 8)


def test_fare_p256_tables_command(tmp_path, capsys):
    from host_tools import cli
    with pytest.raises(SystemExit) as e:
        cli.main(["p256-tables", "--help"])
    assert e.value.code == 0
    helptext = capsys.readouterr().out
    assert helptext.startswith("usage: fare p256-tables")
    assert all(action in helptext for action in ("gtable", "issuer", "table"))
    pub = ecsign.public_bytes(key_from(4242))
    out = tmp_path / "k.p2t"
    assert cli.main(["p256-tables", "table", pub.hex(), "-o", str(out), "--teeth", "2",
                     "--width", "4"]) == 0
    assert out.read_bytes() == p256tables.table_bytes(pub, 2, 4)


def test_msm_exceptional_additions():
    # the chain meets P + P and P + (-P) when scalars collide
    G = NIST256p.generator
    g = (G.x(), G.y())
    gneg = (G.x(), P - G.y())
    two_g = G * 2
    assert msm_affine(256, [], [(g, 1), (g, 1)]) == (two_g.x(), two_g.y())
    assert msm_affine(256, [], [(g, 1), (gneg, 1)]) is None
    gb = p256._generator()
    # fixed G*k plus variable G*(n-k): infinity; plus G*k: 2k*G
    for k in (1, 2, 3, 77, 2 ** 128 + 1, N - 1, N // 2):
        for L in (64, 128, 256):
            assert msm_affine(L, [(gb, k)], [(g, N - k)]) is None
            want = G * (2 * k % N)
            assert msm_affine(L, [(gb, k)], [(g, k)]) == (want.x(), want.y())
        assert msm_affine(64, [(gb, k), (gb, N - k)], []) is None


@settings(max_examples=60, deadline=None)
@given(st.integers(0, N - 1), st.integers(0, N - 1), st.integers(1, N - 1),
       st.integers(0, 2 ** 129 - 1), st.sampled_from([64, 128, 256]))
def test_msm_against_python_ecdsa(a, b, secret, c, L):
    G = NIST256p.generator
    Q = G * secret
    gb = p256._generator()
    qb = p256.FixedBase(uncompressed(Q.x(), Q.y()), p256tables.table_bytes(
        uncompressed(Q.x(), Q.y()), 4, 5))
    want = G * a + Q * b + Q * c  # the chain is as long as the longest scalar needs
    got = msm_affine(L, [(gb, a), (qb, b)], [((Q.x(), Q.y()), c)])
    assert got == (None if want == INFINITY else (want.x(), want.y()))
