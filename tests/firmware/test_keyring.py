"""The reader's issuer key ring: the signed file, the body format, key validity, where the
fixed-base tables come from (frozen blobs, table files), and the documented maximum of keys
loading in the device's heap, on CPython and on MicroPython."""
import hashlib
import json

import cbor2
import pytest
from hypothesis import given, settings, strategies as st

import tokenkit as tk
from host_tools.common import ecsign, tokenformat
from host_tools.issuing.issuer import Issuer, export_keyring
from mpharness import compiled_tree, device_heap, run_mp
from validator import keyring, reasons as R, signedfile

NOW = tk.NOW


def entry(iss, vf=NOW - 100, vu=NOW + 100, status=0):
    return iss.entry(vf, vu, status)


def test_lookup_validity_boundaries():
    iss = Issuer.new(5)
    ring = keyring.KeyRing.from_body(tokenformat.keyring_body([entry(iss)]), version=3)
    assert ring.version == 3 and len(ring) == 1
    assert ring.lookup(5, NOW - 100) == (R.OK, ring.get(5))
    assert ring.lookup(5, NOW + 100)[0] == R.OK
    assert ring.lookup(5, NOW - 101) == (R.KEY_RETIRED, None)
    assert ring.lookup(5, NOW + 101) == (R.KEY_RETIRED, None)
    assert ring.lookup(6, NOW) == (R.UNKNOWN_KEY, None)
    retired = keyring.KeyRing.from_body(tokenformat.keyring_body([entry(iss, status=1)]))
    assert retired.lookup(5, NOW) == (R.KEY_RETIRED, None)


def with_(d, k, v):
    d = dict(d)
    d[k] = v
    return d


def body(entries, fmt=1):
    return cbor2.dumps({1: fmt, 2: entries})


GOOD = {1: 5, 2: bytes.fromhex("036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"),
        3: 0, 4: 10, 5: 0}


@pytest.mark.parametrize("bad", [
    b"", b"\xa0", cbor2.dumps([1, []]), body([], fmt=2), cbor2.dumps({1: 1}),
    cbor2.dumps({1: 1, 2: [], 3: 0}), body([GOOD, GOOD]), body([with_(GOOD, 5, 2)]),
    body([with_(GOOD, 5, True)]), body([with_(GOOD, 1, -1)]), body([with_(GOOD, 1, 2**32)]),
    body([with_(GOOD, 2, b"\x05" + GOOD[2][1:])]), body([with_(GOOD, 2, GOOD[2][:32])]),
    body([with_(GOOD, 3, "0")]), body([with_(GOOD, 6, b"x" * 31)]),
    body([with_(GOOD, 7, 1)]), body([{k: v for k, v in GOOD.items() if k != 4}]),
    body([GOOD]) + b"\x00", body([with_(GOOD, 1, k) for k in range(300)]),
])
def test_malformed_bodies_are_refused(bad):
    with pytest.raises(keyring.KeyRingError) as e:
        keyring.parse_body(bad)
    assert e.value.args[0] == signedfile.MALFORMED


def test_good_body_with_table_digest():
    keys = keyring.parse_body(body([GOOD, with_(with_(GOOD, 1, 6), 6, bytes(32))]))
    assert [(k.key_id, k.table_digest) for k in keys] == [(5, None), (6, bytes(32))]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bodies_give_keyringerror_only(data):
    try:
        keyring.parse_body(data)
    except keyring.KeyRingError:
        pass


def test_a_key_that_is_not_a_point_verifies_nothing():
    bad = with_(GOOD, 2, b"\x02" + b"\xff" * 32)   # x >= p
    ring = keyring.KeyRing.from_body(body([bad]))
    k = ring.lookup(5, 5)[1]
    assert ring.verify(k, bytes(32), bytes(64)) is False
    assert k.fixed is None


# --- on MicroPython: the signed file, tables ---

