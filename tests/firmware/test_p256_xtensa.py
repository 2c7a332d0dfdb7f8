"""The native P-256 engines on a 32-bit Xtensa (qemu-user, core dc233c: windowed ABI and MUL32 like
the ESP32's LX6), from the very bytes mpy-cross -march=xtensawin makes for the ESP32:
- every operation of the interpreter, on random and edge-case field elements, equals the
  big-integer model (host_tools p256_host semantics, Python ints), in both the viper engine
  (validator/p256_native.py) and the assembly engine (validator/p256_xtensa.py), and the two
  leave the same bits in the workspace;
- whole verifications (valid and invalid signatures of every kind, the table builder) replay their
  exact engine calls on the Xtensa with the same flags as on the host;
- the generator's 32-bit bounds are what keeps this right: a variant with 14-bit limbs, whose
  column sums pass 2^31, is refused by the generator, gives right answers on the 64-bit unix
  port and wrong ones on the Xtensa (the overflow this harness exists to catch);
- the engine code calls nothing of the MicroPython runtime (the harness stubs every entry).
The harness: tests/xtensa_harness.py; qemu-user comes from Debian (make test installs it)."""
import hashlib
from array import array
import random
import struct

import pytest

import p256_xtensa_kit as K
import xtensa_harness as X
from host_tools.common import ecsign
from host_tools.fleet import p256codegen, p256programs as PP
from validator import p256
from validator import p256_progs as G



@pytest.fixture(autouse=True)
def _qemu():
    if X.qemu_path() is None:   # make test installs it; a failure, not a skip: this is the proof
        pytest.fail("qemu-xtensa is missing: apt-get install qemu-user (make test does it as root)")
P = p256.P
R = 1 << 260
RINV = pow(R, -1, P)
SB = G.SLOT_BYTES
OPS = PP.OPS
FIRST = 20      # slots used for operands here (after the constants and the accumulator)


def engines():
    return {"viper": K.engine_code(), "asm": K.engine_code(K.ASM_SRC)}


def ws_with(values):
    """A workspace in limbs: the constants, then `values` (ints below 2^258) from slot FIRST."""
    base = [0] * G.SLOTS
    for k, v in zip((G.ZERO, G.SP, G.ONE_RAW, G.ONE, G.R2, G.BM),
                    (0, P, 1, R % P, R * R % P, p256.B * R % P)):
        base[k] = v
    mem = bytearray(K.workspace_bytes(base))
    for i, v in enumerate(values):
        mem[SB * (FIRST + i):SB * (FIRST + i + 1)] = K.limbs(v)
    return mem


def slot(mem, k):
    return K.value(bytes(mem[SB * k:SB * (k + 1)]))


def run_prog(code, mem, prog, io=b"", iooff=0):
    """Runs one program (bytes) on the Xtensa; returns (workspace after, io after, flags)."""
    image, args, ios = K.layout_calls(mem, [(prog, 0, io, None, None)])
    args[0][1][3] = iooff       # (pc 0: the argument is the io offset alone)
    res = X.run(code, bytes(image), args)
    return res.memory[:len(mem)], res.memory[ios[0]:ios[0] + len(io)], res.returns[0]


EDGE = [0, 1, 2, P - 1, P, P + 1, 2 * P - 1, 2 * P, 3 * P + 5, 4 * P, (1 << 256) - 1,
        (1 << 257) + 3, (1 << 258) - 1, sum(0x1555 << (13 * i) for i in range(20)) % (1 << 258)]


def values(rng, n):
    out = list(EDGE)
    while len(out) < n:
        out.append(rng.choice([rng.randrange(P), rng.randrange(1 << 258), rng.randrange(1 << 13),
                               P - rng.randrange(1 << 20)]))
    return out


