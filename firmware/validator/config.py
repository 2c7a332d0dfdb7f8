# The reader's configuration: the rules of the decision (validator.policy), the reader's line and
# stop, and the fare table. The depot pushes it as a signed envelope (validator.signedfile, kind
# CONFIG) whose body is a CBOR map with text keys; every key is optional and takes the default
# below when missing, an unknown key or an out-of-range value refuses the whole file.
#
#   {"format": 1, "line": 12, "stop": 3, "max_code_age": 60, ..., "degraded": "limit",
#    "fares": {line: {product: amount}}}
#
# docs/decisions.md explains each setting and the order in which the rules are checked.
from validator import cbor

try:
    from micropython import const
except ImportError:  # CPython: the pure-logic tests and host tools
    def const(x):
        return x

# Refusal reasons are validator.signedfile's (strings: they go back to the depot); not imported
# here so that the policy's tests and tools need not load the signature code.
MALFORMED = "MALFORMED"

FORMAT = const(1)
MAX_BODY = const(8192)          # bytes (a full fare table: about 4.5 KB)
MAX_LINES = const(64)
MAX_PRODUCTS = const(32)        # per line
MAX_FARE = const(10000000)      # minor units (100,000.00 in a two-decimal currency)
MAX_WINDOW = const(366 * 86400)  # seconds; bounds every time setting
MAX_RIDES_LIMIT = 1 << 32
MAX_ITEMS = const(32 + MAX_LINES * (2 + 2 * MAX_PRODUCTS))   # CBOR items of the largest body

REJECT = "reject"        # degraded mode: refuse every tap with SYNC_REQUIRED
LIMIT = "limit"          # degraded mode: accept up to a lower per-credential limit

# setting: (default, low, high); all are non-negative integers (seconds, counts, minor units)
INT_SETTINGS = {
    "line": (0, 0, (1 << 32) - 1),
    "stop": (0, 0, (1 << 32) - 1),
    "max_code_age": (60, 0, MAX_WINDOW),
    "clock_skew": (30, 0, MAX_WINDOW),
    "repeat_window": (5, 0, 3600),
    "passback_window": (600, 0, MAX_WINDOW),
    "transfer_window": (0, 0, MAX_WINDOW),
    "sync_window": (72 * 3600, 0, MAX_WINDOW),
    "deny_max_age": (96 * 3600, 0, MAX_WINDOW),
    "degraded_max_rides": (1, 1, MAX_RIDES_LIMIT - 1),
    "degraded_max_amount": (0, 0, (1 << 64) - 1),
}
DEFAULT_DEGRADED = LIMIT


class ConfigError(Exception):
    """A configuration file refused; args[0] is a validator.signedfile reason string."""

    @property
    def reason(self):
        return self.args[0]


class Config:
    """Settings as attributes (names as in INT_SETTINGS, plus `degraded` and `fares`);
    `version` is the envelope's version (0 for the built-in defaults)."""

    def __init__(self, version=0):
        self.version = version
        for k in INT_SETTINGS:
            setattr(self, k, INT_SETTINGS[k][0])
        self.degraded = DEFAULT_DEGRADED
        self.fares = {}  # line -> {product: amount}

    def fare(self, product):
        """Fare of `product` on this reader's line, or None when the table has none."""
        table = self.fares.get(self.line)
        if table is None:
            return None
        return table.get(product)

    def as_dict(self):
        d = {"format": FORMAT}
        for k in INT_SETTINGS:
            d[k] = getattr(self, k)
        d["degraded"] = self.degraded
        d["fares"] = self.fares
        return d

    @classmethod
    def from_body(cls, body, version=0):
        return parse(body, version)

    @classmethod
    def load(cls, path, operator_keys, now=None):
        """The configuration in the signed file at `path`, checked against `operator_keys`
        (key id -> (public key, valid_until or 0)). Raises ConfigError(reason) if refused,
        OSError if the flash fails. The reader's configuration: of the fare table it keeps its
        own line's (load_stream)."""
        from validator import iobuf, signedfile
        reason, h = signedfile.verify_file(path, operator_keys, signedfile.CONFIG, now)
        if reason != signedfile.OK:
            raise ConfigError(reason)
        if h.body_len > MAX_BODY:
            raise ConfigError(MALFORMED)
        f = signedfile.open_body(path)
        try:
            return load_stream(f, signedfile.HEADER_SIZE, h.body_len, iobuf.get(), h.version)
        finally:
            f.close()


def _uint(v, low, high):
    return type(v) is int and low <= v <= high


def parse(body, version=0):
    """Config from a body (bytes). Raises ConfigError(MALFORMED) for anything that is
    not a well-formed configuration within the bounds above."""
    try:
        m = cbor.decode(body, max_depth=3, max_items=MAX_ITEMS, max_len=MAX_BODY)
    except cbor.CBORError:
        raise ConfigError(MALFORMED)
    return from_map(m, version)


