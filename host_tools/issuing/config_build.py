"""Reader configuration: build the signed file the depot pushes (`fare config --help`).

The source is TOML (or JSON with the same structure); every setting is optional and takes the
reader's default (docs/decisions.md lists them with their meaning):

    line = 12                      # this reader's line (selects the fare table)
    stop = 0
    [rules]                        # durations: seconds, or "90s", "10m", "72h", "3d"
    max_code_age = "60s"
    clock_skew = "30s"
    repeat_window = "5s"
    passback_window = "10m"        # 0 disables
    transfer_window = 0            # free transfer after a paid ride; 0 disables
    sync_window = "72h"            # 0 disables
    deny_max_age = "96h"           # 0 disables
    [degraded]                     # when the reader is out of sync
    mode = "limit"                 # or "reject"
    max_rides = 1                  # per credential, while degraded
    max_amount = 0                 # minor units; 0: no extra amount cap
    [products]                     # names of the issuer's product numbers; defaults:
    child = 7                      #   adult 1, student 2, senior 3, free 4
    [fares.12]                     # line 12: flat fare per product, integer minor units
    adult = 200
    student = 100
    child = 50

The body is the firmware's own format (validator.config: CBOR), checked by the firmware's parser
before it is signed, so that a file the builder writes is a file the reader accepts.

Python API: `load_source(path) -> dict`, `settings(source) -> dict` (the reader's settings),
`body(source) -> bytes`, `build(source, version, key, key_id, created=None) -> bytes`,
`read(data) -> (header, settings)`.
"""
import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

from host_tools.common import signedfile
from host_tools.common.clierrors import UserError, check_output, read_bytes, write_bytes
from host_tools.common.fw import validator  # noqa: F401
from host_tools.issuing import issuer
from validator import config as fw
from validator import signedfile as sf

# Product numbers are the issuer's (the credential carries one; `fare issuer issue` defaults to 1).
DEFAULT_PRODUCTS = {"adult": 1, "student": 2, "senior": 3, "free": 4}
RULES = ("max_code_age", "clock_skew", "repeat_window", "passback_window", "transfer_window",
         "sync_window", "deny_max_age")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class SourceError(ValueError):
    pass


def load_source(path):
    """The source file as a dict (TOML, or JSON if the name ends in .json). A signed file (a
    configuration already built) or another binary file is refused as not being a source."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SourceError("cannot read %s: %s" % (path, e.strerror or e)) from None
    if data[:4] == sf.MAGIC:
        raise SourceError("%s is a signed file, not a source: `fare config show` prints one"
                          % path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError("%s is not a text file: a source is TOML (or JSON)" % path) from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return tomllib.loads(text)
    except ValueError as e:
        raise SourceError("%s: %s" % (path, e)) from None


def duration(v, name):
    if isinstance(v, bool):
        raise SourceError("%s: not a duration: %r" % (name, v))
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        s = v.strip()
        if s.isdigit():
            return int(s)
        if len(s) > 1 and s[-1] in _UNITS and s[:-1].strip().isdigit():
            return int(s[:-1]) * _UNITS[s[-1]]
    raise SourceError("%s: not a duration (seconds, or like 90s 10m 72h 3d): %r" % (name, v))


def _int(v, name):
    if isinstance(v, bool) or not isinstance(v, int):
        raise SourceError("%s: not an integer: %r" % (name, v))
    return v


def _section(src, name):
    v = src.get(name, {})
    if not isinstance(v, dict):
        raise SourceError("[%s] must be a table" % name)
    return v


def settings(src):
    """The reader's settings (the dict validator.config encodes) from a source dict."""
    if not isinstance(src, dict):
        raise SourceError("the source must be a table")
    unknown = set(src) - {"line", "stop", "rules", "degraded", "products", "fares"}
    if unknown:
        raise SourceError("unknown setting(s): %s" % ", ".join(sorted(unknown)))
    d = fw.Config().as_dict()
    for k in ("line", "stop"):
        if k in src:
            d[k] = _int(src[k], k)
    rules = _section(src, "rules")
    for k, v in rules.items():
        if k not in RULES:
            raise SourceError("[rules] unknown rule %r (known: %s)" % (k, ", ".join(RULES)))
        d[k] = duration(v, k)
    deg = _section(src, "degraded")
    for k, v in deg.items():
        if k == "mode":
            if v not in (fw.REJECT, fw.LIMIT):
                raise SourceError("[degraded] mode must be %r or %r" % (fw.REJECT, fw.LIMIT))
            d["degraded"] = v
        elif k in ("max_rides", "max_amount"):
            d["degraded_" + k] = _int(v, "degraded." + k)
        else:
            raise SourceError("[degraded] unknown setting %r" % k)
    products = dict(DEFAULT_PRODUCTS)
    for k, v in _section(src, "products").items():
        products[k] = _int(v, "products." + k)
    fares = {}
    for line, table in _section(src, "fares").items():
        try:
            ln = int(line)
        except ValueError:
            raise SourceError("[fares.%s]: a line is a number" % line) from None
        if not isinstance(table, dict):
            raise SourceError("[fares.%s] must be a table of product = amount" % line)
        t = {}
        for name, amount in table.items():
            if name in products:
                p = products[name]
            elif name.isdigit():
                p = int(name)
            else:
                raise SourceError("[fares.%s] unknown product %r (known: %s)"
                                  % (line, name, ", ".join(sorted(products))))
            if p in t:
                raise SourceError("[fares.%s] product %d given twice" % (line, p))
            t[p] = _int(amount, "fares.%s.%s" % (line, name))
        fares[ln] = t
    d["fares"] = fares
    return d