@pytest.mark.parametrize("name", ["viper", "asm"])
def test_every_operation_matches_the_big_integer_model(name):
    rng = random.Random(20261207)
    code = engines()[name]
    vals = values(rng, 40)
    for chunk in range(0, len(vals), 8):
        xs = vals[chunk:chunk + 8]
        mem = ws_with(xs)
        for op in ("MUL", "SQR", "ADD", "SUB", "MOV", "MULS", "SQRN"):
            for i in range(len(xs)):
                a, b = FIRST + i, FIRST + (i * 3 + 1) % len(xs)
                d = FIRST + 10
                arg = {"MULS": 1 + i % 8, "SQRN": i % 4}.get(op, b)
                out, _, _ = run_prog(code, mem, PP.prog((OPS[op], d, a, arg)))
                va, vb = xs[i], xs[(i * 3 + 1) % len(xs)]
                want = {"MUL": va * vb * RINV, "SQR": va * va * RINV, "ADD": va + vb,
                        "SUB": va - vb, "MOV": va, "MULS": va * arg,
                        "SQRN": None}[op]
                if op == "SQRN":
                    want = va
                    for _ in range(arg):
                        want = want * want * RINV % P
                    if arg == 0:
                        want = 0       # no squaring: d is left as it was (zero here)
                got = slot(out, d)
                assert got % P == want % P, (op, hex(va), hex(vb))
                # the representation the next operation relies on: limbs reduced, value < 2^258
                limbs = struct.unpack("<20H", bytes(out[SB * d:SB * (d + 1)]))
                assert all(x < 1 << 13 for x in limbs[:19]) and got < 1 << 258, (op, hex(va))


@pytest.mark.parametrize("name", ["viper", "asm"])
def test_conversions_checks_and_loops(name):
    rng = random.Random(7)
    code = engines()[name]
    for v in values(rng, 24):
        v %= 1 << 258
        mem = ws_with([v])
        # CANON then STORE: the value mod p as 32 big-endian bytes; BIT0 its parity; ISZ
        prog = PP.prog((OPS["CANON"], FIRST + 1, FIRST, G.SP), (OPS["STORE"], 0, FIRST + 1, 1),
                       (OPS["BIT0"], 3, FIRST + 1), (OPS["ISZ"], 0, FIRST))
        out, io, flags = run_prog(code, mem, prog, bytes(64))
        assert int.from_bytes(io[32:64], "big") == v % P
        assert flags == ((v % P) & 1) << 3 | (v % P == 0)
        # LOAD from bytes (no reduction)
        b = (v % (1 << 256)).to_bytes(32, "big")
        out, _, _ = run_prog(code, mem, PP.prog((OPS["LOAD"], FIRST + 2, 0, 0)), bytes(5) + b, 5)
        assert slot(out, FIRST + 2) == v % (1 << 256)
    # RPT: a body run n times, skipped for n = 0
    mem = ws_with([5, 0])
    for n in (0, 1, 7, 255):
        prog = PP.prog((OPS["RPT"], n, 1), (OPS["ADD"], FIRST + 1, FIRST + 1, FIRST),
                       (OPS["NEXT"],))
        out, _, _ = run_prog(code, mem, prog)
        assert slot(out, FIRST + 1) % P == 5 * n


def test_both_engines_leave_the_same_bits():
    # the same programs on random workspaces: every slot but the assembly engine's scratch agree
    rng = random.Random(3)
    e = engines()
    for trial in range(6):
        xs = values(rng, 8)[trial:trial + 8]
        mem = ws_with(xs)
        ops = []
        for _ in range(60):
            op = rng.choice(["MUL", "SQR", "ADD", "SUB", "MULS", "MOV"])
            d, a, b = (FIRST + rng.randrange(8) for _ in range(3))
            ops.append((OPS[op], d, a, 1 + b % 8 if op == "MULS" else b))
        prog = PP.prog(*ops)
        a, _, fa = run_prog(e["viper"], mem, prog)
        b, _, fb = run_prog(e["asm"], mem, prog)
        assert a[SB:] == b[SB:] and fa == fb


