"""What clearing checks the records against, from the operator's signed files: the issuer key
ring's history (each key's public key, validity, and when it was retired) and the readers'
configurations (each line's fares and the rules a ride code's time is held to).

Every file is checked as a reader checks it (its kind and the operator's signature); loading the
same file again changes nothing. A key id that comes back with another public key is refused:
the records signed under it could no longer be told apart."""
import hashlib

from host_tools.backoffice.pgconn import CentralError, connect
from host_tools.common import signedcheck
from host_tools.common.fw import validator  # noqa: F401
from host_tools.issuing import config_build
from validator import keyring as fw_keyring
from validator import signedfile as sf

SETTINGS = {"sharing_window": "seconds", "update_grace": "seconds", "currency": "text"}


def read_keyring(path, operator_keys):
    """(header, [(key_id, public key, valid_from, valid_until, retired)], sha256) of a signed
    key ring file."""
    h, data = signedcheck.check_file(path, sf.KEYRING, operator_keys)
    body = data[sf.HEADER_SIZE:sf.HEADER_SIZE + h.body_len]
    try:
        ring = fw_keyring.KeyRing.from_body(body, h.version)
    except (ValueError, fw_keyring.KeyRingError) as e:
        raise CentralError("%s: not a usable key ring body (%s)" % (path, e)) from None
    keys = [(k.key_id, bytes(k.public_key), k.valid_from, k.valid_until,
             k.status != fw_keyring.ACTIVE) for k in ring.keys()]
    return h, keys, hashlib.sha256(data).digest()


def read_config(path, operator_keys):
    """(header, settings dict, sha256) of a signed reader configuration file."""
    h, data = signedcheck.check_file(path, sf.CONFIG, operator_keys)
    try:
        _, d = config_build.read(data)
    except ValueError as e:
        raise CentralError("%s: %s" % (path, e)) from None
    return h, d, hashlib.sha256(data).digest()


def load(url, keyrings=(), configs=(), operator_keys=None):
    """Load key ring and configuration files into the store. Returns a list of lines saying
    what changed."""
    rings = [(p,) + read_keyring(p, operator_keys) for p in keyrings]
    cfgs = [(p,) + read_config(p, operator_keys) for p in configs]
    out = []
    with connect(url) as conn, conn.transaction():
        # oldest first, so that a key's retirement is dated by the first ring that says so
        for path, h, keys, digest in sorted(rings, key=lambda r: (r[1].created, r[1].version)):
            have = conn.execute("SELECT sha256 FROM clearing_keyrings WHERE version = %s",
                                (h.version,)).fetchone()
            if have is not None:
                if bytes(have[0]) != digest:
                    raise CentralError("%s: key ring version %d is loaded already with other "
                                       "contents" % (path, h.version))
                out.append("%s: key ring version %d loaded already" % (path, h.version))
                continue
            conn.execute("INSERT INTO clearing_keyrings (version, created, sha256) "
                         "VALUES (%s, %s, %s)", (h.version, h.created, digest))
            for kid, pub, vf, vu, retired in keys:
                old = conn.execute("SELECT public_key FROM clearing_keys WHERE key_id = %s",
                                   (kid,)).fetchone()
                if old is not None and bytes(old[0]) != pub:
                    raise CentralError("%s: issuer key %d has another public key than the one "
                                       "loaded before: refused" % (path, kid))
                conn.execute(
                    "INSERT INTO clearing_keys (key_id, public_key, valid_from, valid_until, "
                    "retired_at, first_ring) VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (key_id) DO UPDATE SET valid_from = excluded.valid_from, "
                    "valid_until = excluded.valid_until, retired_at = COALESCE("
                    "LEAST(clearing_keys.retired_at, excluded.retired_at), "
                    "clearing_keys.retired_at, excluded.retired_at)",
                    (kid, pub, vf, vu, h.created if retired else None, h.version))
            out.append("%s: key ring version %d, %d key(s)" % (path, h.version, len(keys)))
        for path, h, d, digest in cfgs:
            line = d["line"]
            fares = {str(p): a for p, a in d["fares"].get(line, {}).items()}
            cur = conn.execute(
                "INSERT INTO clearing_configs (line, created, version, sha256, max_code_age, "
                "clock_skew, transfer_window, fares) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (line, h.created, h.version, digest, d["max_code_age"], d["clock_skew"],
                 d["transfer_window"], _json(fares)))
            out.append("%s: configuration version %d of line %d%s" % (
                path, h.version, line, "" if cur.rowcount else " loaded already"))
    return out


def _json(v):
    from psycopg.types.json import Jsonb
    return Jsonb(v)


def parse_seconds(text, name):
    """Seconds from 90, "90s", "10m", "72h", "3d"."""
    try:
        return config_build.duration(text, name)
    except config_build.SourceError as e:
        raise CentralError(str(e)) from None


def set_settings(url, values):
    """Change clearing settings ({name: text}); returns every setting."""
    with connect(url) as conn, conn.transaction():
        for k, v in values.items():
            if k not in SETTINGS:
                raise CentralError("no clearing setting %r" % k)
            if SETTINGS[k] == "seconds":
                v = str(parse_seconds(v, k))
            elif not (isinstance(v, str) and v.isalpha() and len(v) == 3):
                raise CentralError("currency is a three-letter code (ISO 4217), not %r" % v)
            conn.execute("UPDATE clearing_settings SET value = %s WHERE key = %s", (v, k))
        return dict(conn.execute("SELECT key, value FROM clearing_settings ORDER BY key"))
