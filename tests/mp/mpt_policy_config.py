# The reader configuration parser on MicroPython: defaults, a full body, every refusal.
from validator import cbor, config


def body(**kw):
    d = {"format": 1}
    d.update(kw)
    return cbor.encode(d)


def refused(data):
    try:
        config.parse(data)
    except config.ConfigError as e:
        assert e.reason == "MALFORMED"
        return True
    return False


def test_defaults():
    c = config.Config()
    assert (c.max_code_age, c.clock_skew, c.repeat_window, c.passback_window) == (60, 30, 5, 600)
    assert (c.sync_window, c.deny_max_age, c.transfer_window) == (72 * 3600, 96 * 3600, 0)
    assert (c.degraded, c.degraded_max_rides, c.degraded_max_amount) == ("limit", 1, 0)
    assert c.fares == {} and c.fare(1) is None and c.version == 0
    assert config.parse(body(), 7).as_dict() == c.as_dict()


def test_full_body_round_trip():
    c = config.Config(9)
    c.line, c.stop, c.max_code_age, c.passback_window = 12, 3, 45, 0
    c.degraded, c.degraded_max_rides, c.degraded_max_amount = "reject", 2, 500
    c.fares = {12: {1: 200, 2: 100, 4: 0}, 5: {1: 150}}
    p = config.parse(config.encode(c.as_dict()), 9)
    assert p.as_dict() == c.as_dict() and p.version == 9
    assert p.fare(1) == 200 and p.fare(4) == 0 and p.fare(3) is None
    p.line = 5
    assert p.fare(1) == 150 and p.fare(2) is None


def test_refusals():
    assert refused(b"")
    assert refused(b"\xa0")                              # no format
    assert refused(cbor.encode({"format": 2}))
    assert refused(cbor.encode([1]))
    assert refused(body() + b"\0")                       # trailing bytes
    assert refused(body()[:-1] + b"\x02")
    assert refused(body(colour="red"))                   # unknown key
    assert refused(body(max_code_age=-1))
    assert refused(body(max_code_age=True))
    assert refused(body(max_code_age=config.MAX_WINDOW + 1))
    assert not refused(body(max_code_age=config.MAX_WINDOW))
    assert refused(body(repeat_window=3601))
    assert refused(body(degraded_max_rides=0))
    assert refused(body(degraded="maybe"))
    assert refused(body(line=1 << 32))
    assert refused(body(fares=[1, 2]))
    assert refused(body(fares={1: {1: config.MAX_FARE + 1}}))
    assert not refused(body(fares={1: {1: config.MAX_FARE}}))
    assert refused(body(fares={1: {1: -5}}))
    assert refused(body(fares={"1": {1: 5}}))
    assert refused(body(fares={1: {"adult": 5}}))
    assert refused(body(fares={1: 200}))
    assert refused(body(fares={i: {1: 1} for i in range(config.MAX_LINES + 1)}))
    assert not refused(body(fares={i: {1: 1} for i in range(config.MAX_LINES)}))
    assert refused(body(fares={1: {p: 1 for p in range(config.MAX_PRODUCTS + 1)}}))
    assert refused(b"\x81" * 5000)                       # deep nesting
    assert refused(b"\x00" * (config.MAX_BODY + 1))


def test_every_truncation_and_flipped_byte_is_refused_or_parses():
    c = config.Config()
    c.fares = {12: {1: 200, 2: 100}}
    data = config.encode(c.as_dict())
    for i in range(len(data)):
        assert refused(data[:i])
        bad = bytearray(data)
        bad[i] ^= 0x41
        try:
            config.parse(bytes(bad))
        except config.ConfigError:
            pass
