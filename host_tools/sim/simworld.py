"""The fare system around a simulated reader: operator and issuer keys, a provisioned reader
(identity, key ring, configuration), riders with credentials in wallets, deny lists.

`fare sim` and `fare scenario` build their worlds with it; everything is made with the same
host tools a transit operator uses (issuer, wallet, config and deny-list builders)."""
from pathlib import Path

from host_tools.issuing import config_build, denylist_build, issuer
from host_tools.fleet import provision
from host_tools.common import tokenformat
from host_tools.sim import wallet
from host_tools.common.fw import validator  # noqa: F401
from validator import denylist as fw_denylist

OPERATOR_KEY_ID = 1
DAY = 86400


class Rider:
    def __init__(self, name, account, wallet_, product, valid_from, valid_until, max_rides,
                 max_amount):
        self.name = name
        self.account = account
        self.wallet = wallet_
        self.product = product
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.max_rides = max_rides
        self.max_amount = max_amount
        self.last_code = None

    @property
    def cred_id(self):
        cred, _ = tokenformat.split_blob(self.wallet.credential)
        return bytes.fromhex(tokenformat.decode_credential(cred)["cred_id"])


class World:
    def __init__(self, workdir, now):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.now = now
        self.store = issuer.IssuerStore(self.dir / "issuer")
        if not (self.dir / "issuer" / "operator.json").exists():
            self.store.create_operator(OPERATOR_KEY_ID)
        self.operator_key, self.operator_kid = self.store.operator()
        self.issuers = {}        # key id -> issuer.Issuer
        self.key_entries = {}    # key id -> key ring entry
        self.riders = {}
        self.keyring_version = 0
        self.config_version = 0
        self.deny_version = 0
        self.deny_entries = {}
        self.deny_data = None
        self.depot_keys_dir = self.dir / "depot-keys"   # what `fare sync --keys` reads

    # -- keys ------------------------------------------------------------------------------

    def add_issuer(self, key_id, valid_from, valid_until, status="active", in_ring=True):
        iss = issuer.Issuer.new(key_id)
        self.issuers[key_id] = iss
        if in_ring:
            st = issuer.ACTIVE if status == "active" else issuer.RETIRED
            self.key_entries[key_id] = iss.entry(valid_from, valid_until, st)
        return iss

    def keyring_file(self, tables_dir=None):
        self.keyring_version += 1
        return issuer.export_keyring(list(self.key_entries.values()), self.operator_key,
                                     self.operator_kid, self.keyring_version, self.now,
                                     tables_dir=tables_dir)

    def config_file(self, source):
        self.config_version += 1
        return config_build.build(source, self.config_version, self.operator_key,
                                  self.operator_kid, self.now)

    def operator_public(self):
        return self.store.operator_keys()[self.operator_kid][0]

    # -- readers ---------------------------------------------------------------------------

    def provision_reader(self, reader_id, config_source):
        """A directory with what `fare deploy` puts on a new reader: identity (made by `fare
        provision`'s code, which also writes the depot's key file), key ring with its tables,
        configuration. Returns the directory."""
        out = self.dir / ("reader-%d" % reader_id)
        provision.provision(out, reader_id, [(self.operator_kid, self.operator_public(), 0)],
                            depot_keys=self.depot_keys_dir, force=True, now=self.now)
        (out / "keyring.fvs").write_bytes(self.keyring_file(tables_dir=out / "tables"))
        (out / "config.fvs").write_bytes(self.config_file(config_source))
        return out

    # -- riders ----------------------------------------------------------------------------

    def add_rider(self, name, account, product=1, valid_from=None, valid_until=None,
                  max_rides=10, max_amount=5000, key_id=None, forged=False):
        """A rider whose phone holds a credential from issuer `key_id` (the first issuer by
        default). `forged`: the credential is signed by a key that is not the issuer's."""
        key_id = key_id if key_id is not None else min(self.issuers)
        valid_from = self.now - DAY if valid_from is None else valid_from
        valid_until = self.now + 30 * DAY if valid_until is None else valid_until
        w = wallet.Wallet()
        signer = self.issuers[key_id] if not forged else issuer.Issuer.new(key_id)
        w.credential = signer.issue(account, w.public_key, valid_from, valid_until, max_rides,
                                    max_amount, product)
        r = Rider(name, account, w, product, valid_from, valid_until, max_rides, max_amount)
        self.riders[name] = r
        return r

    # -- deny lists ------------------------------------------------------------------------

    def deny(self, accounts=(), riders=()):
        """Add accounts and riders' credentials to the deny list; returns the signed full list."""
        for a in accounts:
            self.deny_entries[(fw_denylist.TAG_ACCOUNT, fw_denylist.account_bytes(a))] = 0
        for r in riders:
            self.deny_entries[(fw_denylist.TAG_CREDENTIAL, bytes(self.riders[r].cred_id))] = 0
        self.deny_version += 1
        data, _, _ = denylist_build.build_list(self.deny_entries, self.deny_version,
                                               self.operator_key, self.operator_kid, self.now)
        self.deny_data = data
        return data
