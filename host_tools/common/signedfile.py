"""Host side of the signed envelope (firmware/validator/signedfile.py documents the layout)."""
import hashlib
import struct
import time

from host_tools.common.fw import validator  # noqa: F401
from validator import signedfile as fmt
from host_tools.common import ecsign


def seal(kind, version, body, signing_key, key_id, created=None):
    """Return the envelope bytes: header, body, operator signature."""
    created = int(time.time()) if created is None else created
    header = struct.pack(fmt.HEADER, fmt.MAGIC, kind, key_id, version, created, len(body))
    sig, _ = ecsign.sign_digest(signing_key, hashlib.sha256(header + body).digest())
    return header + body + sig


def unseal(data):
    """(Header, body) of an envelope, without checking the signature (the reader does that)."""
    h = fmt.parse_header(data)
    if h is None:
        raise ValueError("not a signed file (bad magic or kind)")
    body = data[fmt.HEADER_SIZE:fmt.HEADER_SIZE + h.body_len]
    return h, body
