"""validator.p256 on the MicroPython binary (110 KB heap) with host-made data: NIST CAVP SigVer
P-256/SHA-256, a batch of random (and tampered) signatures from python-ecdsa, recovery ids,
issuer tables made on the host and on the reader."""
import hashlib
import json
import random

from mpharness import run_mp
from test_p256 import (TAMPER, N, cavp_cases, ecdsa_verify, i2b, key_from, make_case,
                       rfc6979_cases, true_recid)

from host_tools.common import ecsign
from host_tools.issuing import p256tables
from validator import p256

# Runs on MicroPython: one JSON case per line -> one line of '1'/'0' verdicts per case.
CHECK_CASES = r"""
import sys, json, gc
from validator import p256
fixed = {}
out = open(sys.argv[2], "w")
for line in open(sys.argv[1]):
    c = json.loads(line)
    pub, digest, sig = bytes.fromhex(c[0]), bytes.fromhex(c[1]), bytes.fromhex(c[2])
    res = [p256.verify(pub, digest, sig)]
    for recid in range(4):
        res.append(p256.verify_recoverable(pub, digest, sig, recid))
    if p256.decode_point(pub) is not None:
        fb = fixed.get(pub)
        if fb is None:
            fb = fixed[pub] = p256.FixedBase(pub)  # a small table built here, in RAM
        res.append(p256.verify_fixed(fb, digest, sig))
    out.write("".join("1" if r is True else ("0" if r is False else "?") for r in res) + "\n")
    if len(fixed) > 4:
        fixed = {}
    gc.collect()
out.close()
print("done")
"""


def expected(pub, digest, sig):
    ok = ecdsa_verify(pub, digest, sig)
    rid = true_recid(pub, digest, sig)
    res = [ok] + [ok and r == rid for r in range(4)]
    if p256.decode_point(pub) is not None:
        res.append(ok)
    return "".join("1" if r else "0" for r in res)


def run_cases(tmp_path, cases):
    data = tmp_path / "cases.jsonl"
    data.write_text("".join(json.dumps([p.hex(), d.hex(), s.hex()]) + "\n" for p, d, s in cases))
    res = tmp_path / "results.txt"
    assert run_mp(CHECK_CASES, args=[data, res]).strip() == "done"
    got = res.read_text().split()
    assert len(got) == len(cases)
    return got


def test_cavp_sigver_on_micropython(tmp_path):
    cases = []
    for pub, digest, sig, ok in cavp_cases():
        x, y = p256.decode_point(pub)
        cases.append((pub, digest, sig))
        cases.append((bytes((2 + (y & 1),)) + i2b(x), digest, sig))
    got = run_cases(tmp_path, cases)
    want = [expected(*c) for c in cases]
    assert got == want
    # the NIST verdicts themselves: passes and failures both present
    verdicts = [ok for *_, ok in cavp_cases()]
    assert [g[0] == "1" for g in got[::2]] == verdicts and True in verdicts and False in verdicts


def test_random_batch_on_micropython(tmp_path):
    rng = random.Random(2024)
    cases = []
    for i in range(36):
        tamper = TAMPER[i % len(TAMPER)]
        pub, digest, sig, _ = make_case(rng.randrange(1, N), rng.randbytes(32), tamper,
                                        rng.randrange(10 ** 6), i % 2 == 0)
        cases.append((pub, digest, sig))
    cases += [(p, d, s) for p, d, s, _ in rfc6979_cases()]
    got = run_cases(tmp_path, cases)
    want = [expected(*c) for c in cases]
    assert got == want
    assert sum(g[0] == "1" for g in got) >= 12  # the batch holds valid signatures too


FIXED_FILES = r"""
import sys, json
from validator import p256
c = json.loads(open(sys.argv[1]).read())
pub = bytes.fromhex(c["pub"])
res = []
host = p256.FixedBase(pub, sys.argv[2])          # table file made on the host, read by offset
p256.build_table(pub, sys.argv[3], 4, 8)         # the reader builds its own table file
mine = p256.FixedBase(pub, sys.argv[3])
ram = p256.FixedBase(pub)                        # small RAM table
for d, s in c["sigs"]:
    d, s = bytes.fromhex(d), bytes.fromhex(s)
    res.append("".join("1" if p256.verify_fixed(fb, d, s) else "0" for fb in (host, mine, ram)))
try:
    p256.FixedBase(bytes.fromhex(c["other"]), sys.argv[2])
    res.append("accepted a table of another key")
except ValueError:
    res.append("refused")
host.close()
mine.close()
print(" ".join(res))
"""


def test_fixed_base_tables_on_micropython(tmp_path):
    sk = key_from(0x1234567890ABCDEF)
    pub = ecsign.public_bytes(sk)
    (tmp_path / "host.tbl").write_bytes(p256tables.table_bytes(pub, 4, 8))
    sigs, want = [], []
    rng = random.Random(9)
    for i in range(6):
        digest = rng.randbytes(32)
        sig, _ = ecsign.sign_digest(sk, digest)
        if i % 3 == 1:
            digest = hashlib.sha256(digest).digest()
        if i % 3 == 2:
            sig = sig[:32] + i2b(N - int.from_bytes(sig[32:], "big"))
        sigs.append((digest.hex(), sig.hex()))
        want.append("111" if i % 3 != 1 else "000")
    (tmp_path / "c.json").write_text(json.dumps(
        {"pub": pub.hex(), "sigs": sigs, "other": ecsign.public_bytes(key_from(77)).hex()}))
    out = run_mp(FIXED_FILES, args=[tmp_path / "c.json", tmp_path / "host.tbl",
                                    tmp_path / "mine.tbl"]).split()
    assert out == want + ["refused"]
    # the reader's table file is byte for byte the host's
    assert (tmp_path / "mine.tbl").read_bytes() == (tmp_path / "host.tbl").read_bytes()
