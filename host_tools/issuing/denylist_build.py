"""Deny lists for readers: build a full list or a delta from a list of ids, sign it with the
operator key, and inspect one (`fare denylist --help`). The format is the firmware's
(firmware/validator/denylist.py); docs/denylist.md explains it.

Source file (text/CSV, one id a line; `#` starts a comment; a `kind,id,expiry` header is allowed):
    account,<id>[,<expiry>]         id: decimal or 0x-hex unsigned 64-bit account number
    credential,<id>[,<expiry>]      id: 32 hex digits (the 16-byte credential id)
expiry (optional): when the entry stops denying, Unix seconds or an ISO date/time in UTC
(`2025-03-01` = that day's midnight, `2025-03-01T12:00:00Z`); readers round it up to a whole UTC
day. An id listed twice keeps the later expiry (no expiry beats any).

Python API:
    entries = read_source(path)                                   # {(tag, id bytes): expiry}
    data, model, report = build_list(entries, version, key, key_id)
    data, model, report = build_delta(base_data, version, key, key_id, entries=new_entries)
    data, model, report = build_delta(base_data, version, key, key_id, add=..., remove=...)
"""
import bisect
import calendar
import hashlib
import os
import struct
import sys
import time
from array import array
from pathlib import Path

from host_tools.common import signedfile
from host_tools.common.clierrors import UserError, check_output, read_bytes, write_bytes
from host_tools.common.fw import validator  # noqa: F401
from host_tools.issuing import issuer
from validator import denylist as fw
from validator import signedfile as sf

DAY = fw.DAY
TARGET_MEAN = 8        # entries per sub-bucket the builder aims at: FP ~ 8 / 2**24 per lookup
KINDS = {"account": fw.TAG_ACCOUNT, "credential": fw.TAG_CREDENTIAL}
TAG_NAMES = {v: k for k, v in KINDS.items()}
_SALT_TRIES = 8
_SALT_TRIES_KNOWN_GOOD = 64   # re-salting until no known-good id collides: ~e^(expected) tries


class SourceError(ValueError):
    pass


class BucketOverflow(ValueError):
    """More than 255 entries hash to one sub-bucket (practically only with a chosen salt)."""


# ---- ids and sources ---------------------------------------------------------------------------

def parse_id(kind, text):
    """(tag, id bytes) for an account number or a credential id in hex."""
    kind = kind.strip().lower()
    text = text.strip()
    if kind == "account":
        try:
            n = int(text, 0) if text.lower().startswith("0x") else int(text, 10)
        except ValueError:
            raise SourceError("account id is not a number: %r" % text) from None
        b = fw.account_bytes(n)
        if b is None:
            raise SourceError("account id out of range (unsigned 64-bit): %r" % text)
        return fw.TAG_ACCOUNT, b
    if kind == "credential":
        try:
            b = bytes.fromhex(text)
        except ValueError:
            raise SourceError("credential id is not hex: %r" % text) from None
        if len(b) != 16:
            raise SourceError("credential id must be 16 bytes (32 hex digits): %r" % text)
        return fw.TAG_CREDENTIAL, b
    raise SourceError("unknown kind %r (account or credential)" % kind)


def parse_time(text):
    """Unix seconds from an integer or an ISO date / date-time in UTC; '' -> 0 (never)."""
    text = text.strip()
    if not text:
        return 0
    if text.isdigit():
        return int(text)
    t = text.rstrip("Z").replace(" ", "T")
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return calendar.timegm(time.strptime(t, fmt))
        except ValueError:
            pass
    raise SourceError("bad expiry %r (Unix seconds or YYYY-MM-DD[THH:MM[:SS]][Z])" % text)


def _later(a, b):
    return 0 if a == 0 or b == 0 else max(a, b)


