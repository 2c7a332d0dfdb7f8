"""The PN532 emulator checked by a driver written by others: nfcpy (PyPI `nfcpy`, a mature driver
for real PN532 boards over serial) opens the emulator on a pty and runs its normal start-up
(wake-up with 0x00 bytes, GetFirmwareVersion, SAMConfiguration, SetSerialBaudRate, Diagnose
line test, SetParameters with automatic RATS off, RFConfiguration), polls for a Type 4A target,
activates ISO-DEP itself (RATS, then I-blocks through InCommunicateThru, reading and writing
the CIU's registers on the way), exchanges APDUs with the wallet's phone, checks presence, and
closes (baud rate back, PowerDown); and opens the chip it put to sleep again.

One workaround, in the test only: nfcpy finds a serial port by a path `tty:NAME:pn532`, where
NAME must match `[a-zA-Z0-9-]+` and is looked up in /dev, so a pty (/dev/pts/N) cannot be named.
The `bench` fixture makes nfcpy's port search (nfc.clf.transport.TTY.find) answer the pty for one
made-up name; the rest (the device search, the pn532 driver's init, ContactlessFrontend) is
nfcpy's own code."""
import pytest

nfc = pytest.importorskip("nfc")   # pinned in requirements.txt: missing only in a broken venv
import nfc.clf  # noqa: E402
import nfc.clf.transport  # noqa: E402
import nfc.tag.tt4  # noqa: E402

import tokenkit as tk  # noqa: E402
from host_tools.sim import pn532_emu  # noqa: E402
from host_tools.sim.pn532_emu import DemoCard, PN532Emulator  # noqa: E402
from validator import reasons, tokens  # noqa: E402

PATH = "tty:fvemulator:pn532"


class Bench:
    """An emulator on a pty and nfcpy opening it; closed in that order's reverse."""

    def __init__(self):
        self.emu = None
        self.clfs = []

    def start(self, card):
        self.emu = PN532Emulator(card)
        self.emu.start()
        return self.emu

    def open(self):
        clf = nfc.ContactlessFrontend(PATH)
        self.clfs.append(clf)
        return clf

    def close(self):
        for clf in self.clfs:
            clf.close()                # nfcpy's close talks to the chip: before it stops
        if self.emu is not None:
            self.emu.stop()


@pytest.fixture
def bench(monkeypatch):
    b = Bench()
    real = nfc.clf.transport.TTY.find.__func__

    def find(cls, path):
        if path == PATH:
            return [b.emu.path], "pn532", False
        return real(cls, path)
    monkeypatch.setattr(nfc.clf.transport.TTY, "find", classmethod(find))
    yield b
    b.close()


@pytest.fixture
def phone(tmp_path):
    world = tk.World(tmp_path)
    w = world.wallet(account=4711)
    return world, w.card(clock=lambda: world.now)


# nfcpy's start-up: GetFirmwareVersion and SAMConfiguration (its init), [SetSerialBaudRate to the
# fastest speed stty accepts on the port: left out below], Diagnose line test,
# GetFirmwareVersion, SetParameters(0), RFConfiguration (7 items, then the field off)
STARTUP = [0x02, 0x14, 0x00, 0x02, 0x12] + [0x32] * 8


def test_nfcpy_start_up_poll_and_apdus_with_the_wallet_phone(bench, phone):
    world, card = phone
    emu = bench.start(card)
    clf = bench.open()
    assert "PN532v1.6" in str(clf.device)
    # nfcpy's start-up, every command answered (none with the syntax-error frame)
    assert [c for c in emu.commands if c != 0x10] == STARTUP
    assert emu.syntax_errors == 0 and emu.wakeups == 1 and not emu.asleep
    assert emu.flags == 0                          # nfcpy runs ISO-DEP itself
    # a poll for a Type 4A target: the phone's UID alone (no ATS appended), then RATS
    tag = clf.connect(rdwr={"targets": ["106A"], "on-connect": lambda tag: False})
    assert isinstance(tag, nfc.tag.tt4.Type4ATag)
    assert bytes(tag.identifier) == pn532_emu.DEFAULT_UID
    assert tag._dep.miu == 253                     # FSC 256 from the phone's ATS
    # APDUs: our application (SELECT, READ), through nfcpy's ISO-DEP and the chip
    info = tag.send_apdu(0x00, 0xA4, 0x04, 0x00, tokens.AID, mrl=256)
    assert card.log[-1] == (tokens.apdu_select(), bytes(info) + b"\x90\x00")
    part = tag.send_apdu(tokens.CLA_PROP, tokens.INS_READ, 0, 0, mrl=tokens.READ_CHUNK)
    assert bytes(part) == card.blob[:tokens.READ_CHUNK]
    # the whole tap as the firmware reads it, with nfcpy carrying the APDUs
    reason, tok = tokens.read_nfc(lambda apdu: bytes(tag.transceive(apdu)),
                                  world.keyring(), 77, world.now, b"N" * 16)
    assert (reason, tok.account) == (reasons.OK, 4711)
    assert emu.apdus == [cmd for cmd, _ in card.log]
    assert 0x42 in emu.commands and 0x40 not in emu.commands  # raw frames, not the chip's
    assert tag.is_present                          # R(NAK) answered with R(ACK)
    emu.away(1)
    assert not tag.is_present                      # the phone left: no answer
    clf.close()
    # close: baud rate back to 115200, then PowerDown with HSU, SPI and I2C as wake-ups
    assert emu.commands[-2:] == [0x10, 0x16]
    assert emu.baudrate == 115200 and emu.asleep and emu.wake_sources == 0xB0
    assert emu.syntax_errors == 0


def test_nfcpy_finds_nothing_without_a_card_then_the_card(bench):
    emu = bench.start(None)
    clf = bench.open()
    targets = [nfc.clf.RemoteTarget(b) for b in ("106A", "106B", "212F")]
    assert clf.sense(*targets, iterations=1) is None
    polls = [c for c in emu.commands if c == 0x4A]
    assert len(polls) == 3                         # type A, type B, FeliCa: nobody
    assert 0x06 in emu.commands                    # it read the FIFO: the REQA was unanswered
    emu.present(DemoCard())
    target = clf.sense(*targets, iterations=1)
    assert target.brty == "106A" and bytes(target.sdd_res) == DemoCard.uid
    assert emu.syntax_errors == 0


def test_nfcpy_opens_a_chip_it_put_to_sleep(bench):
    emu = bench.start(DemoCard())
    bench.open().close()
    assert emu.asleep and emu.wakeups == 1
    clf = bench.open()                             # the 0x00 preamble wakes it again
    assert emu.wakeups == 2 and not emu.asleep
    tag = clf.connect(rdwr={"targets": ["106A"], "on-connect": lambda tag: False})
    apdu = bytes.fromhex("80b0000010")
    assert bytes(tag.transceive(apdu)) == bytes(reversed(apdu)) + b"\x90\x00"
    assert emu.syntax_errors == 0
