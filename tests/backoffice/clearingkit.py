"""Genuine trip records for the clearing tests and bench, fast: credentials, ride codes and NFC
transcripts signed with pyca `cryptography` (what a wallet makes, byte for byte in the formats of
docs/tokens.md), stored records (validator.triplog.encode) and a way to put them into the central
store as an upload would (COPY into the staging table, the merge, an upload_batches row with
its days), without depot databases or readers.

The recovery id is left 0: the reader uses it, clearing does not (host_tools/backoffice/
codecheck.py)."""
import hashlib
import os
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from host_tools.backoffice import clearinginputs, upload
from host_tools.backoffice.stagerows import COPY_HEADER, COPY_TRAILER, encode_row
from host_tools.common import tokenformat
from host_tools.common.fw import validator  # noqa: F401
from host_tools.issuing import config_build, issuer
from validator import tokens as fw
from validator import triplog as tl

_ALG = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
DAY0 = 1795449600          # 2026-11-24 00:00 at UTC+8: service day 2026-11-24 starts at 04:00
T0 = DAY0 + 6 * 3600       # 06:00 local


def sign(key, digest):
    r, s = utils.decode_dss_signature(key.sign(digest, _ALG))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def public_bytes(key):
    return key.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.CompressedPoint)


class IssuerKey:
    def __init__(self, key_id, valid_from=DAY0 - 30 * 86400, valid_until=DAY0 + 60 * 86400,
                 key=None):
        self.key_id = key_id
        self.key = key or new_key()
        self.valid_from = valid_from
        self.valid_until = valid_until

    def entry(self, status=issuer.ACTIVE):
        return {"key_id": self.key_id, "public_key": public_bytes(self.key),
                "valid_from": self.valid_from, "valid_until": self.valid_until, "status": status}


class Rider:
    """One credential in a wallet: makes ride codes and NFC answers with its counter."""

    def __init__(self, iss, account, product=1, max_rides=20, max_amount=20000,
                 valid_from=DAY0 - 86400, valid_until=DAY0 + 30 * 86400, cred_id=None,
                 signer=None, rider_key=None):
        self.account = account
        self.product = product
        self.max_rides = max_rides
        self.max_amount = max_amount
        self.key = rider_key or new_key()
        self.cred_id = cred_id or os.urandom(16)
        self.cred = tokenformat.encode({
            fw.C_VERSION: 1, fw.C_KEY_ID: iss.key_id, fw.C_ID: self.cred_id,
            fw.C_ACCOUNT: account, fw.C_RIDER_KEY: public_bytes(self.key),
            fw.C_VALID_FROM: valid_from, fw.C_VALID_UNTIL: valid_until,
            fw.C_MAX_RIDES: max_rides, fw.C_MAX_AMOUNT: max_amount, fw.C_PRODUCT: product})
        self.cred_hash = hashlib.sha256(self.cred).digest()
        self.isig = sign(signer or iss.key, self.cred_hash)
        self.counter = 0

    def qr(self, t, counter=None):
        """A ride code (its bytes, as a record keeps them) made at `t`."""
        if counter is None:
            self.counter += 1
            counter = self.counter
        dyn = tokenformat.dynamic_bytes(t, counter)
        d = hashlib.sha256(fw.TAG_QR + self.cred_hash + self.isig + dyn).digest()
        return tokenformat.encode([self.cred, self.isig, dyn, sign(self.key, d), 0]), counter

    def nfc(self, reader_id, t, counter=None):
        """The NFC transcript of a tap on reader `reader_id` at `t`."""
        if counter is None:
            self.counter += 1
            counter = self.counter
        challenge = struct.pack(">II", reader_id, t) + os.urandom(16)
        dyn = tokenformat.dynamic_bytes(t, counter)
        d = hashlib.sha256(fw.TAG_NFC + self.cred_hash + self.isig + challenge + dyn).digest()
        return tokenformat.encode([self.cred, self.isig, dyn, sign(self.key, d), 0,
                                   challenge]), counter