def parse_source(lines, name="<source>"):
    """{(tag, id bytes): expiry (0 = never)} from source lines; SourceError names the line."""
    out = {}
    for no, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if no == 1 and parts[0].lower() == "kind":
            continue
        try:
            if len(parts) not in (2, 3):
                raise SourceError("expected kind,id[,expiry]")
            key = parse_id(parts[0], parts[1])
            exp = parse_time(parts[2]) if len(parts) == 3 else 0
        except SourceError as e:
            raise SourceError("%s:%d: %s" % (name, no, e)) from None
        out[key] = _later(out[key], exp) if key in out else exp
    return out


def read_source(path):
    """{(tag, id bytes): expiry} of a source file; SourceError for a missing or unreadable file,
    a signed list given in its place, or a binary file."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SourceError("cannot read source %s: %s" % (path, e.strerror or e)) from None
    if data[:4] == sf.MAGIC:
        raise SourceError("%s is a signed file, not a source of ids (`fare denylist show` "
                          "describes one)" % path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError("%s is not a text file: a source has one kind,id[,expiry] a line"
                          % path) from None
    return parse_source(text.splitlines(), str(path))


def write_source(entries, path):
    """Write {(tag, id): expiry} as a source file (tests, exports)."""
    with open(path, "w", encoding="utf-8") as f:
        for (tag, b), exp in entries.items():
            ident = str(int.from_bytes(b, "big")) if tag == fw.TAG_ACCOUNT else b.hex()
            f.write("%s,%s%s\n" % (TAG_NAMES[tag], ident, ",%d" % exp if exp else ""))


# ---- the list model ----------------------------------------------------------------------------

def choose_bits(n):
    """(group_bits, sub_bits) so that sub-buckets hold about TARGET_MEAN entries."""
    impl = 0
    while n > TARGET_MEAN << impl:
        impl += 1
    g = min(impl, fw.MAX_GROUP_BITS)
    s = impl - g
    if s > fw.MAX_SUB_BITS:
        raise ValueError("too many entries for one list: %d" % n)
    return g, s


class ListModel:
    """A deny list as the multiset of its entries. Each entry is one int,
    bucket << 32 | fingerprint << 8 | expiry code, so sorting the ints gives the file order."""

    def __init__(self, width, gbits, sbits, epoch_day, salt, keys):
        self.width = width
        self.gbits = gbits
        self.sbits = sbits
        self.epoch_day = epoch_day
        self.salt = salt
        self.keys = keys  # sorted

    @property
    def impl_bits(self):
        return self.gbits + self.sbits

    @property
    def count(self):
        return len(self.keys)

    def fp_rate(self, n=None):
        """Expected false positives per lookup of an unlisted id: entries sharing its sub-bucket
        times the chance that one shares its 24-bit fingerprint."""
        n = self.count if n is None else n
        return n / 2.0 ** (self.impl_bits + 24)

    def same_params(self, width=None):
        return ListModel(self.width if width is None else width, self.gbits, self.sbits,
                         self.epoch_day, self.salt, [])

    # -- entries --
    def code(self, expiry, now):
        """Expiry code for an entry expiring at `expiry` (0 never), or None if it has expired by
        `now`. Codes count whole UTC days from epoch_day; beyond 255 days: never (deny longer,
        never shorter)."""
        if not expiry:
            return 0
        if expiry <= now:
            return None
        c = -(-expiry // DAY) - self.epoch_day
        if c <= 0:
            return None
        if c > 255 or self.width == 3:
            return 0
        return c

    def key(self, tag, id_bytes, code=0):
        t = int.from_bytes(fw.hash_id(tag, self.salt, id_bytes)[:6], "big")
        return ((t >> (48 - self.impl_bits)) << 32) | ((t & 0xffffff) << 8) | code

    def expired(self, key, now):
        c = key & 0xff
        return c != 0 and now // DAY >= self.epoch_day + c

    def denied(self, tag, id_bytes, now):
        """The reader's answer, computed on the host."""
        k = self.key(tag, id_bytes) & ~0xff
        i = bisect.bisect_left(self.keys, k)
        while i < len(self.keys) and self.keys[i] >> 8 == k >> 8:
            if not self.expired(self.keys[i], now):
                return True
            i += 1
        return False

    def add_entries(self, entries, now, report=None):
        """Add {(tag, id): expiry}; entries already expired at `now` are left out."""
        report = report if report is not None else {}
        keys = []
        for (tag, b), exp in entries.items():
            c = self.code(exp, now)
            if c is None:
                report["dropped_expired"] = report.get("dropped_expired", 0) + 1
                continue
            if exp and c == 0:
                report["expiry_never"] = report.get("expiry_never", 0) + 1
            keys.append(self.key(tag, b, c))
        self.keys = sorted(self.keys + keys) if self.keys else sorted(keys)
        return report

    # -- file body --
    def encode(self):
        G = 1 << self.gbits
        S = 1 << self.sbits
        smask = S - 1
        w = self.width
        keys = self.keys
        out = bytearray(struct.pack(fw.BODY_HEADER, fw.LIST_MAGIC, w, self.gbits, self.sbits, 0,
                                    len(keys), self.epoch_day, self.salt))
        idx = array("I", [0]) * (G + 1)
        pos = 0
        for g in range(G):
            end = bisect.bisect_left(keys, (g + 1) << (self.sbits + 32), pos)
            chunk = keys[pos:end]
            counts = [0] * S
            for k in chunk:
                counts[(k >> 32) & smask] += 1
            if chunk and max(counts) > fw.MAX_BUCKET:
                raise BucketOverflow("sub-bucket with %d entries" % max(counts))
            if w == 4:
                a = array("I", [k & 0xffffffff for k in chunk])
            else:
                a = array("I", [(k >> 8) & 0xffffff for k in chunk])
            if sys.byteorder == "little":
                a.byteswap()
            raw = a.tobytes()
            out += raw if w == 4 else b"".join(raw[i + 1:i + 4] for i in range(0, len(raw), 4))
            out += bytes(counts)
            idx[g + 1] = end
            pos = end
        if sys.byteorder != "little":
            idx.byteswap()
        out += idx.tobytes()
        return bytes(out)

    @classmethod
    def decode(cls, body):
        """Model of a full list body (checks its structure)."""
        if len(body) < fw.BODY_HEADER_SIZE:
            raise ValueError("not a deny list body")
        magic, w, gb, sb, zero, n, epoch, salt = struct.unpack_from(fw.BODY_HEADER, body)
        if magic != fw.LIST_MAGIC or w not in (3, 4):
            raise ValueError("not a deny list body")
        if len(body) != fw.list_body_size(w, gb, sb, n):
            raise ValueError("deny list body has the wrong size")
        G, S = 1 << gb, 1 << sb
        idx = struct.unpack_from("<%dI" % (G + 1), body, len(body) - 4 * (G + 1))
        keys = []
        off = fw.BODY_HEADER_SIZE
        for g in range(G):
            n_g = idx[g + 1] - idx[g]
            ents = body[off:off + n_g * w]
            counts = body[off + n_g * w:off + n_g * w + S]
            if sum(counts) != n_g:
                raise ValueError("count table of group %d does not add up" % g)
            j = 0
            for s, c in enumerate(counts):
                bucket = (g << sb) | s
                for _ in range(c):
                    e = ents[j:j + w]
                    fpc = int.from_bytes(e, "big") if w == 4 else int.from_bytes(e, "big") << 8
                    keys.append((bucket << 32) | fpc)
                    j += w
            off += n_g * w + S
        if keys != sorted(keys):
            raise ValueError("entries out of order")
        return cls(w, gb, sb, epoch, salt, keys)


