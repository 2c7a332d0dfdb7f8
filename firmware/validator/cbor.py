# Strict, bounded CBOR (RFC 8949) for untrusted bytes, and the tiny encoder the reader needs.
#
# The decoder accepts only what our formats use: unsigned and negative integers (up to 64 bits),
# byte strings, UTF-8 text strings, arrays, maps with integer or text keys, false/true/null.
# It rejects, with CBORError and nothing else: floats, tags, undefined and other simple values,
# indefinite lengths, non-shortest ("non-canonical") integer and length encodings, duplicate
# map keys, trailing bytes, and anything beyond the depth / item / size limits. Lengths are
# checked against the bytes that are left before anything is allocated, so a hostile header
# cannot make the reader allocate more than the input it was given.
#
# Map key order is not checked: signatures are always verified over the exact received bytes,
# so canonical ordering buys nothing, and our own encoder keeps the caller's order.


class CBORError(ValueError):
    pass


_MAX_ARG = (1 << 64) - 1


class _Decoder:
    def __init__(self, data, max_depth, max_items):
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.items = max_items  # items still allowed
        self.max_depth = max_depth
        self.views = False

    def _arg(self, info):
        # The argument of a head byte; shortest form only.
        if info < 24:
            return info
        data = self.data
        p = self.pos
        if info == 24:
            if p + 1 > self.end:
                raise CBORError("truncated")
            v = data[p]
            self.pos = p + 1
            if v < 24:
                raise CBORError("non-canonical integer")
            return v
        if info == 25:
            n = 2
        elif info == 26:
            n = 4
        elif info == 27:
            n = 8
        else:
            # 28..30 reserved, 31 indefinite length / break
            raise CBORError("indefinite or reserved length")
        if p + n > self.end:
            raise CBORError("truncated")
        v = int.from_bytes(bytes(data[p:p + n]), "big")
        self.pos = p + n
        if v < (1 << (4 * n)):  # would have fitted in the next smaller form
            raise CBORError("non-canonical integer")
        return v

    def item(self, depth):
        if self.items <= 0:
            raise CBORError("too many items")
        self.items -= 1
        p = self.pos
        if p >= self.end:
            raise CBORError("truncated")
        head = self.data[p]
        self.pos = p + 1
        major = head >> 5
        info = head & 31
        if major == 7:
            if info == 20:
                return False
            if info == 21:
                return True
            if info == 22:
                return None
            raise CBORError("float or simple value")
        arg = info if info < 24 else self._arg(info)   # (most heads hold their argument)
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major == 2 or major == 3:
            p = self.pos
            if arg > self.end - p:
                raise CBORError("truncated")
            self.pos = p + arg
            if major == 2 and self.views:
                return memoryview(self.data)[p:p + arg]
            raw = bytes(self.data[p:p + arg])
            if major == 2:
                return raw
            return _utf8(raw)
        if major == 6:
            raise CBORError("tag")
        # arrays and maps
        if depth >= self.max_depth:
            raise CBORError("too deep")
        # every item takes at least one byte: refuse counts the input cannot hold
        need = arg if major == 4 else 2 * arg
        if need > self.items or need > self.end - self.pos:
            raise CBORError("too many items")
        depth += 1
        item = self.item
        if major == 4:
            out = []
            for _ in range(arg):
                out.append(item(depth))
            return out
        out = {}
        for _ in range(arg):
            k = item(depth)
            t = type(k)
            if t is not int and t is not str:     # (a bool's type is bool)
                raise CBORError("map key type")
            if k in out:
                raise CBORError("duplicate map key")
            out[k] = item(depth)
        return out