MP_LOAD = """
import sys, json, os
from validator import p256
from validator import keyring, tokens
spec = json.loads(open(sys.argv[1]).read())
ops = {}
for kid, pub, until in spec["ops"]:
    ops[kid] = (bytes.fromhex(pub), until)
out = {}
try:
    ring = keyring.KeyRing.load(spec["path"], ops, spec["now"], spec.get("tables"))
except keyring.KeyRingError as e:
    print(json.dumps({"error": e.args[0]}))
    raise SystemExit
if spec.get("build"):
    out["built"] = ring.build_tables(spec["build"], spec["now"])
out["reasons"] = []
out["keys"] = {}
for i, t in enumerate(spec["codes"]):   # the codes' issuers are keys 1, 2, ... in order
    out["reasons"].append(tokens.verify_qr(t, ring, spec["now"], None)[0])
    k = ring.get(i + 1)
    out["keys"][str(i + 1)] = [k.table, k.fixed is not None]
out["version"] = ring.version
ring.close()
print(json.dumps(out))
"""


def mp_load(tmp_path, path, operator, codes=(), now=NOW, tables=None, build=None, op_until=0,
            heap=None):
    spec = {"path": str(path), "ops": [[tk.OPERATOR_KID, ecsign.public_bytes(operator).hex(),
                                        op_until]],
            "now": now, "codes": list(codes), "tables": tables, "build": build}
    f = tmp_path / "spec.json"
    f.write_text(json.dumps(spec))
    # The compiled firmware, as a reader runs it, with the device's 110 KB for data besides its
    # bytecode (frozen in flash on a device).
    heap = heap or device_heap(("validator.p256", "validator.keyring", "validator.tokens"))
    return json.loads(run_mp(MP_LOAD, heap=heap, args=[f], path=compiled_tree()))


def test_signed_key_ring_file_refusals(tmp_path):
    op = ecsign.new_key()
    iss = Issuer.new(7)
    data = export_keyring([entry(iss)], op, tk.OPERATOR_KID, 9)
    path = tmp_path / "keyring.fvs"
    path.write_bytes(data)
    assert mp_load(tmp_path, path, op)["version"] == 9
    assert mp_load(tmp_path, path, ecsign.new_key()) == {"error": "BAD_SIGNATURE"}
    assert mp_load(tmp_path, path, op, op_until=NOW - 1) == {"error": "KEY_EXPIRED"}
    bad = bytearray(data)
    bad[30] ^= 1
    path.write_bytes(bytes(bad))
    assert mp_load(tmp_path, path, op) == {"error": "BAD_SIGNATURE"}
    from host_tools.common import signedfile as hsf
    path.write_bytes(hsf.seal(signedfile.DENYLIST, 1, tokenformat.keyring_body([entry(iss)]), op,
                              tk.OPERATOR_KID))
    assert mp_load(tmp_path, path, op) == {"error": "WRONG_KIND"}
    path.write_bytes(hsf.seal(signedfile.KEYRING, 1, b"\xa0", op, tk.OPERATOR_KID))
    assert mp_load(tmp_path, path, op) == {"error": "MALFORMED"}


def test_tables_from_files_and_the_reader_itself(tmp_path):
    op = ecsign.new_key()
    issuers = [Issuer.new(k) for k in range(1, 8)]
    entries = [entry(i) for i in issuers]
    tables = tmp_path / "tables"
    data = export_keyring(entries[:2], op, tk.OPERATOR_KID, 1, tables_dir=tables)
    ring_path = tmp_path / "keyring.fvs"
    ring_path.write_bytes(data)
    assert sorted(p.name for p in tables.iterdir()) == ["1.p2t", "2.p2t"]

    def codes(n):
        out = []
        for iss in issuers[:n]:
            w = tk.Wallet()
            w.credential = iss.issue(1, w.public_key, NOW, NOW + 10, 1, 1, 1)
            out.append(w.ride_code(NOW))
        return out

    # table files whose SHA-256 the signed ring gives are used
    got = mp_load(tmp_path, ring_path, op, codes(2), tables=str(tables))
    assert got["reasons"] == [R.OK, R.OK]
    assert got["keys"] == {"1": [str(tables / "1.p2t"), True], "2": [str(tables / "2.p2t"), True]}
    # a table file that does not match the signed digest is ignored: verified without a table
    blob = bytearray((tables / "2.p2t").read_bytes())
    blob[-1] ^= 1
    (tables / "2.p2t").write_bytes(bytes(blob))
    got = mp_load(tmp_path, ring_path, op, codes(2), tables=str(tables))
    assert got["reasons"] == [R.OK, R.OK]
    assert got["keys"]["2"] == [None, False]
    # seven keys without tables verify without one
    ring_path.write_bytes(export_keyring(entries, op, tk.OPERATOR_KID, 2))
    got = mp_load(tmp_path, ring_path, op, codes(7))
    assert got["reasons"] == [R.OK] * 7
    assert all(v == [None, False] for v in got["keys"].values())
    # the reader builds its own table files; they serve every key
    own = tmp_path / "own"
    own.mkdir()
    got = mp_load(tmp_path, ring_path, op, codes(7), build=str(own))
    assert sorted(got["built"]) == list(range(1, 8))
    assert got["reasons"] == [R.OK] * 7
    got = mp_load(tmp_path, ring_path, op, codes(7), tables=str(own))
    assert got["reasons"] == [R.OK] * 7
    assert all(t and t.endswith(".p2t") and fixed for t, fixed in got["keys"].values())