def collisions(model, known_good, now):
    """Ids of `known_good` (an iterable of (tag, id), none of them listed) that `model` would
    deny at `now`: false positives, each a fingerprint shared with a listed entry."""
    prefixes = {k >> 8 for k in model.keys}
    return [(tag, b) for tag, b in known_good
            if model.key(tag, b) >> 8 in prefixes and model.denied(tag, b, now)]


def new_model(entries, created, salt=None, width=None, known_good=None):
    """(ListModel, body bytes, report) for a full list of `entries` made at `created`.
    With `known_good` (ids the back office knows to be in good standing, e.g. every active
    account and credential), salts are drawn until none of them is a false positive."""
    report = {}
    n = len(entries)
    gbits, sbits = choose_bits(n)
    if width is None:
        width = 4 if any(entries.values()) else 3
    epoch = created // DAY
    good = [k for k in known_good if k not in entries] if known_good else []
    tries = 1 if salt is not None else _SALT_TRIES_KNOWN_GOOD if good else _SALT_TRIES
    best = None
    for _ in range(tries):
        m = ListModel(width, gbits, sbits, epoch, salt if salt is not None else os.urandom(8), [])
        report = m.add_entries(entries, created)
        try:
            body = m.encode()
        except BucketOverflow:
            continue
        if good:
            report["known_good"] = len(good)
            report["known_good_denied"] = len(collisions(m, good, created))
            if report["known_good_denied"]:
                if best is None or report["known_good_denied"] < best[2]["known_good_denied"]:
                    best = (m, body, report)
                continue
        return m, body, report
    if best is not None:
        return best   # the least bad salt; the report says how many good ids it denies
    raise BucketOverflow("could not place the entries in sub-buckets of at most 255")


