"""The PN532 emulator as a chip (host_tools/sim/pn532_emu.py, iso14443.py), driven frame by frame
in loopback from the host side, with the firmware's frame codec (an independent one): the
HSU wake-up rules, the start-up and state commands of UM0701-02 and the state they keep
(SetParameters deciding the ATS, the CIU registers deciding InCommunicateThru, the baud rate
after the host's ACK, PowerDown's wake-up sources), target handling (InDeselect, InSelect,
InRelease, a poll that searches until a card comes) and the card's ISO-DEP side."""
import pytest

from drivers.pn532 import (ACK, EV_ACK, EV_FRAME, FrameParser, encode_command)
from host_tools.sim import iso14443, pn532_emu
from host_tools.sim.pn532_emu import DemoCard, PN532Emulator

APDU = bytes.fromhex("80b0000010")
ECHO = bytes(reversed(APDU)) + b"\x90\x00"
ERROR = "syntax error"


class Host:
    """The host's side of the HSU link, in loopback."""

    def __init__(self, emu):
        self.emu = emu
        self.uart = emu.loopback()
        self.parser = FrameParser()

    def events(self, data=b""):
        if data:
            self.uart.write(data)
        got = self.uart.read()
        if got:
            self.parser.feed(got)
        out = []
        while True:
            ev = self.parser.next()
            if ev is None:
                return out
            out.append(ev)

    def cmd(self, code, params=b""):
        """The response data of a command (after the response code), ERROR for the syntax-error
        frame, None for an ACK and nothing else (a command still running)."""
        evs = self.events(encode_command(code, bytes(params)))
        assert evs and evs[0] == (EV_ACK, None), evs
        if len(evs) == 1:
            return None
        assert len(evs) == 2 and evs[1][0] == EV_FRAME, evs
        body = evs[1][1]
        if body == b"\x7f":
            return ERROR
        assert body[:2] == bytes((0xD5, code + 1)), body.hex()
        return body[2:]

    def thru(self, data):
        return self.cmd(0x42, data)

    def ready(self, card=True):
        """Awake and in normal mode, with a bounded poll."""
        self.events(b"\x55" + bytes(15))
        assert self.cmd(0x14, b"\x01") == b""
        assert self.cmd(0x32, b"\x05\xff\x01\x01") == b""
        return self


def host(card=DemoCard, **kw):
    return Host(PN532Emulator(card() if card else None, **kw)).ready()


def test_rising_edges_of_a_byte():
    assert pn532_emu.rising_edges(0x55) == 5           # the documented wake-up byte
    assert pn532_emu.rising_edges(0x00) == 1           # the stop bit after eight zeros
    assert pn532_emu.rising_edges(0xFF) == 1           # after the start bit
    assert pn532_emu.rising_edges(0xAA) == 4


def test_hsu_wake_up_on_the_fifth_rising_edge():
    emu = PN532Emulator(DemoCard())
    h = Host(emu)
    firmware = encode_command(0x02)
    assert h.events(bytes(4)) == [] and emu.asleep     # four edges: still asleep
    assert h.events(bytes(1)) == [] and not emu.asleep  # the fifth wakes it
    assert h.events(firmware)[1] == (EV_FRAME, b"\xd5\x03\x32\x01\x06\x07")
    # a command sent to a sleeping chip without a preamble is eaten by the wake-up
    emu = PN532Emulator(DemoCard())
    h = Host(emu)
    assert h.events(firmware) == [] and not emu.asleep and emu.commands == []
    assert h.events(firmware)[1][0] == EV_FRAME        # the next one is answered
    # nfcpy's wake-up: ten 0x00 before the frame, in one write
    emu = PN532Emulator(DemoCard())
    assert Host(emu).events(bytes(10) + firmware)[1][0] == EV_FRAME
    assert emu.wakeups == 1


def test_power_down_sleeps_until_an_enabled_source_wakes_it():
    h = host()
    assert h.cmd(0x16, b"\x10") == b"\x00"             # WakeUpEnable: HSU
    assert h.emu.asleep and not h.emu.field_on
    assert h.events(encode_command(0x02)) == []        # eaten by the wake-up
    assert h.cmd(0x02) == b"\x32\x01\x06\x07"
    assert h.cmd(0x16, b"\xa0\x01") == b"\x00"         # I2C and SPI only: HSU cannot wake it
    assert h.events(b"\x55" * 20 + encode_command(0x02)) == [] and h.emu.asleep
    assert h.emu.wakeups == 2


