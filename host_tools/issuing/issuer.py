"""The issuer (back office) side: issuer and operator key pairs, the readers' key ring, credentials.

Python API (tests and the simulator):
    key = ecsign.new_key()
    iss = Issuer(key, key_id=1)                    # or Issuer.new(1)
    blob = iss.issue(account, rider_pub, valid_from, valid_until, max_rides, max_amount, product)
    envelope = export_keyring(entries, operator_key, operator_key_id, version)

`IssuerStore(directory)` keeps the keys on disk for the CLI (`fare issuer --help`):
    operator.pem / operator.json           the operator key (signs key rings, deny lists, configs)
    issuer-keys/<key id>.pem               issuer signing keys (mode 0600, never sent to a reader)
    keyring.json                           every issuer key: id, public key, validity, status
Private keys are created with mode 0600 and never overwritten.
"""
import hashlib
import json
import os
import secrets
import time
from pathlib import Path

from ecdsa import SigningKey

from host_tools.common import ecsign, secretpaths, signedfile, tokenformat
from host_tools.common.clierrors import (UserError, check_folder, check_output, read_bytes,
                                         write_bytes)
from host_tools.common.fw import validator  # noqa: F401
from validator import keyring as fw_keyring
from validator import signedfile as sf

ACTIVE = fw_keyring.ACTIVE
RETIRED = fw_keyring.RETIRED
DAY = 86400


def write_private_key(path, key):
    """Write a PEM private key readable by its owner only (created 0600; refuses to overwrite
    with FileExistsError)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.to_pem())
    return path


# Where a rider's wallet directory keeps its key pair (host_tools.sim.wallet writes it; `issuer
# issue --wallet` reads the public key from it).
RIDER_KEY_FILE = "rider.pem"


def read_private_key(path):
    return SigningKey.from_pem(Path(path).read_bytes())


class Issuer:
    """One issuer signing key and its key id."""

    def __init__(self, signing_key, key_id):
        self.key = signing_key
        self.key_id = key_id
        self.public_key = ecsign.public_bytes(signing_key)

    @classmethod
    def new(cls, key_id):
        return cls(ecsign.new_key(), key_id)

    def issue(self, account, rider_pub, valid_from, valid_until, max_rides, max_amount, product,
              cred_id=None):
        """Credential blob (CBOR [credential bytes, issuer signature]) for the rider key
        `rider_pub` (33-byte compressed SEC1)."""
        cred_id = secrets.token_bytes(16) if cred_id is None else cred_id
        cred = tokenformat.credential_bytes(self.key_id, cred_id, account, rider_pub,
                                            valid_from, valid_until, max_rides, max_amount,
                                            product)
        return tokenformat.credential_blob(cred, tokenformat.sign_credential(self.key, cred))

    def entry(self, valid_from, valid_until, status=ACTIVE):
        return {"key_id": self.key_id, "public_key": self.public_key, "valid_from": valid_from,
                "valid_until": valid_until, "status": status}


def write_tables(entries, directory):
    """Fixed-base table files "<key id>.p2t" in `directory` for the active keys of `entries`;
    returns the entries with each table's SHA-256 (table_digest), for the signed ring."""
    from host_tools.issuing import p256tables
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for e in entries:
        e = dict(e)
        if e["status"] == ACTIVE:
            blob = p256tables.table_bytes(e["public_key"])
            (directory / ("%d%s" % (e["key_id"], fw_keyring.TABLE_SUFFIX))).write_bytes(blob)
            e["table_digest"] = hashlib.sha256(blob).digest()
        out.append(e)
    return out


def export_keyring(entries, operator_key, operator_key_id, version, created=None,
                   tables_dir=None):
    """Signed envelope (kind KEYRING) of the key ring made from `entries` (dicts with key_id,
    public_key, valid_from, valid_until, status). With `tables_dir`, also the active keys'
    fixed-base table files, whose SHA-256 the signed ring then carries."""
    if tables_dir is not None:
        entries = write_tables(entries, tables_dir)
    body = tokenformat.keyring_body(entries)
    return signedfile.seal(sf.KEYRING, version, body, operator_key, operator_key_id, created)