# ---- signed files ------------------------------------------------------------------------------

def build_list(entries, version, signing_key, key_id, created=None, salt=None, width=None,
               known_good=None):
    """Signed full list: (envelope bytes, ListModel, report)."""
    created = int(time.time()) if created is None else created
    model, body, report = new_model(entries, created, salt, width, known_good)
    data = signedfile.seal(sf.DENYLIST, version, body, signing_key, key_id, created)
    return data, model, report


def read_list(data):
    """(Header, ListModel) of a full list envelope (signature not checked)."""
    h, body = signedfile.unseal(data)
    if h.kind != sf.DENYLIST:
        raise ValueError("not a full deny list (kind %s)" % sf.KIND_NAMES.get(h.kind))
    return h, ListModel.decode(body)


def diff(base, new):
    """Delta records [(key, op)] turning the multiset `base.keys` into `new.keys`."""
    a, b = base.keys, new.keys
    i = j = 0
    out = []
    while i < len(a) or j < len(b):
        if j == len(b) or (i < len(a) and a[i] < b[j]):
            out.append((a[i], fw.OP_REMOVE))
            i += 1
        elif i == len(a) or b[j] < a[i]:
            out.append((b[j], fw.OP_ADD))
            j += 1
        else:
            i += 1
            j += 1
    return out


def encode_delta(base_version, base, new, records, result=None):
    result = new.encode() if result is None else result
    head = struct.pack(fw.DELTA_HEADER, fw.DELTA_MAGIC, base_version, base.width, base.gbits,
                       base.sbits, 0, base.epoch_day, base.salt, new.count,
                       hashlib.sha256(result).digest(), len(records))
    recs = b"".join((k >> 32).to_bytes(3, "big") + (k & 0xffffffff).to_bytes(4, "big")
                    + bytes([op]) for k, op in records)
    return head + recs


def apply_edits(base, add, remove, now, report):
    """New model: base minus `remove` ids plus `add` ids (both {(tag, id): expiry}), entries
    expired at `now` pruned. A removed id must be in the base; its expiry picks the entry when
    two listed ids share a fingerprint."""
    keys = [k for k in base.keys if not base.expired(k, now)]
    report["pruned_expired"] = base.count - len(keys)
    gone = set()
    for (tag, b), exp in remove.items():
        k = base.key(tag, b)
        i = bisect.bisect_left(keys, k)
        cands = []
        while i < len(keys) and keys[i] >> 8 == k >> 8:
            if i not in gone:
                cands.append(i)
            i += 1
        if exp:
            c = base.code(exp, min(now, exp - 1))
            cands = [i for i in cands if keys[i] & 0xff == c]
        if not cands:
            if base.denied(tag, b, 0) and not base.denied(tag, b, now):
                continue  # its entry expired and was pruned already
            raise SourceError("remove: %s %s is not in the base list"
                              % (TAG_NAMES[tag], _show_id(tag, b)))
        if len({keys[i] for i in cands}) > 1:
            raise SourceError("remove: %s %s shares its fingerprint with another entry; give its "
                              "expiry or build the delta from a full source"
                              % (TAG_NAMES[tag], _show_id(tag, b)))
        gone.add(cands[0])
    keys = [k for i, k in enumerate(keys) if i not in gone]
    new = base.same_params()
    new.keys = keys
    new.add_entries(add, now, report)
    return new