def test_set_parameters_decides_whether_the_chip_sends_rats():
    h = host()
    assert h.emu.flags == pn532_emu.POWER_UP_FLAGS     # automatic RATS after power-up
    uid = DemoCard.uid
    head = bytes((1, 1, 0x00, 0x04, 0x20, len(uid))) + uid
    assert h.cmd(0x4A, b"\x01\x00") == head + iso14443.DEFAULT_ATS
    assert h.cmd(0x40, b"\x01" + APDU) == b"\x00" + ECHO
    assert h.cmd(0x12, b"\x00") == b""                 # automatic RATS off
    assert h.cmd(0x4A, b"\x01\x00") == head            # no ATS: the phone is not in ISO-DEP
    assert h.cmd(0x40, b"\x01" + APDU) == b"\x01"      # the APDU, sent raw, is not answered
    assert h.emu.apdus == [APDU]
    assert h.cmd(0x12, b"\x10") == b""
    assert h.cmd(0x4A, b"\x01\x00") == head + iso14443.DEFAULT_ATS
    assert h.cmd(0x40, b"\x01" + APDU) == b"\x00" + ECHO
    assert h.cmd(0x12) == ERROR


def test_the_host_runs_iso_dep_with_in_communicate_thru():
    h = host()
    assert h.cmd(0x12, b"\x00") == b""
    assert h.cmd(0x4A, b"\x01\x00")[0] == 1
    assert h.thru(b"\x02" + APDU) == b"\x01"           # before RATS the phone ignores blocks
    assert h.cmd(0x4A, b"\x01\x00")[0] == 1            # (and went back to idle): poll again
    assert h.thru(b"\xe0\x80") == b"\x00" + iso14443.DEFAULT_ATS
    assert h.thru(b"\x02" + APDU) == b"\x00\x02" + ECHO          # I(0) -> I(0)
    assert h.thru(b"\xb2") == b"\x00\x02" + ECHO       # R(NAK)(0): the last block again
    assert h.thru(b"\xb3") == b"\x00\xa2"              # presence check R(NAK)(1) -> R(ACK)(0)
    assert h.thru(b"\x03" + APDU) == b"\x00\x03" + ECHO          # I(1) -> I(1)
    assert h.thru(b"\xc2") == b"\x00\xc2"              # S(DESELECT)
    assert h.thru(b"\x02" + APDU) == b"\x01"           # halted
    assert h.emu.apdus == [APDU, APDU]


def test_in_communicate_thru_follows_the_ciu_registers():
    h = host()
    h.cmd(0x12, b"\x00")
    h.cmd(0x4A, b"\x01\x00")
    assert h.cmd(0x06, b"\x63\x02\x63\x03") == b"\x80\x80"       # CRC on both ways after a poll
    assert h.cmd(0x08, b"\x63\x02\x00\x63\x03\x00") == b""       # CRC off both ways
    assert h.thru(b"\xe0\x80") == b"\x01"              # no CRC on the frame: the card drops it
    rats = b"\xe0\x80" + iso14443.crc_a(b"\xe0\x80")
    ats = iso14443.DEFAULT_ATS
    assert h.thru(rats) == b"\x00" + ats + iso14443.crc_a(ats)   # the card's CRC comes along
    assert h.cmd(0x08, b"\x63\x02\x90\x63\x03\x90") == b""       # 212 kbps: nobody answers
    assert h.thru(b"\x02" + APDU) == b"\x01"
    h.cmd(0x08, b"\x63\x02\x80\x63\x03\x80")
    assert h.thru(b"\x02" + APDU) == b"\x00\x02" + ECHO
    h.cmd(0x08, b"\x63\x04\x80")                       # antenna drivers off: the card loses power
    assert not h.emu.field_on and h.thru(b"\x03" + APDU) == b"\x01"


