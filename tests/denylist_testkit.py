"""Shared by the deny-list tests and the benchmark: deterministic ids, signed lists, samples."""
import hashlib
import json

from host_tools.issuing import denylist_build as db
from host_tools.common import ecsign
from validator import denylist as dl

NOW = 1_750_000_000          # a fixed "now" (2025-06-15): expiry codes count from its day
DAY = dl.DAY
KEY_ID = 3


class Operator:
    """An operator key pair and the reader's view of it."""

    def __init__(self, key_id=KEY_ID, valid_until=0):
        self.key = ecsign.new_key()
        self.key_id = key_id
        self.valid_until = valid_until

    @property
    def keys(self):
        return {self.key_id: (ecsign.public_bytes(self.key), self.valid_until)}

    def spec(self):
        """Reader keys as JSON-able {key id: [pub hex, valid_until]}."""
        return {str(k): [v[0].hex(), v[1]] for k, v in self.keys.items()}

    def full(self, entries, version, created=NOW, salt=None, width=None):
        return db.build_list(entries, version, self.key, self.key_id, created, salt, width)

    def delta(self, base_data, version, created=NOW, **kw):
        return db.build_delta(base_data, version, self.key, self.key_id, created=created, **kw)


def account(n):
    return (dl.TAG_ACCOUNT, dl.account_bytes(n))


def credential(i):
    return (dl.TAG_CREDENTIAL, hashlib.sha256(b"cred %d" % i).digest()[:16])


def account_id(n):
    """A spread of account numbers (not just 0..n)."""
    return (n * 0x9E3779B97F4A7C15 + 12345) % (1 << 64)


def population(n_accounts, n_creds, expiring_every=0, start=0):
    """{(tag, id): expiry}: accounts never expire; every `expiring_every`-th credential expires
    1..40 days after NOW (0: none do)."""
    out = {}
    for i in range(start, start + n_accounts):
        out[account(account_id(i))] = 0
    for i in range(start, start + n_creds):
        exp = NOW + DAY * (1 + i % 40) if expiring_every and i % expiring_every == 0 else 0
        out[credential(i)] = exp
    return out


def sample(model, keys, now=NOW):
    """[(kind, id, expected)] with the expected answer from the host model."""
    out = []
    for tag, b in keys:
        want = int(model.denied(tag, b, now))
        if tag == dl.TAG_ACCOUNT:
            out.append(("a", int.from_bytes(b, "big"), want))
        else:
            out.append(("c", b.hex(), want))
    return out


def write_samples(path, model, keys, now=NOW):
    """Samples file for the MicroPython side (mpt_denylist_kit.check_samples)."""
    path.write_text("".join("%s %s %d\n" % s for s in sample(model, keys, now)))
    return str(path)


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)