def _show_id(tag, b):
    return str(int.from_bytes(b, "big")) if tag == fw.TAG_ACCOUNT else b.hex()


def build_delta(base_data, version, signing_key, key_id, entries=None, add=None, remove=None,
                created=None, known_good=None):
    """Signed delta from the base list file `base_data` to either the full set `entries` or the
    base edited by `add` / `remove`: (envelope bytes, ListModel of the result, report)."""
    created = int(time.time()) if created is None else created
    h, base = read_list(base_data)
    if version <= h.version:
        raise ValueError("delta version %d must be newer than the base %d" % (version, h.version))
    report = {}
    if entries is not None:
        new = base.same_params()
        new.add_entries(entries, created, report)
    else:
        new = apply_edits(base, add or {}, remove or {}, created, report)
    try:
        result = new.encode()
    except BucketOverflow:
        raise BucketOverflow("the result overflows a sub-bucket: build a full list") from None
    records = diff(base, new)
    if known_good:
        # The salt is the base's: a collision can only be reported (a full list re-salts).
        # From edits the builder cannot tell listed ids apart: known_good must hold none.
        good = [k for k in known_good if not (entries is not None and k in entries)
                and not (add and k in add)]
        report["known_good"] = len(good)
        report["known_good_denied"] = len(collisions(new, good, created))
    report.update(base_version=h.version, adds=sum(op == fw.OP_ADD for _, op in records),
                  removes=sum(op == fw.OP_REMOVE for _, op in records), count=new.count,
                  fp_rate=new.fp_rate())
    body = encode_delta(h.version, base, new, records, result)
    data = signedfile.seal(sf.DENYLIST_DELTA, version, body, signing_key, key_id, created)
    return data, new, report


def describe(data):
    """Human-readable facts about a full list or delta envelope (dict)."""
    h, body = signedfile.unseal(data)
    info = {"kind": sf.KIND_NAMES.get(h.kind), "version": h.version, "created": h.created,
            "key_id": h.key_id, "file_bytes": len(data)}
    if h.kind == sf.DENYLIST:
        m = ListModel.decode(body)
        info.update(count=m.count, width=m.width, group_bits=m.gbits, sub_bits=m.sbits,
                    epoch_day=m.epoch_day, salt=m.salt.hex(), fp_rate=m.fp_rate(),
                    bytes_per_entry=len(data) / max(1, m.count),
                    ram_index_bytes=4 * ((1 << m.gbits) + 1))
    elif h.kind == sf.DENYLIST_DELTA:
        (_, base, w, gb, sb, _, epoch, salt, rcount, digest,
         nrec) = struct.unpack_from(fw.DELTA_HEADER, body)
        ops = body[fw.DELTA_HEADER_SIZE + 7::fw.RECORD_SIZE]
        info.update(base_version=base, width=w, group_bits=gb, sub_bits=sb, epoch_day=epoch,
                    salt=salt.hex(), result_count=rcount, result_digest=digest.hex(),
                    adds=ops.count(fw.OP_ADD), removes=ops.count(fw.OP_REMOVE))
    return h, info


# ---- CLI ---------------------------------------------------------------------------------------