def test_diagnose_status_and_registers():
    h = host(card=None)
    line = b"\x00" + bytes(range(256)) + bytes(6)      # the longest frame: extended both ways
    assert h.cmd(0x00, line) == line
    assert h.cmd(0x00, b"\x01") == b"\x00" and h.cmd(0x00, b"\x02") == b"\x00"   # ROM, RAM
    assert h.cmd(0x00, b"\x06") == ERROR               # other tests: not modelled
    assert h.cmd(0x04) == b"\x00\x00\x00\x00"          # Err, Field, NbTg 0, SAM status
    assert h.cmd(0x4A, b"\x01\x00") == b"\x00"         # nobody there
    assert h.cmd(0x06, b"\x63\x39\x63\x3a") == b"\x26\x00"   # the unanswered REQA in the FIFO
    h.emu.present(DemoCard())
    assert h.cmd(0x4A, b"\x01\x00")[0] == 1
    assert h.cmd(0x04) == b"\x00\x00\x01\x01\x00\x00\x00\x00"   # Tg 1, 106 kbps type A
    h.emu.remove()
    assert h.cmd(0x40, b"\x01" + APDU) == b"\x01"
    assert h.cmd(0x04)[0] == 0x01                      # the last error
    assert h.cmd(0x08, b"\xff\xb0\x12") == b"" and h.cmd(0x06, b"\xff\xb0") == b"\x12"
    assert h.cmd(0x06, b"\x63") == ERROR and h.cmd(0x08, b"\x63\x01") == ERROR
    assert h.cmd(0x8C, bytes(37)) == ERROR             # target mode: not modelled
    assert h.emu.syntax_errors == 4


def test_serial_baud_rate_changes_after_the_hosts_ack():
    h = host()
    assert h.cmd(0x10, b"\x07") == b""
    assert h.emu.baudrate == 115200                    # the answer still at the old speed
    h.events(ACK)
    assert h.emu.baudrate == 921600
    assert h.cmd(0x10, b"\x09") == ERROR and h.emu.baudrate == 921600


def test_rf_configuration_items_and_a_poll_that_searches():
    h = host(card=None)
    assert h.cmd(0x32, b"\x05\x01\x00") == ERROR       # MaxRetries takes 3 bytes
    assert h.cmd(0x32, b"\x03\x00") == ERROR           # no item 3
    assert h.cmd(0x32, b"\x0a" + bytes(11)) == b""     # analog settings, type A
    assert h.cmd(0x32, b"\x01\x00") == b"" and not h.emu.field_on
    assert h.cmd(0x32, b"\x05\xff\x01\xff") == b""     # search for ever
    assert h.cmd(0x4A, b"\x01\x00") is None            # ACK only: still searching
    h.emu.present(DemoCard())                          # a phone comes: the answer follows
    evs = h.events()
    assert len(evs) == 1 and evs[0][1][:3] == b"\xd5\x4b\x01"
    h.emu.remove()
    assert h.cmd(0x4A, b"\x01\x00") is None
    h.events(ACK)                                      # the host aborts the search
    h.emu.present(DemoCard())
    assert h.events() == []
    assert h.cmd(0x4A, b"\x01\x03\x00") is None        # type B: nothing of that kind comes
    h.events(ACK)
    assert h.cmd(0x32, b"\x05\xff\x01\x00") == b""
    for brty in (b"\x01\x00\xff\xff\x01\x00", b"\x02\x00\xff\xff\x01\x00", b"\x03\x00", b"\x04"):
        assert h.cmd(0x4A, b"\x01" + brty) == b"\x00"  # FeliCa, type B, Jewel: none
    assert h.cmd(0x4A, b"\x01\x01") == ERROR           # FeliCa without its polling payload
    assert h.cmd(0x4A, b"\x03\x00") == ERROR           # at most two targets
    uid = DemoCard.uid
    assert h.cmd(0x4A, b"\x01\x00" + uid)[0] == 1      # this UID: found
    assert h.cmd(0x4A, b"\x01\x00" + bytes(4)) == b"\x00"   # another one: not


def test_targets_deselected_selected_and_released():
    h = host()
    assert h.cmd(0x54, b"\x01") == b"\x27"             # nothing listed yet
    h.cmd(0x4A, b"\x01\x00")
    assert h.cmd(0x44, b"\x01") == b"\x00"             # S(DESELECT): the phone halts
    assert h.cmd(0x40, b"\x01" + APDU) == b"\x27"
    assert h.cmd(0x54, b"\x01") == b"\x00"             # woken, selected, RATS again
    assert h.cmd(0x40, b"\x01" + APDU) == b"\x00" + ECHO
    assert h.cmd(0x52, b"\x00") == b"\x00"             # release all
    assert h.cmd(0x40, b"\x01" + APDU) == b"\x27" and h.cmd(0x54, b"\x01") == b"\x27"
    h.cmd(0x4A, b"\x01\x00")
    h.cmd(0x44, b"\x01")
    h.emu.away(1)
    assert h.cmd(0x54, b"\x01") == b"\x01"             # gone: InSelect finds nobody