def _cases(tmp):
    from ecdsa import NIST256p, SigningKey
    key = SigningKey.from_secret_exponent(0x1234567 * 0xfedcba987654321, curve=NIST256p,
                                          hashfunc=hashlib.sha256)
    out = []
    for comp in (True, False):
        pub = ecsign.public_bytes(key, compressed=comp)
        d = hashlib.sha256(b"%d" % comp).digest()
        sig, recid = ecsign.sign_digest(key, d)
        bad = sig[:5] + bytes([sig[5] ^ 4]) + sig[6:]
        out += [("recoverable", lambda p=pub, d=d, s=sig, r=recid: p256.verify_recoverable(p, d, s, r), True),
                ("recoverable, wrong recid", lambda p=pub, d=d, s=sig, r=recid: p256.verify_recoverable(p, d, s, r ^ 1), False),
                ("verify", lambda p=pub, d=d, s=sig: p256.verify(p, d, s), True),
                ("verify, tampered", lambda p=pub, d=d, s=bad: p256.verify(p, d, s), False)]
    fb = p256.FixedBase(ecsign.public_bytes(key), p256.build_table(ecsign.public_bytes(key), None, 4, 6))
    d = hashlib.sha256(b"issuer").digest()
    sig, _ = ecsign.sign_digest(key, d)
    out += [("verify_fixed", lambda: p256.verify_fixed(fb, d, sig), True),
            ("verify_fixed, other digest", lambda: p256.verify_fixed(fb, d[::-1], sig), False),
            ("build_table", lambda: p256.build_table(ecsign.public_bytes(key), None, 2, 3),
             None)]
    # the generator's table in memory (a frozen build's constant), not a file: the whole chain,
    # fixed bases included, is one VRUN on the Xtensa
    from validator import p256_gtable
    gmem = p256.FixedBase(p256.encode_uncompressed(p256.GX, p256.GY), p256_gtable.DATA)

    def in_memory(fn):
        def run():
            saved, p256._gbase = p256._generator(), gmem
            try:
                return fn()
            finally:
                p256._gbase = saved
        return run
    out += [(what + " (tables in memory)", in_memory(fn), want) for what, fn, want in out
            if what != "build_table"]
    # one table in memory, the other a file: VRUN adds the first's entries, Python the other's
    path = str(tmp / "issuer.p2t")
    with open(path, "wb") as f:
        f.write(p256.build_table(ecsign.public_bytes(key), None, 4, 6))
    ffile = p256.FixedBase(ecsign.public_bytes(key), path)
    out += [("verify_fixed, generator in memory, issuer table file",
             in_memory(lambda: p256.verify_fixed(ffile, d, sig)), True),
            ("verify_fixed, generator table file, issuer in memory",
             lambda: p256.verify_fixed(fb, d, sig), True)]
    # chains that meet P + P and P + (-P): settled where they happen, by VRUN too
    g = p256._generator()
    gx, gy = ecsign.G.x(), ecsign.G.y()
    two = ecsign.G * 2
    out += [("msm P + P", lambda: K.msm_affine(256, [], [((gx, gy), 1), ((gx, gy), 1)]) == (two.x(), two.y()), True),
            ("msm P - P", lambda: K.msm_affine(256, [], [((gx, gy), 1), ((gx, K.F.P - gy), 1)]) is None, True),
            ("msm kG + (n - k)G", lambda: K.msm_affine(64, [(g, 77)], [((gx, gy), K.F.N - 77)]) is None, True),
            ("msm kG + (n - k)G, table in memory",
             lambda: K.msm_affine(64, [(gmem, 77)], [((gx, gy), K.F.N - 77)]) is None, True),
            ("msm kG + kG, table in memory",
             lambda: K.msm_affine(64, [(gmem, 77)], [((gx, gy), 77)]) == ((ecsign.G * 154).x(), (ecsign.G * 154).y()), True)]
    return out


@pytest.mark.parametrize("name", ["viper", "asm"])
def test_whole_verifications_replayed_on_the_xtensa(name, tmp_path):
    p256._generator()
    code = engines()[name]
    vruns = whole = gathered = 0
    for what, fn, expected in _cases(tmp_path):
        with K.Recorder(vrun=name == "asm") as rec:
            result = fn()
        if expected is not None:
            assert result is expected, what
        _, flags, after = K.replay(rec, code, count=False)
        assert flags == [c[3] for c in rec.calls], what
        for c, got in zip(rec.calls, after):
            if c[1] == G.VRUN_PROG:     # VRUN's block: all but its scratch bytes (NEG, BASE..)
                assert got[:PP.VRUN_NEG] + got[PP.VRUN_PHASE:PP.VRUN_BASE] + got[PP.VRUN_NAF0:] \
                    == c[4][:PP.VRUN_NEG] + c[4][PP.VRUN_PHASE:PP.VRUN_BASE] + c[4][PP.VRUN_NAF0:], what
                assert got[PP.VRUN_PHASE] == 0, what
            else:
                assert got == c[4], what
        vruns += sum(c[1] == G.VRUN_PROG for c in rec.calls)
        whole += sum(c[1] == G.VRUN_PROG and c[2][PP.VRUN_NFIX] > 0 for c in rec.calls)
        gathered += sum(c[1] == G.VRUN_PROG and any(
            c[2][PP.VRUN_FIX0 + k * PP.VRUN_FIX_SIZE + PP.FIX_GATHERED] for k in (0, 1))
            for c in rec.calls)
    # the assembly engine ran the doubling chains itself (VRUN), each to the twin's end state,
    # and whole chains with fixed bases when their tables were in memory or gathered
    assert (vruns > 0) == (name == "asm")
    assert (whole > 0) == (name == "asm")
    assert (gathered > 0) == (name == "asm")    # a table file's entries read into a buffer


