"""Check a signed file on the host as a reader would, before it goes anywhere: its kind, its
length, and its signature against the operator key (docs/signed-files.md). A command that is
handed a key ring, a deny list or a configuration calls `check_file` and stops with one line
(`clierrors.UserError`) on the wrong kind of file, a damaged one, or one signed by another
operator, so that a reader never gets a file it would refuse or, worse, misread.

Operator keys, the readers' trust anchor, come as {key id: (public key bytes, valid until or 0)}
(what the reader's identity holds), read with `operator_keys(specs)` from the issuer's
`operator.json` or `KID:PUBHEX[:VALID_UNTIL]` strings.
"""
import hashlib
import json
import os
from pathlib import Path

from ecdsa import BadSignatureError, NIST256p, VerifyingKey
from ecdsa.keys import MalformedPointError
from ecdsa.util import sigdecode_string

from host_tools.common.clierrors import UserError, read_bytes
from host_tools.common.fw import validator  # noqa: F401
from validator import signedfile as sf

# How people call each kind of file
KIND_TEXT = {sf.KEYRING: "key ring", sf.DENYLIST: "full deny list",
             sf.DENYLIST_DELTA: "deny list delta", sf.CONFIG: "configuration"}
# The command that makes each kind
MADE_BY = {sf.KEYRING: "fare issuer export-keyring", sf.DENYLIST: "fare denylist build",
           sf.DENYLIST_DELTA: "fare denylist delta", sf.CONFIG: "fare config build"}
KIND_BY_NAME = {name: kind for kind, name in sf.KIND_NAMES.items()}


def parse_operator_key(spec):
    """[key id, public key bytes, valid until] from the issuer's `operator.json` or
    `KID:PUBHEX[:VALID_UNTIL]`. UserError (one line) for anything else."""
    spec = str(spec)
    p = Path(spec)
    if p.suffix == ".json" or p.is_file():
        text = read_bytes(p, "operator key file")
        try:
            info = json.loads(text)
            kid, pub, until = info["key_id"], info["public_key"], info.get("valid_until", 0)
        except (ValueError, TypeError, KeyError):
            raise UserError("%s is not an operator key file (the operator.json that `fare issuer "
                            "init-operator` writes: key_id, public_key)" % p) from None
    else:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise UserError("operator key %r: give an operator.json file or KID:PUBHEX"
                            "[:VALID_UNTIL]" % spec)
        try:
            kid = int(parts[0])
            until = int(parts[2]) if len(parts) == 3 else 0
        except ValueError:
            raise UserError("operator key %r: key id and valid-until are integers" % spec) from None
        pub = parts[1]
    if type(kid) is not int or type(until) is not int:
        raise UserError("operator key %s: key id and valid-until are integers" % spec)
    try:
        pub = bytes.fromhex(pub) if isinstance(pub, str) else bytes(pub)
    except (ValueError, TypeError):
        raise UserError("operator key %d: the public key is not hex" % kid) from None
    check_public_key(pub, kid)
    if not 0 <= kid < 1 << 16:
        raise UserError("operator key id %d: must fit 16 bits (the signed-file header)" % kid)
    if until < 0:
        raise UserError("operator key %d: valid-until must be >= 0" % kid)
    return [kid, pub, until]


def check_public_key(pub, kid):
    if len(pub) not in (33, 65):
        raise UserError("operator key %d: a P-256 public key is 33 or 65 bytes (SEC1), got %d"
                        % (kid, len(pub)))
    try:
        VerifyingKey.from_string(pub, curve=NIST256p)
    except (MalformedPointError, ValueError):
        raise UserError("operator key %d: not a point on P-256" % kid) from None


def operator_keys(specs):
    """{key id: (public key, valid until)} from operator key specs (see parse_operator_key)."""
    out = {}
    for s in specs:
        kid, pub, until = parse_operator_key(s)
        out[kid] = (pub, until)
    return out


def default_operator_key(issuer_dir=None):
    """Where the operator's public key is when no option names it: $FARE_OPERATOR_KEY, else
    the issuer directory's operator.json ($FARE_ISSUER_DIR or ./issuer) if there is one."""
    env = os.environ.get("FARE_OPERATOR_KEY")
    if env:
        return env
    d = Path(issuer_dir or os.environ.get("FARE_ISSUER_DIR", "issuer"))
    p = d / "operator.json"
    return str(p) if p.is_file() else None


def verify(data, operator_keys_, now=None):
    """(reason, Header or None) for envelope bytes, the reader's verdict: a signedfile reason
    string (OK, MALFORMED, UNKNOWN_KEY, KEY_EXPIRED, BAD_SIGNATURE). The kind is not checked."""
    h = sf.parse_header(data)
    if h is None:
        return sf.MALFORMED, None
    if len(data) != sf.HEADER_SIZE + h.body_len + sf.SIG_SIZE:
        return sf.MALFORMED, h
    key = operator_keys_.get(h.key_id)
    if key is None:
        return sf.UNKNOWN_KEY, h
    if key[1] and now is not None and now > key[1]:
        return sf.KEY_EXPIRED, h
    end = sf.HEADER_SIZE + h.body_len
    digest = hashlib.sha256(data[:end]).digest()
    try:
        vk = VerifyingKey.from_string(bytes(key[0]), curve=NIST256p)
        vk.verify_digest(data[end:], digest, sigdecode=sigdecode_string)
    except (BadSignatureError, MalformedPointError, ValueError):
        return sf.BAD_SIGNATURE, h
    return sf.OK, h


def describe_problem(reason, h, what, kind, operator_keys_):
    """One line for a file that a reader would refuse."""
    want = KIND_TEXT[kind]
    if h is None:
        return ("%s is not a signed %s (no FVS1 header: a source file, or some other file? "
                "%s makes one)" % (what, want, MADE_BY[kind]))
    if reason == sf.MALFORMED:
        return "%s is damaged: its length does not match its header (truncated or extended?)" % what
    if reason == sf.UNKNOWN_KEY:
        return ("%s is signed by operator key %d, not by the operator key given (key id %s): "
                "another operator's file, or the wrong operator key" % (
                    what, h.key_id, ", ".join(str(k) for k in sorted(operator_keys_)) or "none"))
    if reason == sf.KEY_EXPIRED:
        return "%s is signed by operator key %d, which has expired" % (what, h.key_id)
    return ("%s: the signature does not verify with operator key %d (the file is damaged or was "
            "signed by another operator)" % (what, h.key_id))


def check(data, kind, operator_keys_, what="file", now=None):
    """The Header of envelope bytes `data` if it is a `kind` file that a reader holding
    `operator_keys_` accepts; else UserError saying what is wrong."""
    h = sf.parse_header(data)
    if h is not None and h.kind != kind:
        raise UserError("%s is a %s, not a %s" % (what, KIND_TEXT[h.kind], KIND_TEXT[kind]))
    reason, h = verify(data, operator_keys_, now)
    if reason != sf.OK:
        raise UserError(describe_problem(reason, h, what, kind, operator_keys_))
    return h


def check_file(path, kind, operator_keys_, what=None, now=None):
    """(Header, file bytes) of the file at `path`, checked as `check` does."""
    what = what or str(path)
    data = read_bytes(path, KIND_TEXT[kind] + " file")
    return check(data, kind, operator_keys_, what, now), data