def body(src):
    """Body bytes for a source dict, checked by the firmware's parser."""
    data = fw.encode(settings(src))
    try:
        fw.parse(data)
    except fw.ConfigError:
        raise SourceError("a setting is out of the reader's range (line/stop < 2**32, fares "
                          "0..%d, at most %d lines of %d products, durations up to %d s, "
                          "degraded max_rides >= 1)" % (fw.MAX_FARE, fw.MAX_LINES,
                                                        fw.MAX_PRODUCTS, fw.MAX_WINDOW)) from None
    if len(data) > fw.MAX_BODY:
        raise SourceError("configuration too large: %d bytes (max %d)" % (len(data), fw.MAX_BODY))
    return data


def build(src, version, signing_key, key_id, created=None):
    """The signed configuration file (envelope kind CONFIG)."""
    return signedfile.seal(sf.CONFIG, version, body(src), signing_key, key_id, created)


def read(data):
    """(envelope header, settings dict) of a configuration file, signature not checked."""
    h, b = signedfile.unseal(data)
    if h.kind != sf.CONFIG:
        raise SourceError("not a configuration file (kind %s)" % sf.KIND_NAMES.get(h.kind))
    try:
        cfg = fw.parse(b, h.version)
    except fw.ConfigError as e:
        raise SourceError("malformed configuration body (%s)" % e.reason) from None
    return h, cfg.as_dict()


# ---- CLI ---------------------------------------------------------------------------------------

def _print_settings(d, out=None):
    out = out or sys.stdout
    for k in d:
        if k == "fares":
            continue
        print("  %-20s %s" % (k, d[k]), file=out)
    if not d["fares"]:
        print("  fares                (none: every tap gets NO_FARE)", file=out)
    for line in sorted(d["fares"]):
        mark = "  <- this reader" if line == d["line"] else ""
        print("  fares line %-9d %s%s" % (line, ", ".join(
            "%d: %d" % (p, a) for p, a in sorted(d["fares"][line].items())), mark), file=out)


def _cmd_build(args):
    try:
        src = load_source(args.source)
        check_output(args.out, "configuration file")
        key, kid = issuer.operator_signing(args)
        data = build(src, args.version, key, kid, args.created)
    except SourceError as e:
        raise UserError(str(e)) from None
    write_bytes(args.out, data, "configuration file")
    print("configuration version %d (%d bytes, operator key %d) written to %s"
          % (args.version, len(data), kid, args.out))
    if args.verbose:
        _print_settings(read(data)[1])
    return 0


def _cmd_check(args):
    try:
        src = load_source(args.source)
        d = settings(src)
        body(src)
    except SourceError as e:
        raise UserError(str(e)) from None
    print("%s: ok" % args.source)
    _print_settings(d)
    return 0


def _cmd_show(args):
    data = read_bytes(args.file, "configuration file")
    verdict = issuer.verified(args, data, sf.CONFIG, args.file)
    try:
        h, d = read(data)
    except ValueError as e:
        raise UserError("%s: %s" % (args.file, e)) from None
    facts = sys.stderr if args.json else sys.stdout  # --json: only the JSON on standard output
    print("%s: configuration version %d, operator key %d, created %s, body %d bytes"
          % (args.file, h.version, h.key_id,
             time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(h.created)), h.body_len),
          file=facts)
    print(verdict, file=facts)
    if args.json:
        d = dict(d)
        d["fares"] = {str(k): {str(p): a for p, a in v.items()} for k, v in d["fares"].items()}
        print(json.dumps(d, indent=1))
    else:
        _print_settings(d)
    return 0


def add_commands(sub):
    p = sub.add_parser("config", help="build and inspect reader configurations (fares, rules)",
                       description="Reader configuration: the fare table, the decision rules' "
                       "settings, the line and stop, the degraded mode. Built from a TOML or JSON "
                       "source into a file signed by the operator key, which the depot pushes. "
                       "See docs/decisions.md.")
    s = p.add_subparsers(dest="config_command", metavar="ACTION")
    s.required = True

    q = s.add_parser("build", help="make the signed configuration file from a source",
                     description="\n\n".join(__doc__.split("\n\n")[1:3]),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("source", help="TOML or JSON source")
    q.add_argument("--version", type=int, required=True,
                   help="configuration version (newer than the one the readers have)")
    q.add_argument("--out", "-o", default="config.fvs", help="output file (default config.fvs)")
    issuer.add_signing_options(q)
    q.add_argument("--verbose", "-v", action="store_true", help="print the settings")
    q.set_defaults(func=_cmd_build)

    q = s.add_parser("check", help="check a source and print the settings a reader would use",
                     description="Check a configuration source (TOML or JSON, e.g. "
                     "examples/config.toml) without signing anything, and print the settings a "
                     "reader would use: every setting left out takes the reader's default.")
    q.add_argument("source", help="TOML or JSON source")
    q.set_defaults(func=_cmd_check)

    q = s.add_parser("show", help="check and print a signed configuration file",
                     description="Check a signed configuration file as a reader would (its "
                     "kind, and its signature against the operator key), say the verdict and "
                     "print its settings. A file a reader would refuse is an error, unless "
                     "--no-verify.")
    q.add_argument("file", help="configuration file (.fvs)")
    q.add_argument("--json", action="store_true", help="print the settings as JSON")
    issuer.add_verify_options(q)
    q.set_defaults(func=_cmd_show)