def test_host_written_table_matches_the_signed_digest(tmp_path):
    op = ecsign.new_key()
    iss = Issuer.new(3)
    data = export_keyring([entry(iss), entry(Issuer.new(4), status=1)], op, 1, 1,
                          tables_dir=tmp_path)
    from host_tools.common import signedfile as hsf
    _, b = hsf.unseal(data)
    ents = cbor2.loads(b)[2]
    assert ents[0][6] == hashlib.sha256((tmp_path / "3.p2t").read_bytes()).digest()
    assert 6 not in ents[1] and not (tmp_path / "4.p2t").exists()   # no table for a retired key


# --- the documented maximum: 256 keys, each with a table digest ---

def full_ring_entries():
    """MAX_KEYS entries at their largest (u32 ids, 65-byte keys, 64-bit times, a table digest)."""
    out = []
    for i in range(keyring.MAX_KEYS):
        pub = ecsign.public_bytes(ecsign.new_key(), compressed=False)
        out.append({"key_id": 0xFFFF0000 + i, "public_key": pub, "valid_from": 2 ** 63 + i,
                    "valid_until": 2 ** 64 - 1 - i, "status": 0, "table_digest": bytes([i]) * 32})
    return out


def test_the_largest_ring_the_format_allows_is_accepted():
    # 5 + 13 x 256 CBOR items (the decoder's item cap was 3 + 13 x 256: refused as MALFORMED)
    body = tokenformat.keyring_body(full_ring_entries())
    assert len(body) == keyring.MAX_BODY
    ring = keyring.KeyRing.from_body(body)
    assert len(ring) == keyring.MAX_KEYS
    assert ring.get(0xFFFF0000 + 255).table_digest == bytes([255]) * 32
    more = tokenformat.keyring_body(full_ring_entries()[:1] * 2)   # one key twice
    with pytest.raises(keyring.KeyRingError):
        keyring.parse_body(more)


MP_FULL = """
import gc, sys, json
from validator import iobuf, keyring, reasons
iobuf.get()   # the reader's I/O buffer, made at boot
gc.collect()
before = gc.mem_alloc()
ring = keyring.KeyRing.load(sys.argv[1], {1: (bytes.fromhex(sys.argv[2]), 0)}, None)
gc.collect()
kept = gc.mem_alloc() - before
found = 0
for i in range(keyring.MAX_KEYS):   # every key, through the cache
    k = ring.get(0xFFFF0000 + i)
    found += k is not None and k.key_id == 0xFFFF0000 + i
gc.collect()
print(json.dumps({"n": len(ring), "kept": kept, "found": found,
                  "unknown": ring.lookup(7, 0)[0] == reasons.UNKNOWN_KEY,
                  "after": gc.mem_alloc() - before}))
"""


def test_the_documented_maximum_loads_in_the_device_heap(tmp_path):
    """256 keys with table digests load and are found in the device's heap (bytecode + 110 KB),
    keeping little: an index of 6 bytes a key and the few keys used last."""
    op = ecsign.new_key()
    data = export_keyring(full_ring_entries(), op, 1, 1)
    (tmp_path / "k.fvs").write_bytes(data)
    out = json.loads(run_mp(MP_FULL, heap=device_heap(("validator.keyring", "validator.tokens")),
                            args=[tmp_path / "k.fvs", ecsign.public_bytes(op).hex()],
                            path=compiled_tree()).split("\n")[-2])
    assert out["n"] == out["found"] == 256 and out["unknown"]
    # the index (256 x 6 bytes, in pieces) and the ring; then the CACHE keys used last, decoded
    assert out["kept"] < 4 * 1024 and out["after"] < 6 * 1024, out
    print("256-key ring on MicroPython:", out)
