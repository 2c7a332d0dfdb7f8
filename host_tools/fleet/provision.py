"""Provisioning: a reader gets its identity once (docs/design.md, "Reader identity").

`identity.cbor` is a CBOR map: 1 reader id, 2 operator keys [[key id, public key, valid until
(0 = no expiry)], ...], 3 sync secret (32 random bytes), 4 provisioning time (Unix seconds).
The depot needs every reader's sync secret too: it goes to the depot's key directory as
`<reader id>.key` (64 hex digits), the form `fare sync --keys DIR` reads.

Once means once: an existing identity file, an existing depot key for the reader id, or (when a
port is given) an identity already on the board is never replaced without `force`. Secrets are
written with mode 0600 (directories 0700).
"""
import os
import secrets
import time
from pathlib import Path

import cbor2

from host_tools.common import signedcheck
from host_tools.common.clierrors import UserError

IDENTITY = "identity.cbor"
SECRET_LEN = 32


class ProvisionError(UserError):
    pass


def parse_operator_key(spec):
    """An operator key the reader will trust, as [key id, public key bytes, valid until], from
    either the issuer's `operator.json` (fare issuer) or `KID:PUBHEX[:VALID_UNTIL]`."""
    try:
        return signedcheck.parse_operator_key(spec)
    except UserError as e:
        raise ProvisionError(str(e)) from None


def check_public_key(pub, kid):
    try:
        signedcheck.check_public_key(pub, kid)
    except UserError as e:
        raise ProvisionError(str(e)) from None


def make_identity(reader_id, operator_keys, secret, now):
    if not 0 < reader_id < 1 << 32:
        raise ProvisionError("reader id must be 1 .. 2**32-1")
    if not operator_keys:
        raise ProvisionError("at least one operator key is needed (the reader's trust anchor)")
    kids = [k[0] for k in operator_keys]
    if len(set(kids)) != len(kids):
        raise ProvisionError("operator key ids must be distinct")
    if len(secret) != SECRET_LEN:
        raise ProvisionError("the sync secret is 32 bytes")
    return cbor2.dumps({1: reader_id, 2: [list(k) for k in operator_keys], 3: bytes(secret),
                        4: int(now)}, canonical=True)


def read_identity(path):
    ident = cbor2.loads(Path(path).read_bytes())
    return {"reader_id": ident[1], "operator_keys": ident[2], "secret": ident[3],
            "time": ident[4]}


def default_depot_keys(out_dir):
    """Next to the readers' folders: provision/reader-17 -> provision/depot-keys."""
    return Path(out_dir).resolve().parent / "depot-keys"


def provision(out_dir, reader_id, operator_keys, depot_keys=None, force=False, now=None,
              secret=None):
    """Write `out_dir/identity.cbor` and the depot's `<reader id>.key`. Returns the identity
    path. Refuses (ProvisionError) to replace either without `force`."""
    out = Path(out_dir)
    depot_keys = Path(depot_keys) if depot_keys else default_depot_keys(out)
    ident_path = out / IDENTITY
    key_path = depot_keys / ("%d.key" % reader_id)
    if not force:
        if ident_path.exists():
            raise ProvisionError("%s exists: this reader is provisioned (use --force to replace "
                                 "its identity; the depot then needs the new key)" % ident_path)
        if key_path.exists():
            raise ProvisionError("%s exists: reader %d already has a sync secret at the depot "
                                 "(use --force to replace it)" % (key_path, reader_id))
    secret = secrets.token_bytes(SECRET_LEN) if secret is None else secret
    now = int(time.time()) if now is None else now
    data = make_identity(reader_id, operator_keys, secret, now)
    _private_dir(out)
    _private_dir(depot_keys)
    _write_private(ident_path, data)
    _write_private(key_path, (secret.hex() + "\n").encode())
    return ident_path


def _private_dir(path):
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write_private(path, data):
    """Write with mode 0600 from the start (never world-readable, not even for a moment), then
    rename into place."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