def test_a_variant_whose_sums_pass_2_to_the_31_is_refused_and_fails_on_the_xtensa(tmp_path):
    # 14-bit limbs: 19 limbs, a product column of 19 * (2^14 - 1)^2 > 2^31
    lay = p256codegen.Layout(14)
    with pytest.raises(OverflowError):
        lay.check()
    src = tmp_path / "p256_native.py"
    src.write_text(p256codegen.generate(bits=14, check=False))
    code = K.engine_code(src)
    sb = 2 * lay.limbs
    rinv = pow(1 << lay.rbits, -1, P)
    wrong = 0
    # operands whose limbs are near the top (p - 1 is mostly ones), where the sums are largest
    for a, b in ((P - 1, P - 1), ((1 << 258) - 1, (1 << 258) - 1), (P - 2, (1 << 257) + 1)):
        mem = bytearray(sb * 8)
        mem[sb * 2:sb * 3] = K.limbs(P, 14)                  # its p slot (CANON), unused here
        mem[sb * 4:sb * 5] = K.limbs(a, 14)
        mem[sb * 5:sb * 6] = K.limbs(b, 14)
        prog = PP.prog((OPS["MUL"], 6, 4, 5))
        res = X.run(code, bytes(mem) + prog, [("run", [("mem", 0), ("mem", 0),
                                                        ("mem", len(mem)), 0])])
        got = K.value(bytes(res.memory[sb * 6:sb * 7]), 14)
        wrong += got % P != a * b * rinv % P
    assert wrong, "the 32-bit overflow went unseen"


def test_the_same_variant_is_right_on_the_64_bit_unix_port(tmp_path):
    # ... which is why a unix-port test alone cannot prove the ESP32 code right
    from mpharness import run_mp
    lay = p256codegen.Layout(14)
    (tmp_path / "v14.py").write_text(p256codegen.generate(bits=14, check=False))
    rinv = pow(1 << lay.rbits, -1, P)
    a, b = P - 1, P - 1        # one of the products the Xtensa gets wrong
    sb = 2 * lay.limbs
    out = run_mp("""
import sys
sys.path.insert(0, %r)
import v14
ws = bytearray(%d * 8)
def put(k, v):
    for i in range(%d):
        ws[%d * k + 2 * i] = v & 0xff
        ws[%d * k + 2 * i + 1] = (v >> 8) & 0x3f
        v >>= 14
put(4, %d)
put(5, %d)
v14.run(ws, ws, bytes([1, 6, 4, 5, 0, 0, 0, 0]), 0)
print(sum((ws[%d * 6 + 2 * i] | ws[%d * 6 + 2 * i + 1] << 8) << (14 * i) for i in range(%d)))
""" % (str(tmp_path), sb, lay.limbs, sb, sb, a, b, sb, sb, lay.limbs), heap="4m")
    assert int(out.split()[-1]) % P == a * b * rinv % P


def test_the_engines_call_nothing_of_the_runtime():
    # every run above goes through stubs that end the process if called; one more, on purpose
    # over every opcode, makes it explicit
    mem = ws_with([3, 4])
    prog = PP.prog(*[(OPS[k], FIRST + 2, FIRST, FIRST + 1) for k in
                     ("MUL", "SQR", "ADD", "SUB", "MOV", "ISZ", "BIT0", "CANON", "MULN")])
    for code in engines().values():
        run_prog(code, mem, prog)


def test_generated_modules_are_current():
    root = K.ROOT / "firmware" / "validator"
    from host_tools.fleet import p256asm
    assert (root / "p256_native.py").read_text() == p256codegen.generate()
    assert (root / "p256_xtensa.py").read_text() == p256asm.generate()
    assert (root / "p256_progs.py").read_text() == PP.module_text()


def test_base45_decoding_on_the_xtensa():
    # the ride code's base45 decoding is native code too (validator/base45_native.py)
    from validator import base45
    code = K.engine_code(K.ROOT / "firmware" / "validator" / "base45_native.py")
    rng = random.Random(45)
    cases = [bytes(rng.randrange(256) for _ in range(n)) for n in (0, 1, 2, 3, 230, 273)]
    cases.append(b"\xff" * 100)
    for raw in cases:
        text = base45.encode(raw).encode()
        mem = bytearray(text) + bytes(-len(text) % 4)
        digit = len(mem)
        mem += base45._DIGIT
        out = len(mem)
        mem += bytes(len(raw) + 4)
        res = X.run(code, bytes(mem), [("decode_into", [("mem", 0), len(text), ("mem", digit),
                                                        ("mem", out)])])
        assert res.returns[0] == len(raw) and res.memory[out:out + len(raw)] == raw
    for bad, want in ((b"GGW", -2), (b"A!B", -1)):
        mem = bytearray(bad) + bytes(1) + base45._DIGIT + bytes(8)
        res = X.run(code, bytes(mem), [("decode_into", [("mem", 0), 3, ("mem", 4),
                                                        ("mem", 260)])])
        assert res.returns[0] == want