def from_map(m, version=0):
    """Config from the decoded body; ConfigError(MALFORMED) as parse()."""
    if type(m) is not dict or m.get("format") != FORMAT:
        raise ConfigError(MALFORMED)
    cfg = Config(version)
    for k in m:
        v = m[k]
        if k == "format":
            continue
        if k in INT_SETTINGS:
            low, high = INT_SETTINGS[k][1], INT_SETTINGS[k][2]
            if not _uint(v, low, high):
                raise ConfigError(MALFORMED)
            setattr(cfg, k, v)
        elif k == "degraded":
            if v != REJECT and v != LIMIT:
                raise ConfigError(MALFORMED)
            cfg.degraded = v
        elif k == "fares":
            cfg.fares = _parse_fares(v)
        else:
            raise ConfigError(MALFORMED)
    return cfg


def _parse_fares(v):
    if type(v) is not dict or len(v) > MAX_LINES:
        raise ConfigError(MALFORMED)
    fares = {}
    for line in v:
        fares[line] = _fare_table(line, v[line])
    return fares


def _fare_table(line, table):
    if not _uint(line, 0, (1 << 32) - 1) or type(table) is not dict or len(table) > MAX_PRODUCTS:
        raise ConfigError(MALFORMED)
    t = {}
    for product in table:
        amount = table[product]
        if not (_uint(product, 0, (1 << 32) - 1) and _uint(amount, 0, MAX_FARE)):
            raise ConfigError(MALFORMED)
        t[product] = amount
    return t


# -- the reader's way: from flash, a piece at a time, its own line's fares only --------------------
#
# A full fare table (MAX_LINES lines of MAX_PRODUCTS) decoded whole is tens of KB of dicts (about
# 40 KB on an ESP32, twice that on the 64-bit unix port), and a reader only ever charges its own
# line's fares. load_stream walks the body on flash through a small buffer: it checks every line's
# table as parse() does, one at a time, and keeps the reader's own.

class _Walk:
    def __init__(self, f, start, n, buf):
        self.f = f
        self.start = start
        self.n = n
        self.mv = memoryview(buf)
        self.pos = 0

    def _window(self):
        k = min(len(self.mv), self.n - self.pos)
        if k <= 0:
            raise ConfigError(MALFORMED)
        self.f.seek(self.start + self.pos)
        if self.f.readinto(self.mv[:k]) != k:
            raise ConfigError(MALFORMED)
        return self.mv[:k]

    def head(self):
        try:
            major, arg, used = cbor.decode_head(self._window())
        except cbor.CBORError:
            raise ConfigError(MALFORMED)
        self.pos += used
        return major, arg

    def item(self, max_depth, max_items):
        try:
            v, used = cbor.decode_prefix(self._window(), max_depth, max_items)
        except cbor.CBORError:
            raise ConfigError(MALFORMED)
        self.pos += used
        return v


def _walk(w, line):
    """The body's settings but the fares, whether it has fares, and the fare table of `line`
    (None: not there, or line None). Every line's table is checked."""
    major, k = w.head()
    if major != 5 or k > len(INT_SETTINGS) + 3:   # more keys than there are: one is unknown
        raise ConfigError(MALFORMED)
    settings = {}
    has_fares = False
    own = None
    for _ in range(k):
        key = w.item(0, 1)
        if key in settings or (key == "fares" and has_fares):
            raise ConfigError(MALFORMED)   # a duplicate key
        if key != "fares":
            settings[key] = w.item(0, 1)
            continue
        has_fares = True
        major, n = w.head()
        if major != 5 or n > MAX_LINES:
            raise ConfigError(MALFORMED)
        seen = []
        for _ in range(n):
            lk = w.item(0, 1)
            t = _fare_table(lk, w.item(1, 1 + 2 * MAX_PRODUCTS))
            if lk in seen:
                raise ConfigError(MALFORMED)
            seen.append(lk)
            if lk == line:
                own = t
    if w.pos != w.n:
        raise ConfigError(MALFORMED)
    return settings, has_fares, own


def load_stream(f, start, n, buf, version=0):
    """Config from the `n`-byte body at `start` of the open file `f`, read through `buf` (1 KiB
    holds the largest line's table): the same checks as parse(), but `fares` holds the reader's
    own line only. ConfigError(MALFORMED) as parse()."""
    settings, has_fares, _ = _walk(_Walk(f, start, n, buf), None)
    if has_fares:
        line = settings.get("line", INT_SETTINGS["line"][0])
        _, _, own = _walk(_Walk(f, start, n, buf), line)
        settings["fares"] = {line: own} if own is not None else {}
    return from_map(settings, version)


def encode(cfg_dict):
    """Body bytes for a settings dict (as `Config.as_dict()` gives); used by the host builder."""
    return cbor.encode(cfg_dict)