def _fmt_time(t):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _print_report(report):
    for k, v in sorted(report.items()):
        print("  %-18s %s" % (k, "%.2e" % v if isinstance(v, float) else v))
    if report.get("known_good_denied"):
        print("warning: %d ids in good standing would be denied (fingerprint collisions); "
              "a full list with a new salt avoids them" % report["known_good_denied"],
              file=sys.stderr)


def parse_salt(text):
    """--salt's 16 hex digits as 8 bytes (None if not given). Raises UserError."""
    if not text:
        return None
    try:
        salt = bytes.fromhex(text)
    except ValueError:
        salt = b""
    if len(salt) != 8:
        raise UserError("--salt is 16 hex digits (8 bytes), not %r" % text)
    return salt


def _cmd_build(args):
    if not args.source:
        raise UserError("give the SOURCE file of ids to list")
    if args.version is None:
        raise UserError("--version is required (newer than the readers' installed list)")
    try:
        entries = read_source(args.source)
        good = list(read_source(args.known_good)) if args.known_good else None
    except SourceError as e:
        raise UserError(str(e)) from None
    salt = parse_salt(args.salt)
    check_output(args.out, "deny list file")
    key, kid = issuer.operator_signing(args)
    try:
        data, model, report = build_list(entries, args.version, key, kid, args.created, salt,
                                         args.width, good)
    except ValueError as e:
        raise UserError("cannot build the list: %s" % e) from None
    write_bytes(args.out, data, "deny list file")
    print("%s: deny list v%d, %d entries, %d bytes (%.2f bytes/entry), "
          "false-positive rate %.1e per lookup"
          % (args.out, args.version, model.count, len(data), len(data) / max(1, model.count),
             model.fp_rate()))
    _print_report(report)
    return 0


def _cmd_delta(args):
    base = read_bytes(args.base, "base deny list")
    check_output(args.out, "delta file")
    if args.write_full:
        check_output(args.write_full, "full list file")
    try:
        if args.source:
            if args.add or args.remove:
                raise UserError("give either a full SOURCE or --add/--remove, not both")
            kw = {"entries": read_source(args.source)}
        elif args.add or args.remove:
            kw = {"add": read_source(args.add) if args.add else {},
                  "remove": read_source(args.remove) if args.remove else {}}
        else:
            raise UserError("give a full SOURCE or --add/--remove files")
        key, kid = issuer.operator_signing(args)
        created = int(time.time()) if args.created is None else args.created
        if args.known_good:
            kw["known_good"] = list(read_source(args.known_good))
        data, model, report = build_delta(base, args.version, key, kid, created=created, **kw)
    except (SourceError, ValueError) as e:
        raise UserError("%s: %s" % (args.base, e) if str(e).startswith("not a") else str(e)
                        ) from None
    write_bytes(args.out, data, "delta file")
    if args.write_full:
        full = signedfile.seal(sf.DENYLIST, args.version, model.encode(), key, kid, created)
        write_bytes(args.write_full, full, "full list file")
        print("%s: the same list v%d in full (base for the next delta, or for readers that "
              "missed one)" % (args.write_full, args.version))
    print("%s: delta v%d -> v%d, +%d -%d entries, %d bytes"
          % (args.out, report["base_version"], args.version, report["adds"], report["removes"],
             len(data)))
    _print_report(report)
    return 0