class IssuerStore:
    """The issuer's keys in a directory (see the module docstring)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.keys_dir = self.dir / "issuer-keys"
        self.ring_path = self.dir / "keyring.json"

    # --- operator key ---
    def create_operator(self, key_id, valid_until=0):
        self.dir.mkdir(parents=True, exist_ok=True)
        key = ecsign.new_key()
        write_private_key(self.dir / "operator.pem", key)
        info = {"key_id": key_id, "public_key": ecsign.public_bytes(key).hex(),
                "valid_until": valid_until}
        (self.dir / "operator.json").write_text(json.dumps(info, indent=1) + "\n")
        return info

    def operator(self):
        """(signing key, key id) of the operator key (FileNotFoundError if there is none)."""
        info = json.loads((self.dir / "operator.json").read_text())
        return read_private_key(self.dir / "operator.pem"), info["key_id"]

    def operator_keys(self):
        """The readers' trust anchor: {key id: (public key, valid_until)}."""
        info = json.loads((self.dir / "operator.json").read_text())
        return {info["key_id"]: (bytes.fromhex(info["public_key"]), info["valid_until"])}

    # --- issuer keys ---
    def _load_ring(self):
        if not self.ring_path.exists():
            return {"version": 0, "keys": []}
        return json.loads(self.ring_path.read_text())

    def _save_ring(self, ring):
        tmp = self.ring_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(ring, indent=1) + "\n")
        os.replace(tmp, self.ring_path)

    def entries(self):
        out = []
        for e in self._load_ring()["keys"]:
            e = dict(e)
            e["public_key"] = bytes.fromhex(e["public_key"])
            out.append(e)
        return out

    def create_key(self, key_id, valid_from, valid_until):
        """A new issuer key (rotation: give each new key a new id)."""
        if not 0 <= key_id < 1 << 32:
            raise ValueError("key id must fit in 32 bits")
        ring = self._load_ring()
        if any(e["key_id"] == key_id for e in ring["keys"]):
            raise ValueError("issuer key id %d already exists" % key_id)
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        key = ecsign.new_key()
        write_private_key(self.keys_dir / ("%d.pem" % key_id), key)
        ring["keys"].append({"key_id": key_id, "public_key": ecsign.public_bytes(key).hex(),
                             "valid_from": valid_from, "valid_until": valid_until,
                             "status": ACTIVE})
        self._save_ring(ring)
        return Issuer(key, key_id)

    def retire(self, key_id):
        ring = self._load_ring()
        for e in ring["keys"]:
            if e["key_id"] == key_id:
                e["status"] = RETIRED
                self._save_ring(ring)
                return
        raise KeyError("no issuer key %d" % key_id)

    def issuer(self, key_id=None, now=None):
        """The Issuer for `key_id`, or the newest active key valid at `now`. `now` is when
        readers are to start accepting what it signs (the CLI passes the credential's
        valid_from; default: the current time). Raises LookupError if the key does not exist,
        is retired, or is not valid at `now`: readers refuse every credential such a key signs
        (KEY_RETIRED), so the issuer does not sign one."""
        now = int(time.time()) if now is None else now
        keys = self._load_ring()["keys"]
        if key_id is None:
            live = [e for e in keys
                    if e["status"] == ACTIVE and e["valid_from"] <= now <= e["valid_until"]]
            if not live:
                raise LookupError("no active issuer key valid at %d" % now)
            key_id = max(live, key=lambda e: e["valid_from"])["key_id"]
        else:
            entry = next((e for e in keys if e["key_id"] == key_id), None)
            if entry is None:
                raise LookupError("no issuer key %d" % key_id)
            if entry["status"] != ACTIVE:
                raise LookupError("issuer key %d is retired: readers refuse what it signs"
                                  % key_id)
            if now > entry["valid_until"]:
                raise LookupError("issuer key %d expired at %d (the credential would start at %d)"
                                  % (key_id, entry["valid_until"], now))
            if now < entry["valid_from"]:
                raise LookupError("issuer key %d is not valid before %d (the credential would "
                                  "start at %d)" % (key_id, entry["valid_from"], now))
        return Issuer(read_private_key(self.keys_dir / ("%d.pem" % key_id)), key_id)

    def export_keyring(self, path=None, version=None, created=None, tables_dir=None,
                       tables_module=None):
        """Write (and return) the signed key ring envelope; the version goes up by one each time
        unless given. `tables_dir`: also write table files for the readers' table directory;
        `tables_module`: also write a table module for a frozen firmware build (no board
        freezes one yet: readers use the table files)."""
        ring = self._load_ring()
        version = ring["version"] + 1 if version is None else version
        op, op_kid = self.operator()
        data = export_keyring(self.entries(), op, op_kid, version, created, tables_dir)
        if tables_module is not None:
            from host_tools.issuing import p256tables
            live = [(e["key_id"], e["public_key"]) for e in self.entries()
                    if e["status"] == ACTIVE]
            Path(tables_module).write_text(p256tables.issuer_table_module(live))
        ring["version"] = version
        self._save_ring(ring)
        if path is not None:
            Path(path).write_bytes(data)
        return data