def test_chaining_both_ways():
    class Big:
        ats = bytes.fromhex("0572807002")              # FSCI 2: the card takes 32-byte frames
        apdus = []

        def apdu(self, cmd):
            self.apdus.append(cmd)
            return bytes(range(200)) * 3 + b"\x90\x00"
    long = b"\x80\x01\x00\x00" + bytes(range(100))
    h = host(Big)
    assert h.cmd(0x4A, b"\x01\x00").endswith(Big.ats)
    # the chip's ISO-DEP: our I-blocks chained to 32 bytes, its answer chained to the chip's 64
    got = h.cmd(0x40, b"\x01" + long)
    assert got == b"\x40" + (bytes(range(200)) * 3 + b"\x90\x00")[:262]
    rest = h.cmd(0x40, b"\x01")
    while rest[0] & 0x40:
        got += rest[1:]
        rest = h.cmd(0x40, b"\x01")
    assert got[1:] + rest[1:] == bytes(range(200)) * 3 + b"\x90\x00"
    assert h.emu.apdus == [long]
    # the host chaining to the chip (MI in Tg), and the host's own ISO-DEP through the chip
    assert h.cmd(0x40, b"\x41" + long[:50]) == b"\x00"
    assert h.cmd(0x40, b"\x01" + long[50:])[0] == 0x40
    assert h.emu.apdus == [long, long]
    h.cmd(0x12, b"\x00")
    h.cmd(0x4A, b"\x01\x00")
    assert h.thru(b"\xe0\x50") == b"\x00" + Big.ats    # FSD 64
    assert h.thru(b"\x12" + long[:29]) == b"\x00\xa2"  # chained I(0) -> R(ACK)(0)
    first = h.thru(b"\x03" + long[29:])                # last I(1) -> chained I(1)
    assert first[:2] == b"\x00\x13" and len(first) == 2 + 61
    out, bn = first[2:], 1
    while True:
        bn ^= 1
        part = h.thru(bytes((0xA2 | bn,)))             # R(ACK): the next part
        assert part[0] == 0 and part[1] & 0x01 == bn
        out += part[2:]
        if not part[1] & 0x10:
            break
    assert out == bytes(range(200)) * 3 + b"\x90\x00"
    assert h.emu.apdus[-1] == long


def test_nad_and_no_pre_postamble_flags():
    h = host()
    assert h.cmd(0x12, b"\x11") == b""                 # fNADUsed + automatic RATS
    h.cmd(0x4A, b"\x01\x00")
    assert h.cmd(0x40, b"\x01\x00" + APDU) == b"\x00" + ECHO     # the first byte is the NAD
    assert h.emu.apdus == [APDU]
    h.uart.write(encode_command(0x12, b"\x50"))        # no preamble, no postamble from now on
    assert h.uart.read() == ACK + bytes.fromhex("00ff02fed51318")   # the answer is without
    h.uart.write(encode_command(0x02))
    assert h.uart.read() == bytes.fromhex("00ff00ff") + bytes.fromhex("00ff06fad50332010607e8")


def test_crc_a_and_the_cards_states():
    assert iso14443.crc_a(b"\x50\x00") == b"\x57\xcd"  # HLTA as it goes on air
    assert iso14443.crc_a(b"\xe0\x80") == b"\x31\x73"  # RATS
    log = []
    p = iso14443.Picc(DemoCard(), log=log)
    assert p.frame(b"\xe0\x80") is None and p.state == "off"
    p.power(True)
    assert not p.frame(b"\xe0\x80") and p.state == "idle"       # not selected yet
    assert p.select() and p.frame(iso14443.HLTA) is None and p.state == "halt"
    p.select()
    assert p.frame(b"\xe0\x81") == iso14443.DEFAULT_ATS and p.cid == 1
    assert p.frame(b"\x0a\x01" + APDU) == b"\x0a\x01" + ECHO     # CID 1 echoed

    class Crashing:
        def apdu(self, cmd):
            raise RuntimeError("app crashed")
    p = iso14443.Picc(Crashing())
    p.power(True)
    p.select()
    p.frame(b"\xe0\x80")
    assert p.frame(b"\x02" + APDU) is None and p.frame(b"\xb2") is None   # mute until selected


@pytest.mark.parametrize("wake", [b"\x55", bytes(5)])
def test_firmware_driver_and_nfcpy_wake_ups_both_work(wake):
    emu = PN532Emulator(DemoCard())
    h = Host(emu)
    h.events(wake)
    assert not emu.asleep and h.cmd(0x02) == b"\x32\x01\x06\x07"
