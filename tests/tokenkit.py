"""A small token world for tests: operator key, issuer keys (active, retired, expired, not yet
valid), the signed key ring file, wallets with credentials; and a runner that verifies ride codes
and NFC exchanges on the MicroPython binary, one JSON line per case (keeps a 110 KB heap happy)."""
import json

import cbor2

from host_tools.common import ecsign
from host_tools.issuing.issuer import Issuer, export_keyring
from host_tools.sim.wallet import Wallet
from mpharness import compiled_tree, device_heap, run_mp

NOW = 1_780_000_000
DAY = 86400
OPERATOR_KID = 3
ACTIVE_KID = 7          # single-bit flips of these ids never land on another id in the ring
RETIRED_KID = 1000
EXPIRED_KID = 300
FUTURE_KID = 301
UNKNOWN_KID = 4242


class World:
    def __init__(self, tmp_path, now=NOW):
        self.now = now
        self.dir = tmp_path
        self.operator = ecsign.new_key()
        self.issuers = {kid: Issuer.new(kid) for kid in
                        (ACTIVE_KID, RETIRED_KID, EXPIRED_KID, FUTURE_KID, UNKNOWN_KID)}
        self.entries = [
            self.issuers[ACTIVE_KID].entry(now - 10 * DAY, now + 30 * DAY),
            self.issuers[RETIRED_KID].entry(now - 10 * DAY, now + 30 * DAY, status=1),
            self.issuers[EXPIRED_KID].entry(now - 40 * DAY, now - 1),
            self.issuers[FUTURE_KID].entry(now + 1, now + 30 * DAY),
        ]
        self.keyring_path = tmp_path / "keyring.fvs"
        self.keyring_path.write_bytes(
            export_keyring(self.entries, self.operator, OPERATOR_KID, 5, created=now))

    def operator_keys(self):
        return {OPERATOR_KID: (ecsign.public_bytes(self.operator), 0)}

    def wallet(self, kid=ACTIVE_KID, account=123456789, max_rides=10, max_amount=5000,
               product=2, valid_from=None, valid_until=None):
        w = Wallet()
        vf = self.now - DAY if valid_from is None else valid_from
        vu = self.now + 2 * DAY if valid_until is None else valid_until
        w.credential = self.issuers[kid].issue(account, w.public_key, vf, vu, max_rides,
                                               max_amount, product)
        return w

    def keyring(self):
        """The same key ring on CPython (for CPython-side tests)."""
        from validator import keyring
        return keyring.KeyRing.load(str(self.keyring_path), self.operator_keys(), self.now)


def qr_case(text, now=NOW, **extra):
    return dict(kind="qr", text=text, now=now, **extra)


def nfc_case(responses, rand, reader_id=77, now=NOW, **extra):
    """`responses`: the device's answers in order (bytes), or None where the exchange breaks."""
    return dict(kind="nfc", responses=[None if r is None else r.hex() for r in responses],
                rand=rand.hex(), reader_id=reader_id, now=now, **extra)


TOKEN_MODULES = ("validator.p256", "validator.tokens", "validator.keyring")

MP_RUNNER = """
import sys, json, gc
from validator import p256
from validator import tokens, keyring
spec = json.loads(open(sys.argv[1]).readline())
ops = {}
for kid, pub, until in spec["operator_keys"]:
    ops[kid] = (bytes.fromhex(pub), until)
ring = keyring.KeyRing.load(spec["keyring"], ops, spec["now"])
cache = tokens.CredCache(spec["cache"]) if spec["cache"] else None

class Scripted:
    def __init__(self, responses):
        self.responses = responses
        self.sent = []
    def __call__(self, apdu):
        self.sent.append(bytes(apdu).hex())
        r = self.responses[len(self.sent) - 1] if len(self.sent) <= len(self.responses) else None
        if r is None:
            raise OSError(110)   # the phone left the field
        return bytes.fromhex(r)

def fields(t):
    return [t.kind, t.cred_id.hex(), t.cred_hash.hex(), t.account, t.key_id, t.valid_from,
            t.valid_until, t.max_rides, t.max_amount, t.product, t.time, t.counter, t.raw.hex()]

f = open(sys.argv[1])
f.readline()
for line in f:
    c = json.loads(line)
    sent = None
    if c["kind"] == "qr":
        r, tok = tokens.verify_qr(c["text"], ring, c["now"], cache)
    else:
        ex = Scripted(c["responses"])
        r, tok = tokens.read_nfc(ex, ring, c["reader_id"], c["now"], bytes.fromhex(c["rand"]),
                                 cache)
        sent = ex.sent
    print(json.dumps([r, fields(tok) if tok else None, sent]))
    c = tok = None
    gc.collect()
"""

FIELDS = ("kind", "cred_id", "cred_hash", "account", "key_id", "valid_from", "valid_until",
          "max_rides", "max_amount", "product", "time", "counter", "raw")


def run_cases(world, cases, cache=64, heap="110k"):
    """Verify `cases` on MicroPython; returns [(reason, fields dict or None, APDUs sent)]."""
    path = world.dir / "cases.jsonl"
    ops = [[k, v[0].hex(), v[1]] for k, v in world.operator_keys().items()]
    with open(path, "w") as f:
        f.write(json.dumps({"operator_keys": ops, "keyring": str(world.keyring_path),
                            "now": world.now, "cache": cache}) + "\n")
        for c in cases:
            f.write(json.dumps(c) + "\n")
    out = []
    # The compiled firmware, as a reader runs it, with the device's 110 KB for data: in a bare
    # 110 KB heap the token modules' own bytecode (48 KB, in flash on a device) left too little
    # to say whether a verify fits (one run in three failed so).
    if heap == "110k":
        heap = device_heap(TOKEN_MODULES)
    for line in run_mp(MP_RUNNER, heap=heap, args=[path], path=compiled_tree()).splitlines():
        reason, flds, sent = json.loads(line)
        out.append((reason, dict(zip(FIELDS, flds)) if flds else None, sent))
    assert len(out) == len(cases)
    return out


def code_regions(code):
    """Byte ranges of the five parts of ride code bytes: {name: (start, end)} plus 'heads'."""
    items = cbor2.loads(code)
    regions = {}
    pos = 1  # the array head
    heads = [0]
    for name, item in zip(("cred", "isig", "dyn", "rsig", "recid"), items):
        enc = cbor2.dumps(item)
        if name == "recid":
            regions[name] = (pos, pos + 1)
            pos += 1
            continue
        head = len(enc) - len(item)
        heads.extend(range(pos, pos + head))
        regions[name] = (pos + head, pos + len(enc))
        pos += len(enc)
    assert pos == len(code)
    regions["heads"] = heads
    return regions