class Reader:
    """A reader's log: records numbered from 1, chained (unkeyed)."""

    def __init__(self, reader_id, line):
        self.reader_id = reader_id
        self.line = line
        self.seq = 0
        self.link = tl.genesis(reader_id)

    def record(self, t, kind="qr", raw=b"", account=0, counter=0, cred_id=b"", fare=0,
               decision=1, reason=0, line=None):
        self.seq += 1
        rec = {"time": t, "decision": decision, "reason": reason, "kind": kind,
               "account": account, "counter": counter, "fare": fare,
               "line": self.line if line is None else line, "stop": 1, "cred_id": cred_id,
               "raw": raw}
        data = tl.encode(rec, self.seq, self.reader_id, self.link)
        self.link = tl.link(data)
        return data

    def tap(self, rider, t, fare, kind="qr", code=None, counter=None):
        """An accepted tap of `rider` (a fresh code, or `code` = (raw, counter) shown again)."""
        if code is None:
            code = rider.qr(t, counter) if kind == "qr" else rider.nfc(self.reader_id, t, counter)
        raw, ctr = code
        return self.record(t, kind, raw, rider.account, ctr, rider.cred_id, fare), code

    def refusal(self, rider, t, reason=26):
        return self.record(t, "qr", b"", rider.account, rider.counter, rider.cred_id, 0,
                           decision=0, reason=reason)


def depot_id(conn):
    row = conn.execute("SELECT depot_id FROM depots WHERE name = 'kit'").fetchone()
    if row:
        return row[0]
    return conn.execute("INSERT INTO depots (name, role_name) VALUES ('kit', 'kit_nobody') "
                        "RETURNING depot_id").fetchone()[0]


def put(conn, records, received_at=DAY0 + 86400):
    """Store `records` (stored trip record bytes) in the central store as one upload batch would:
    skips records it has. Returns how many were new."""
    if not records:
        return 0
    rows = []
    for raw in records:
        h = tl.decode(raw)
        row, bad = encode_row(h["reader_id"], h["seq"], raw, received_at, received_at)
        assert bad is None, bad
        rows.append(row)
    did = depot_id(conn)
    with conn.transaction():
        conn.execute(upload.CREATE_STAGE)
        cur = conn.cursor()
        with cur.copy(upload.COPY_STAGE) as cp:
            cp.write(b"".join([COPY_HEADER] + sorted(rows) + [COPY_TRAILER]))
        cur.execute(upload.ENSURE_DAYS)
        bid = cur.execute(upload.NEXT_BATCH).fetchone()[0]
        cur.execute(upload.MERGE_RACING, {"depot": did, "batch": bid})
        new = cur.rowcount
        cur.execute(upload.INSERT_BATCH, (bid, did, "00000000-0000-0000-0000-000000000000",
                                          len(records), new, 0, 0))
    return new


class Operator:
    """The operator's signing key (python-ecdsa, as the host tools sign files) and its files."""

    def __init__(self, tmp):
        self.dir = tmp
        self.store = issuer.IssuerStore(tmp / "issuer")
        if not (tmp / "issuer" / "operator.json").exists():
            self.store.create_operator(1)
        self.key, self.kid = self.store.operator()
        self.keys = self.store.operator_keys()
        self.n = 0

    def keyring(self, entries, version, created=DAY0 - 40 * 86400):
        p = self.dir / ("keyring-%d.fvs" % version)
        p.write_bytes(issuer.export_keyring(entries, self.key, self.kid, version, created))
        return p

    def config(self, line, fares, version=1, created=DAY0 - 40 * 86400, **rules):
        src = {"line": line, "rules": {"max_code_age": 60, "clock_skew": 30, **rules},
               "fares": {str(line): fares}}
        p = self.dir / ("config-%d-%d.fvs" % (line, version))
        p.write_bytes(config_build.build(src, version, self.key, self.kid, created))
        return p

    def load(self, url, keyrings=(), configs=()):
        return clearinginputs.load(url, keyrings, configs, self.keys)