# --- CLI ---

def _store(args):
    return IssuerStore(args.dir)


def _date(t):
    """Unix seconds as a UTC date and time, for people."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def _need_operator(store):
    if not (store.dir / "operator.json").is_file() or not (store.dir / "operator.pem").is_file():
        raise UserError("no operator key in %s (run `fare issuer init-operator` there, or give "
                        "--dir / $FARE_ISSUER_DIR)" % store.dir)


def _check_dir(d):
    """An issuer directory that will be written: refuse one that cannot be."""
    check_folder(d, "issuer directory")


def _cmd_init_operator(args):
    store = _store(args)
    _check_dir(store.dir)
    try:
        info = store.create_operator(args.key_id, args.valid_until)
    except FileExistsError:
        raise UserError("%s already has an operator key (not overwritten)" % args.dir) from None
    except OSError as e:
        raise UserError("cannot write the operator key in %s: %s" % (args.dir, e.strerror or e)
                        ) from None
    print("operator key %d: %s" % (info["key_id"], info["public_key"]))
    secretpaths.warn_if_committable(store.dir / "operator.pem", "the operator's private key")


def _cmd_new_key(args):
    now = int(time.time())
    vf = now if args.valid_from is None else args.valid_from
    vu = vf + args.days * DAY if args.valid_until is None else args.valid_until
    store = _store(args)
    _check_dir(store.dir)
    try:
        iss = store.create_key(args.key_id, vf, vu)
    except (ValueError, FileExistsError) as e:
        raise UserError("cannot create issuer key %d: %s" % (args.key_id, e)) from None
    print("issuer key %d: %s valid %s .. %s" % (iss.key_id, iss.public_key.hex(), _date(vf),
                                               _date(vu)))
    secretpaths.warn_if_committable(store.keys_dir, "the issuer's private keys")


def _cmd_retire(args):
    try:
        _store(args).retire(args.key_id)
    except KeyError:
        raise UserError("no issuer key %d in %s" % (args.key_id, args.dir)) from None
    print("issuer key %d retired (export the key ring to tell the readers)" % args.key_id)


def _cmd_list(args):
    store = _store(args)
    if not store.ring_path.is_file():
        raise UserError("no issuer keys in %s (fare issuer new-key, or give --dir / "
                        "$FARE_ISSUER_DIR)" % store.dir)
    print("%6s  %-66s  %-20s  %-20s  %s" % ("key id", "public key", "valid from", "valid until",
                                            "status"))
    for e in store.entries():
        print("%6d  %s  %-20s  %-20s  %s" % (e["key_id"], e["public_key"].hex(),
                                             _date(e["valid_from"]), _date(e["valid_until"]),
                                             "active" if e["status"] == ACTIVE else "retired"))


def _cmd_export(args):
    store = _store(args)
    _need_operator(store)
    check_output(args.out, "key ring file")
    data = store.export_keyring(None, args.version, tables_dir=args.tables,
                                tables_module=args.tables_module)
    write_bytes(args.out, data, "key ring file")
    h, _ = signedfile.unseal(data)
    print("key ring version %d written to %s (%d bytes)" % (h.version, args.out, len(data)))


def _cmd_issue(args):
    if args.rider_key:
        try:
            rider_pub = bytes.fromhex(args.rider_key)
        except ValueError:
            raise UserError("--rider-key is not hex: %r" % args.rider_key) from None
    else:
        try:  # a wallet directory keeps the rider's key pair as RIDER_KEY_FILE
            rider_pub = ecsign.public_bytes(read_private_key(Path(args.wallet) / RIDER_KEY_FILE))
        except FileNotFoundError:
            raise UserError("no wallet in %s (no %s: fare wallet new)"
                            % (args.wallet, RIDER_KEY_FILE)) from None
        except (ValueError, IndexError):
            raise UserError("%s in %s is not a rider key (PEM)" % (RIDER_KEY_FILE, args.wallet)
                            ) from None
    check_output(args.out, "credential file")
    iss, blob = issue_from_store(_store(args), args, rider_pub)
    write_bytes(args.out, blob, "credential file")
    print("credential for account %d signed by key %d written to %s"
          % (args.account, iss.key_id, args.out))


def operator_signing(args):
    """(operator signing key, key id) for a command that signs files for readers: --key (PEM)
    with --key-id, else the operator key of --issuer-dir. UserError when there is none."""
    if args.key:
        if args.key_id is None:
            raise UserError("--key needs --key-id")
        pem = read_bytes(args.key, "operator private key")
        try:
            return SigningKey.from_pem(pem), args.key_id
        except (ValueError, IndexError, TypeError):
            raise UserError("--key %s is not a private key in PEM (operator.pem)" % args.key
                            ) from None
    store = IssuerStore(args.issuer_dir)
    try:
        key, kid = store.operator()
    except (FileNotFoundError, NotADirectoryError):
        raise UserError("no operator key in %s (fare issuer init-operator, or --key/--key-id)"
                        % args.issuer_dir) from None
    return key, kid if args.key_id is None else args.key_id


def add_signing_options(q):
    q.add_argument("--issuer-dir", default=os.environ.get("FARE_ISSUER_DIR", "issuer"),
                   help="take the operator key from this issuer directory (default "
                   "$FARE_ISSUER_DIR or ./issuer)")
    q.add_argument("--key", help="operator private key, PEM (instead of the issuer directory)")
    q.add_argument("--key-id", type=int, help="operator key id (with --key)")
    q.add_argument("--created", type=int, help="creation time, Unix seconds (default: now)")


def add_verify_options(q):
    """Options of a command that shows a signed file: the key its signature is checked with."""
    q.add_argument("--operator-key", action="append", metavar="KEY",
                   help="check the signature with this operator public key: operator.json or "
                   "KID:PUBHEX, repeatable (default: $FARE_OPERATOR_KEY, else the issuer "
                   "directory's operator.json)")
    q.add_argument("--issuer-dir", default=os.environ.get("FARE_ISSUER_DIR", "issuer"),
                   help="the issuer directory whose operator.json is the default key (default "
                   "$FARE_ISSUER_DIR or ./issuer)")
    q.add_argument("--no-verify", action="store_true",
                   help="show a file whose signature cannot be checked or does not verify "
                   "(marked NOT VERIFIED; a reader refuses such a file)")


def verified(args, data, kind, what):
    """Check a file a show command was given against the operator key, as a reader would.
    Returns the verdict line to print; UserError for a file a reader refuses (unless
    --no-verify, which shows it with the verdict)."""
    from host_tools.common import signedcheck
    specs = args.operator_key or [k for k in [signedcheck.default_operator_key(args.issuer_dir)]
                                  if k]
    if not specs:
        if args.no_verify:
            return "signature: NOT VERIFIED (no operator key given)"
        raise UserError("cannot check %s's signature: give --operator-key (operator.json or "
                        "KID:PUBHEX) or --issuer-dir, or --no-verify to show it unchecked" % what)
    ops = signedcheck.operator_keys(specs)
    try:
        h = signedcheck.check(data, kind, ops, what)
    except UserError as e:
        if not args.no_verify:
            raise
        return "signature: NOT VALID, a reader refuses this file: %s" % e
    return "signature: valid, operator key %d (a reader holding it accepts the file)" % h.key_id


def issue_from_store(store, args, rider_pub):
    """(Issuer, credential blob) for `rider_pub` and the credential options of `args`
    (add_credential_options), signed by a key of `store`. A key or a field that readers would
    refuse ends the command with a one-line message (UserError), not a traceback."""
    valid_from = int(time.time()) if args.valid_from is None else args.valid_from
    valid_until = (valid_from + args.days * DAY if args.valid_until is None
                   else args.valid_until)
    try:
        iss = store.issuer(args.key_id, now=valid_from)
    except LookupError as e:
        raise UserError("no issuer key to sign with: %s" % str(e).strip("'\"")) from None
    except FileNotFoundError as e:
        raise UserError("no issuer key to sign with in %s: %s" % (store.dir, e.strerror)
                        ) from None
    try:
        blob = iss.issue(args.account, rider_pub, valid_from, valid_until, args.max_rides,
                         args.max_amount, args.product)
    except ValueError as e:
        raise UserError("cannot issue this credential: %s" % e) from None
    return iss, blob


def add_credential_options(p):
    p.add_argument("--account", type=int, required=True, help="account id (unsigned 64-bit)")
    p.add_argument("--valid-from", type=int, help="Unix seconds (default: now)")
    p.add_argument("--valid-until", type=int, help="Unix seconds (default: valid-from + days)")
    p.add_argument("--days", type=int, default=3, help="validity in days (default 3)")
    p.add_argument("--max-rides", type=int, default=10, help="offline rides allowed (default 10)")
    p.add_argument("--max-amount", type=int, default=5000,
                   help="offline amount allowed, minor currency units (default 5000)")
    p.add_argument("--product", type=int, default=1, help="fare product/class (default 1)")
    p.add_argument("--key-id", type=int,
                   help="issuer key to sign with (default: newest active key)")


def add_commands(sub):
    p = sub.add_parser("issuer", help="issuer keys, operator key, reader key ring, credentials",
                       description="The back office: make issuer and operator key pairs, export "
                       "the signed key ring for readers (rotation and retirement), and issue "
                       "credentials to riders' wallets.")
    p.add_argument("--dir", default=os.environ.get("FARE_ISSUER_DIR", "issuer"),
                   help="issuer directory (default $FARE_ISSUER_DIR or ./issuer)")
    s = p.add_subparsers(dest="issuer_command", metavar="ACTION")
    s.required = True

    q = s.add_parser("init-operator", help="create the operator key pair",
                     description="Create the operator key pair that signs key rings, deny lists "
                     "and configurations for readers (private key: operator.pem, mode 0600).")
    q.add_argument("--key-id", type=int, default=1, help="operator key id (default 1)")
    q.add_argument("--valid-until", type=int, default=0,
                   help="Unix seconds after which readers refuse it (default 0: no expiry)")
    q.set_defaults(func=_cmd_init_operator)

    q = s.add_parser("new-key", help="create an issuer key pair (rotation)",
                     description="Create an issuer signing key with a new key id. Readers accept "
                     "credentials signed by it during its validity: make it cover the signing "
                     "period plus the longest credential lifetime.")
    q.add_argument("--key-id", type=int, required=True, help="new issuer key id (< 2**32)")
    q.add_argument("--valid-from", type=int, help="Unix seconds (default: now)")
    q.add_argument("--valid-until", type=int, help="Unix seconds (default: valid-from + days)")
    q.add_argument("--days", type=int, default=30, help="validity in days (default 30)")
    q.set_defaults(func=_cmd_new_key)

    q = s.add_parser("retire", help="retire an issuer key",
                     description="Mark an issuer key retired; after the next key ring export "
                     "readers refuse credentials signed by it (KEY_RETIRED).")
    q.add_argument("--key-id", type=int, required=True, help="the issuer key to retire")
    q.set_defaults(func=_cmd_retire)

    q = s.add_parser("list", help="list issuer keys",
                     description="List the issuer keys: id, public key, validity (UTC) and "
                     "status.")
    q.set_defaults(func=_cmd_list)

    q = s.add_parser("export-keyring", help="write the signed key ring for readers",
                     description="Write the readers' key ring (key id, public key, validity, "
                     "status) in the signed envelope (kind KEYRING), signed by the operator key.")
    q.add_argument("--out", default="keyring.fvs", help="output file (default keyring.fvs)")
    q.add_argument("--version", type=int, help="key ring version (default: previous + 1)")
    q.add_argument("--tables", metavar="DIR",
                   help="also write fixed-base table files (<key id>.p2t) of the active keys "
                   "into DIR, for the readers' table directory; the signed ring carries their "
                   "SHA-256")
    q.add_argument("--tables-module", metavar="FILE",
                   help="also write the active keys' tables as a Python module of constants "
                   "(TABLES = {key id: blob}) for a frozen firmware build; no board freezes "
                   "one yet, readers use the --tables files (docs/tokens.md)")
    q.set_defaults(func=_cmd_export)

    q = s.add_parser("issue", help="issue a credential to a rider key",
                     description="Issue a credential (the rider's public key, account, validity, "
                     "offline limits, fare product) signed by an issuer key.")
    who = q.add_mutually_exclusive_group(required=True)
    who.add_argument("--rider-key", help="rider public key, hex (33-byte compressed)")
    who.add_argument("--wallet", help="wallet directory to take the rider key from")
    add_credential_options(q)
    q.add_argument("--out", default="credential.cbor",
                   help="output file (default credential.cbor)")
    q.set_defaults(func=_cmd_issue)