def _cmd_show(args):
    data = read_bytes(args.file, "deny list file")
    h = sf.parse_header(data)
    kind = h.kind if h is not None and h.kind in (sf.DENYLIST, sf.DENYLIST_DELTA) else sf.DENYLIST
    verdict = issuer.verified(args, data, kind, args.file)
    try:
        h, info = describe(data)
    except ValueError as e:
        raise UserError("%s: %s" % (args.file, e)) from None
    for k, v in info.items():
        if k in ("created",):
            v = "%d (%s)" % (v, _fmt_time(v))
        elif k == "epoch_day":
            v = "%d (%s)" % (v, time.strftime("%Y-%m-%d", time.gmtime(v * DAY)))
        elif isinstance(v, float):
            v = "%.3g" % v
        print("%-16s %s" % (k, v))
    print(verdict)
    if args.check:
        if h.kind != sf.DENYLIST:
            raise UserError("--check needs a full list, %s is a delta" % args.file)
        model = ListModel.decode(signedfile.unseal(data)[1])
        now = int(time.time()) if args.now is None else args.now
        for item in args.check:
            kind, _, ident = item.partition(":")
            try:
                tag, b = parse_id(kind, ident)
            except SourceError as e:
                raise UserError(str(e)) from None
            print("%s %s%s" % (item, "DENIED" if model.denied(tag, b, now) else "not listed",
                               "" if verdict.startswith("signature: valid") else
                               " (in this unverified file; a reader refuses the file)"))
    return 0


def _add_known_good(q):
    q.add_argument("--known-good", metavar="FILE",
                   help="source file of ids in good standing (e.g. every active account and "
                   "credential): a full list draws salts until none of them is a false "
                   "positive; a delta reports how many are")


def add_commands(sub):
    p = sub.add_parser("denylist", help="build, diff and inspect reader deny lists",
                       description="Deny lists for readers: a full list or a delta built from "
                       "a source file of ids (account,<id>[,expiry] / credential,<hex>[,expiry]), "
                       "signed by the operator key. See docs/denylist.md.")
    s = p.add_subparsers(dest="denylist_command", metavar="ACTION")
    s.required = True

    q = s.add_parser("build", help="full list from a source file",
                     description="Build and sign a full deny list (kind DENYLIST).")
    q.add_argument("source", nargs="?", help="source file of ids")
    q.add_argument("--version", type=int, help="list version (newer than the readers' installed "
                   "one; required unless the back office numbers it)")
    q.add_argument("--out", "-o", default="denylist.fvs", help="output file")
    q.add_argument("--salt", help="16 hex digits (default: random; a new salt moves any false "
                   "positive to other ids)")
    q.add_argument("--width", type=int, choices=(3, 4),
                   help="bytes per entry: 4 keeps expiry codes, 3 does not (default: 4 if any "
                   "entry has an expiry)")
    _add_known_good(q)
    issuer.add_signing_options(q)
    q.set_defaults(func=_cmd_build)

    q = s.add_parser("delta", help="delta from a base list to a new source (or edits)",
                     description="Build and sign a delta (kind DENYLIST_DELTA) that turns the "
                     "BASE full list into the list of SOURCE, or into BASE plus --add minus "
                     "--remove. Readers apply it only on top of exactly BASE's version. "
                     "Entries expired by the creation time are pruned.")
    q.add_argument("base", help="the base full list (.fvs) the readers have installed")
    q.add_argument("source", nargs="?", help="source file with the complete new set of ids")
    q.add_argument("--add", help="source file of ids to add")
    q.add_argument("--remove", help="source file of ids to remove")
    q.add_argument("--version", type=int, required=True, help="version after the delta")
    q.add_argument("--out", "-o", default="denylist-delta.fvs", help="output file")
    q.add_argument("--write-full", metavar="PATH",
                   help="also write the resulting list as a signed full list (same version)")
    _add_known_good(q)
    issuer.add_signing_options(q)
    q.set_defaults(func=_cmd_delta)

    q = s.add_parser("show", help="check and describe a list or delta; look ids up",
                     description="Check a deny list or delta file as a reader would (its kind "
                     "and its signature against the operator key), say the verdict and print "
                     "its header facts; with --check, answer as a reader holding it would. A "
                     "file a reader would refuse is an error, unless --no-verify.")
    q.add_argument("file", help="deny list or delta file (.fvs)")
    issuer.add_verify_options(q)
    q.add_argument("--check", action="append", metavar="KIND:ID",
                   help="account:<id> or credential:<hex>, may repeat")
    q.add_argument("--now", type=int, help="time for expiry, Unix seconds (default: now)")
    q.set_defaults(func=_cmd_show)