def _utf8(raw):
    # Validate by hand: MicroPython's str() accepts overlong forms and encoded surrogates.
    i = 0
    n = len(raw)
    while i < n:
        b = raw[i]
        if b < 0x80:
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= b <= 0xDF:
            k = 1
        elif 0xE0 <= b <= 0xEF:
            k = 2
            if b == 0xE0:
                lo = 0xA0
            elif b == 0xED:
                hi = 0x9F
        elif 0xF0 <= b <= 0xF4:
            k = 3
            if b == 0xF0:
                lo = 0x90
            elif b == 0xF4:
                hi = 0x8F
        else:
            raise CBORError("bad UTF-8")
        if i + k >= n:
            raise CBORError("bad UTF-8")
        c = raw[i + 1]
        if c < lo or c > hi:
            raise CBORError("bad UTF-8")
        for j in range(i + 2, i + 1 + k):
            if not 0x80 <= raw[j] <= 0xBF:
                raise CBORError("bad UTF-8")
        i += 1 + k
    return str(raw, "utf-8")


def _decoder(data, max_depth, max_items, max_len, views):
    try:
        n = len(data)
    except TypeError:
        raise CBORError("not bytes")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CBORError("not bytes")
    if n > max_len:
        raise CBORError("too long")
    d = _Decoder(data, max_depth, max_items)
    d.views = views
    return d


def decode(data, max_depth=6, max_items=256, max_len=4096, views=False):
    """Decode exactly one CBOR item that spans all of `data` (bytes, bytearray or memoryview).
    Raises CBORError for anything malformed, unsupported or over the limits. `views`: byte
    strings come back as memoryviews of `data` (no copy: a received 1 KB chunk stays in the
    frame buffer it arrived in), which stay valid as long as `data` is not reused."""
    d = _decoder(data, max_depth, max_items, max_len, views)
    value = d.item(0)
    if d.pos != len(data):
        raise CBORError("trailing bytes")
    return value


def decode_prefix(data, max_depth=6, max_items=256):
    """(item, bytes it took) of the one CBOR item at the start of `data`; what follows it is left
    alone. For reading a long sequence of items a window at a time."""
    d = _decoder(data, max_depth, max_items, len(data), False)
    value = d.item(0)
    return value, d.pos


def decode_head(data, pos=0):
    """(major type, argument, position after it) of the head at `pos` of a definite-length
    string, array, map or integer (shortest form only): for walking into a large array without
    decoding it whole. CBORError otherwise."""
    if pos >= len(data):
        raise CBORError("truncated")
    head = data[pos]
    if head >> 5 == 7 or head >> 5 == 6:
        raise CBORError("not a container or integer")
    d = _Decoder(data, 0, 0)
    d.pos = pos + 1
    arg = d._arg(head & 31)
    return head >> 5, arg, d.pos


# --- encoder: ints, bytes, text, lists/tuples, dicts (caller's key order), bools, None ---

def _head(out, major, arg):
    m = major << 5
    if arg < 24:
        out.append(m | arg)
    elif arg < 0x100:
        out.append(m | 24)
        out.append(arg)
    elif arg < 0x10000:
        out.append(m | 25)
        out.extend(arg.to_bytes(2, "big"))
    elif arg < 0x100000000:
        out.append(m | 26)
        out.extend(arg.to_bytes(4, "big"))
    elif arg <= _MAX_ARG:
        out.append(m | 27)
        out.extend(arg.to_bytes(8, "big"))
    else:
        raise CBORError("integer too large")


def _enc(out, v, depth):
    if depth > 16:
        raise CBORError("too deep")
    if v is None:
        out.append(0xF6)
    elif v is True:
        out.append(0xF5)
    elif v is False:
        out.append(0xF4)
    elif isinstance(v, int):
        if v >= 0:
            _head(out, 0, v)
        else:
            _head(out, 1, -1 - v)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        _head(out, 2, len(v))
        out.extend(v)
    elif isinstance(v, str):
        b = v.encode("utf-8")
        _head(out, 3, len(b))
        out.extend(b)
    elif isinstance(v, (list, tuple)):
        _head(out, 4, len(v))
        for x in v:
            _enc(out, x, depth + 1)
    elif isinstance(v, dict):
        _head(out, 5, len(v))
        for k in v:
            _enc(out, k, depth + 1)
            _enc(out, v[k], depth + 1)
    else:
        raise CBORError("cannot encode %s" % type(v).__name__)


def encode(value):
    """CBOR bytes of `value` (shortest heads, definite lengths; dict keys in the dict's order)."""
    out = bytearray()
    _enc(out, value, 0)
    return bytes(out)
