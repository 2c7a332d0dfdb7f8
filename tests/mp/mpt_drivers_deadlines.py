# The PN532 driver's bounds on MicroPython, with fake links and a fake millisecond clock (no
# wall-clock waits): a link that takes no bytes (an I2C chip that does not acknowledge its
# address), a chip that keeps sending frames, ACKs or noise that are not the answer, and the
# board's nfc_reader() keeping a driver whose chip did not start so that begin() can retry.
from drivers import pn532
from drivers.pn532 import NfcError
from drivers_fakes import TARGET, Clock, EndlessUart, ScriptUart, resp

BEGIN_REPLIES = [pn532.ACK + resp(0x14), pn532.ACK + resp(0x02, b"\x32\x01\x06\x07"),
                 pn532.ACK + resp(0x12), pn532.ACK + resp(0x32)]


class DeadLink:
    """A link that never takes a byte: Pn532I2CLink.write returns 0 when the chip does not
    acknowledge its address."""

    def __init__(self):
        self.writes = 0

    def write(self, data):
        self.writes += 1
        return 0

    def any(self):
        return 0

    def readinto(self, buf):
        return None


def test_a_link_that_takes_no_bytes_fails_begin_in_bounded_time():
    c = Clock()
    link = DeadLink()
    r = pn532.PN532(link, clock_ms=c, idle=c.idle, write_timeout_ms=80)
    try:
        r.begin()
        raise AssertionError("no error")
    except NfcError as e:
        assert e.kind == pn532.IO
    assert 80 <= c.t < 90 and link.writes > 1         # retried, then gave up on the fake clock
    assert not r.ready and r.error.kind == pn532.IO


def test_stale_frames_for_ever_end_at_the_command_deadline():
    c = Clock()
    # the answer of another command, again and again: ignored each time, never the answer
    u = EndlessUart(c, resp(0x4A, TARGET))
    r = pn532.PN532(u, clock_ms=c, idle=c.idle, command_deadline_ms=700)
    try:
        r.firmware_version()
        raise AssertionError("no error")
    except NfcError as e:
        assert e.kind == pn532.DEADLINE
    assert 700 <= c.t < 710 and r.ignored > 600
    assert u.writes[-1] == pn532.ACK and r.aborts == 1   # whatever it was doing: aborted
    assert not r.ready


def test_endless_acks_nacks_or_noise_after_the_ack_end_at_the_deadline():
    for stream in (pn532.ACK, pn532.NACK, b"\x13\x37" * 40, b"\x00\x00\xff\x05\xfb\xd5"):
        c = Clock()
        u = EndlessUart(c, stream, first=pn532.ACK)
        r = pn532.PN532(u, clock_ms=c, idle=c.idle, response_timeout_ms=400,
                        command_deadline_ms=600)
        try:
            r.command(0x40, b"\x01\x00")
            raise AssertionError("no error")
        except NfcError as e:
            assert e.kind in (pn532.DEADLINE, pn532.TIMEOUT, pn532.CHECKSUM), e.kind
        assert c.t < 610, (stream, c.t)


def test_endless_noise_instead_of_an_ack_is_no_ack():
    # bytes that never make a frame keep arriving: each ACK wait still ends on the clock
    c = Clock()
    u = EndlessUart(c, b"\x13\x37" * 40)
    r = pn532.PN532(u, clock_ms=c, idle=c.idle)
    try:
        r.firmware_version()
        raise AssertionError("no error")
    except NfcError as e:
        assert e.kind == pn532.NO_ACK
    # three ACK waits of 50 ms, and the drains before the resends (16 reads of 1 ms each)
    assert len(u.writes) == 3 and 150 <= c.t <= 150 + 2 * 16, (u.writes, c.t)


def test_the_deadline_is_never_below_the_commands_own_waits():
    # a phone that takes 2 s to answer, with a 3 s response timeout: not cut by the deadline
    c = Clock()
    u = ScriptUart([pn532.ACK])
    r = pn532.PN532(u, clock_ms=c, response_timeout_ms=3000)

    def late_answer():
        c.t += 1
        if c.t == 2000:
            u.rx.extend(resp(0x40, b"\x00\x90\x00"))
    r.idle = late_answer
    assert r.command(0x40, b"\x01\x00") == b"\x00\x90\x00"


def test_pn532_on_an_i2c_bus_where_no_chip_answers():
    # the real I2C link: every transfer NACKed (OSError 19, ENODEV, as on the esp32 port)
    import sys
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    sys.path.append(here + "/../../boards/common")
    from pn532_i2c import Pn532I2CLink

    class NoChip:
        def writeto(self, addr, buf):
            raise OSError(19)

        def readfrom_into(self, addr, buf):
            raise OSError(19)
    c = Clock()
    link = Pn532I2CLink(NoChip(), retry_ms=0)
    r = pn532.PN532(link, clock_ms=c, idle=c.idle)
    try:
        r.begin()
        raise AssertionError("no error")
    except NfcError as e:
        assert e.kind == pn532.IO
    assert 100 <= c.t < 110 and link.errors > 2 and not r.ready


# --- the board's drivers: a PN532 that does not start is kept, and can be started later ---

def _drivers_board(links):
    from drivers.links import DriversOnLinks

    class B(DriversOnLinks):
        def uart(self, role):
            return links.get(role)
    return B()


class UnpluggedUart(ScriptUart):
    def __init__(self, replies):
        ScriptUart.__init__(self, replies)
        self.plugged = False

    def write(self, data):
        if not self.plugged:
            raise OSError(5)    # EIO
        return ScriptUart.write(self, data)


def test_nfc_reader_returns_a_driver_that_did_not_start_and_begin_retries():
    u = UnpluggedUart(BEGIN_REPLIES)
    b = _drivers_board({"nfc": u})
    nfc = b.nfc_reader()
    assert nfc is not None and not nfc.ready
    assert isinstance(nfc.error, NfcError) and nfc.error.kind == pn532.IO
    u.plugged = True                                     # the technician fixes the cable
    assert nfc.begin() == (0x32, 1, 6, 7)
    assert nfc.ready and nfc.error is None
    assert _drivers_board({}).nfc_reader() is None       # no NFC link at all