def test_scalar_digits_on_the_xtensa():
    # a verify's NAF and comb digits are native code (validator/p256_digits.py): the same digits
    # as the Python loops (p256._wnaf and p256_fixed.comb_digits, which CPython runs)
    from validator import p256_fixed
    code = K.engine_code(K.ROOT / "firmware" / "validator" / "p256_digits.py")
    rng = random.Random(256)
    edge = [0, 1, 2 ** 128 - 1, 2 ** 255 - 1, int("10" * 127, 2), int("01" * 127, 2)]
    calls, want, mem = [], [], bytearray()

    def put(b):
        while len(mem) % 4:
            mem.append(0)
        o = len(mem)
        mem.extend(b)
        return o
    for k in edge + [rng.getrandbits(255) for _ in range(12)]:
        for size in (16, 32):
            kk = k % (1 << (8 * size))
            naf, pos = bytearray(257), array("H", bytes(260))
            n = p256._wnaf(kk, p256.NAF_WIDTH, size, naf, pos)
            kb, out, po = (put(kk.to_bytes(size + 2, "little")), put(bytes(257)),
                           put(bytes(260)))
            calls.append(("naf_into", [("mem", kb), 8 * size, p256.NAF_WIDTH, ("mem", out),
                                       ("mem", po)]))
            want.append((n, out, bytes(naf), po, bytes(pos)[:2 * n]))
        for w, L in ((8, 64), (8, 128), (5, 64), (2, 32), (10, 256), (6, 256), (3, 32)):
            digs = bytearray(288)
            n = p256_fixed.comb_digits(k, w, L, digs)
            kb, out = put(k.to_bytes(35, "little")), put(bytes(288))
            calls.append(("comb_into", [("mem", kb), w, L, ("mem", out)]))
            want.append((n, out, bytes(digs[:2 * n]), None, None))
    res = X.run(code, bytes(mem), calls)
    for got, (n, out, digits, po, pos) in zip(res.returns, want):
        assert got == n
        assert res.memory[out:out + len(digits)] == digits
        if po is not None:
            assert res.memory[po:po + len(pos)] == pos


def test_half_gcd_on_the_xtensa():
    # the half gcd of a recoverable verify is native code (p256_digits.half_gcd): the same (v, w)
    # as the big-integer loop, for random and for hostile scalars (huge quotients: subtractions
    # of shifted values keep every input fast), within a fixed budget of instructions
    code = K.engine_code(K.ROOT / "firmware" / "validator" / "p256_digits.py")
    N = p256.N
    rng = random.Random(128)
    cases = [1, 2 ** 128 - 1, 2 ** 128, N - 1, N // 2, N // 2 + 1, N // 3, (N - 1) // 2 ** 100,
             2 ** 255 + 1, N - 2 ** 128, 2 ** 200 + 1, (N + 1) // 2 ** 64]
    cases += [rng.randrange(1, N) for _ in range(40)]
    mem = bytearray()
    calls, want = [], []
    for u in cases:
        o = len(mem)
        mem += N.to_bytes(34, "little") + u.to_bytes(34, "little") + bytes(68)
        calls.append(("half_gcd", [("mem", o)]))
        want.append((o, p256._half_gcd(u, N)))
    res = X.run(code, bytes(mem), calls, count=True)
    for u, x, (o, (t, r)) in zip(cases, res.returns, want):
        got_r = int.from_bytes(res.memory[o + 34 * x:o + 34 * x + 34], "little")
        got_t = int.from_bytes(res.memory[o + 68 + 34 * x:o + 102 + 34 * x], "little")
        if got_t >= 1 << 271:
            got_t -= 1 << 272
        assert (got_t, got_r) == (t, r)
        assert t and abs(t) < 2 ** 128 and r < 2 ** 128 and (t * u - r) % N == 0
    # about 380,000 instructions for a random u (2-2.5 ms on an ESP32; the big-integer loop is
    # about 8 ms), fewer for the hostile ones: a big quotient is taken 7 bits at a time
    assert res.instructions["half_gcd"] < 450_000 * len(cases)
