"""A PN532 on a pty: the host-controller frame protocol of the PN532 user manual (UM0701-02) over
HSU, the chip's start-up and state commands, and an initiator carrying a virtual card or phone
in its field (host_tools/sim/iso14443.py plays the card's side of the air interface), so that
the firmware's driver, and drivers written by others (nfcpy), can be tested without the chip.

    emu = PN532Emulator(card)          # card: any object with apdu(cmd: bytes) -> bytes
    emu.start()                        # emu.path is the slave side: give it to the firmware
    emu.inject("bad_checksum", cmd=0x40)
    ...
    emu.stop()

The card may also carry `uid` (bytes), `sens_res` (2 bytes), `sel_res` (int) and `ats` (bytes,
first byte its length); phone-like defaults are used otherwise. `emu.present(card)` and
`emu.remove()` put a card into or out of the field at any time; `emu.away(n)` takes it out for
the next n polls (a phone moved away, then tapped again).

`emu.loopback()` gives a UART object wired straight to the emulator, without pty or thread, for
driver tests in one process.

What is modelled (UM0701-02 section numbers in the code):
- power: the chip starts asleep (power-up, LowVbat) and after PowerDown; on HSU it wakes on the
  5th rising edge of its RX line (one 0x55, or five 0x00 bytes: each byte's stop bit after a 0
  bit is one edge), if PowerDown left HSU among its wake-up sources; bytes up to that edge are
  lost. Time is not modelled (the wake-up delay, the baud rate: a pty carries any speed).
- Diagnose (line, ROM and RAM tests), GetFirmwareVersion, GetGeneralStatus, ReadRegister,
  WriteRegister (a register file; the CIU's TX/RX mode, RF field and FIFO registers act on the
  air interface), SetSerialBaudRate (applied after the host's ACK: `emu.baudrate`),
  SetParameters (`emu.flags`; automatic RATS, NAD and no pre/postamble act, the CID and
  target-mode flags are only kept), SAMConfiguration,
  PowerDown, RFConfiguration (field, timings, retries, analog settings: lengths checked;
  MxRtyPassiveActivation 0xFF, the power-up value, makes a poll search until a card comes or
  the host aborts).
- initiator: InListPassiveTarget (106 kbps type A finds the card; RATS sent by the chip only
  with automatic RATS on, and the ATS appended; 212/424 kbps FeliCa, 106 kbps type B and Jewel
  find nothing), InDataExchange (the chip's ISO-DEP with the card after an automatic RATS,
  host chaining both ways with the MI bit), InCommunicateThru (raw frames under the CIU's
  settings: the host runs ISO-DEP itself, as nfcpy does), InDeselect, InSelect, InRelease.
- not modelled (answered with the syntax-error frame, as an unknown command): target mode
  (TgInitAsTarget and the other Tg commands), InJumpForDEP/PSL, InATR, InPSL, InAutoPoll,
  ReadGPIO/WriteGPIO, RFRegulationTest, the other Diagnose tests.

Faults (`inject(name, cmd=None, times=1, arg=None)`), each applied to the next command frame
(with that command code, when `cmd` is given):
    drop          no ACK, no response (the driver must resend)
    nack          a NACK instead of the ACK; the command is not executed
    garbage       random bytes before the ACK and before the response
    bad_checksum  the response's data checksum is wrong (correct when resent after a NACK)
    bad_lcs       the response's length checksum is wrong (correct when resent)
    silent        ACK, then no response: the PN532 hangs until the host aborts with an ACK
    split         the response trickles out one byte at a time
    error_frame   ACK, then the syntax-error frame
    extended      the response in an extended frame (FF FF LENM LENL LCS)
    remove_card   the phone leaves the field as this command runs: InDataExchange answers
                  status 0x01 (timeout); it stays away for `arg` polls (default 1), then returns
    delay         wait `arg` seconds (default 0.2) before the response

This module has its own frame encoder and parser (not the firmware's), so a mistake in one is
not silently shared by the other.
"""
import os
import random
import select
import threading
import time

from host_tools.sim.iso14443 import DEFAULT_ATS, HLTA, Picc, crc_a, fsc_of  # noqa: F401 (ATS)
from host_tools.sim.ptydevice import PtyDevice

TFI_HOST = 0xD4
TFI_PN532 = 0xD5
ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
MAX_BODY = 265            # TFI + 264 bytes: the most the chip's buffer takes (6.2.1.3)

FAULTS = ("drop", "nack", "garbage", "bad_checksum", "bad_lcs", "silent", "split", "error_frame",
          "extended", "remove_card", "delay")

DEFAULT_UID = bytes.fromhex("08a1b2c3")        # phones in card emulation: random UID, 0x08 first
DEFAULT_SENS_RES = b"\x00\x04"
DEFAULT_SEL_RES = 0x20                         # ISO/IEC 14443-4 compliant

# SetParameters flags (7.2.9)
F_NAD_USED = 0x01
F_DID_USED = 0x02
F_AUTO_ATR_RES = 0x04
F_AUTO_RATS = 0x10
F_ISO14443_4_PICC = 0x20
F_NO_PREPOSTAMBLE = 0x40
POWER_UP_FLAGS = F_AUTO_ATR_RES | F_AUTO_RATS

BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1288000)  # 7.2.8
WAKE_HSU = 0x10                  # PowerDown WakeUpEnable bit of the HSU (7.2.11)
HSU_WAKE_EDGES = 5               # the 5th rising edge on the RX line wakes the chip
RF_ITEM_LENGTHS = {0x01: 1, 0x02: 3, 0x04: 1, 0x05: 3, 0x0A: 11, 0x0B: 8, 0x0C: 3, 0x0D: 9}

# CIU registers (the chip's contactless unit, a PN512 core) that act on the air interface
CIU_MODE = 0x6301
CIU_TX_MODE = 0x6302             # bit 7 TxCRCEn, bits 6-4 speed (0: 106 kbps), 1-0 framing
CIU_RX_MODE = 0x6303             # bit 7 RxCRCEn, the same speed and framing bits
CIU_TX_CONTROL = 0x6304          # bits 1-0: the antenna drivers, i.e. the RF field
CIU_TX_AUTO = 0x6305
CIU_FIFO_DATA = 0x6339
CIU_FIFO_LEVEL = 0x633A          # bit 7 written: flush the FIFO
CIU_RESET = {CIU_MODE: 0x3F, CIU_TX_CONTROL: 0x80}   # the CIU's reset values (others 0)
FIELD_BITS = 0x03
CRC_ON = 0x80
REQA = 0x26

# InListPassiveTarget BrTy: the CIU's TX/RX mode for it (CRC on, speed, framing)
POLL_MODES = {0: 0x80, 1: 0x92, 2: 0xA2, 3: 0x83, 4: 0x80}
RATS_PARAM = 0x50                # the chip's own RATS: FSDI 5 (64 bytes), CID 0

ST_OK = 0x00
ST_TIMEOUT = 0x01                # the target has not answered
ST_NOT_ACCEPTABLE = 0x27         # not acceptable in the current context (no such target)


def frame(body, extended=False):
    """The PN532 frame for `body` (TFI + data)."""
    n = len(body)
    dcs = (0x100 - sum(body) % 256) % 256
    if n > 255 or extended:
        lenm, lenl = n >> 8, n & 0xFF
        head = bytes([0, 0, 0xFF, 0xFF, 0xFF, lenm, lenl, (0x100 - (lenm + lenl) % 256) % 256])
    else:
        head = bytes([0, 0, 0xFF, n, (0x100 - n) % 256])
    return head + bytes(body) + bytes([dcs, 0])


def parse_frames(buf):
    """Parse host frames at the front of `buf` (a bytearray, consumed). Yields ("ack"|"nack",
    None), ("frame", body) or ("bad", None); stops when more bytes are needed."""
    while True:
        i = buf.find(b"\x00\xff")
        if i < 0:
            del buf[:max(0, len(buf) - 1)]
            return
        del buf[:i]
        if len(buf) < 4:
            return
        a, b = buf[2], buf[3]
        if (a, b) == (0x00, 0xFF):
            del buf[:4]
            yield "ack", None
            continue
        if (a, b) == (0xFF, 0x00):
            del buf[:4]
            yield "nack", None
            continue
        if (a, b) == (0xFF, 0xFF):
            if len(buf) < 7:
                return
            if (buf[4] + buf[5] + buf[6]) % 256:
                del buf[:1]
                yield "bad", None
                continue
            n, hdr = buf[4] << 8 | buf[5], 7
        else:
            if (a + b) % 256:
                del buf[:1]
                yield "bad", None
                continue
            n, hdr = a, 4
        if n > MAX_BODY:                  # more than the chip's buffer: not a frame it takes
            del buf[:1]
            yield "bad", None
            continue
        if len(buf) < hdr + n + 1:
            return
        body = bytes(buf[hdr:hdr + n])
        ok = (sum(body) + buf[hdr + n]) % 256 == 0
        del buf[:hdr + n + 1]
        yield ("frame", body) if ok and n else ("bad", None)


def rising_edges(byte):
    """Rising edges one byte makes on an idle-high UART line: start bit 0, data LSB first,
    stop bit 1."""
    bits = [0] + [(byte >> i) & 1 for i in range(8)] + [1]
    return sum(1 for a, b in zip(bits, bits[1:]) if a == 0 and b == 1)


class _Fault:
    def __init__(self, name, cmd, times, arg):
        if name not in FAULTS:
            raise ValueError("unknown fault %r (known: %s)" % (name, ", ".join(FAULTS)))
        self.name, self.cmd, self.times, self.arg = name, cmd, times, arg


class _Target:
    """A target the chip has listed (Tg 1): its ISO-DEP state when the chip did the RATS."""

    def __init__(self, brty, iso, fsc):
        self.tg = 1
        self.brty = brty
        self.iso = iso              # the chip activated ISO-DEP (automatic RATS): it runs it
        self.fsc = fsc
        self.selected = True
        self.bn = 0                 # the chip's (PCD's) block number


PENDING = object()      # a command still running (a poll searching): no response yet


class PN532Emulator(PtyDevice):
    THREAD_NAME = "pn532-emu"

    def __init__(self, card=None, *, asleep=True, firmware=(0x32, 0x01, 0x06, 0x07),
                 max_chunk=262, link=None, log=None):
        self.firmware = firmware
        self.max_chunk = max_chunk        # bigger answers are chained with the MI status bit
        PtyDevice.__init__(self, link, log)
        self._lock = threading.RLock()    # chip state: the pty thread and the control calls
        self._faults = []
        self._last_response = None
        self._away_polls = 0
        self._pending_chain = b""         # response bytes the host still has to fetch (MI)
        self._host_chain = b""            # command bytes the host sent with MI set
        self._rng = random.Random(0x532)
        self._inbuf = bytearray()
        self._rx = None                   # loopback mode: bytes for the host
        # what happened, for tests
        self.commands = []        # command codes received (resends included)
        self.apdus = []           # APDUs passed to the card
        self.acks_received = 0    # host ACKs (aborts)
        self.nacks_received = 0
        self.bad_frames = 0
        self.wakeups = 0
        self.syntax_errors = 0    # commands answered with the syntax-error frame (not injected)
        # the chip's state
        self.asleep = asleep              # power-up (LowVbat) or PowerDown: see receive()
        self.wake_sources = 0xFF          # PowerDown's WakeUpEnable; all after power-up
        self._edges = 0
        self.flags = POWER_UP_FLAGS       # SetParameters
        self.baudrate = 115200
        self._pending_baud = None         # SetSerialBaudRate: applied at the host's ACK
        self.sam_mode = None              # SAMConfiguration's mode (None: not configured)
        self.max_retries = (0xFF, 0x01, 0xFF)   # MxRtyATR, MxRtyPSL, MxRtyPassiveActivation
        self.last_error = 0               # GetGeneralStatus Err
        self.registers = dict(CIU_RESET)
        self.fifo = bytearray()
        self.target = None                # the _Target the chip has listed
        self._searching = None            # a poll waiting for a card: its BrTy
        self._searching_fault = None
        self._then = None                 # PowerDown: sleep with the answer going out
        self.card = None
        self._picc = None
        self._set_card(card)

    # --- control (any thread) ---

    def inject(self, name, cmd=None, times=1, arg=None):
        with self._lock:
            self._faults.append(_Fault(name, cmd, times, arg))

    def pending_faults(self):
        with self._lock:
            return [(f.name, f.cmd, f.times) for f in self._faults]

    def present(self, card):
        with self._lock:
            self._set_card(card)
            self._away_polls = 0
            if self._searching is not None:           # a poll was waiting: it finds the card
                self._finish_search()

    def remove(self):
        with self._lock:
            self._set_card(None)

    def away(self, polls=1):
        """The card leaves the field now and comes back after `polls` InListPassiveTarget."""
        with self._lock:
            self._away_polls = polls
            if self._picc is not None:
                self._picc.power(False)

    def register(self, addr):
        """A register's value as ReadRegister would give it (without the FIFO's side effect)."""
        with self._lock:
            if addr == CIU_FIFO_LEVEL:
                return len(self.fifo)
            return self.registers.get(addr, 0)

    def _set_card(self, card):
        # the chip does not see a card come or go: a target it listed stays listed
        self.card = card
        self._picc = Picc(card, log=self.apdus) if card is not None else None
        self._power_card()

    # --- the air ---

    @property
    def field_on(self):
        return bool(self.registers.get(CIU_TX_CONTROL, 0) & FIELD_BITS)

    def _set_field(self, on):
        r = self.registers.get(CIU_TX_CONTROL, 0)
        self.registers[CIU_TX_CONTROL] = (r | FIELD_BITS) if on else (r & ~FIELD_BITS & 0xFF)
        self._power_card()

    def _power_card(self):
        p = self._picc
        if p is not None:
            p.power(self.field_on and self._away_polls == 0)

    def _in_field(self):
        return self._picc is not None and self._away_polls == 0 and self.field_on

    def _air(self, data):
        """One frame from the chip to the card; the card's answer or None."""
        if not self._in_field():
            return None
        return self._picc.frame(data)

    # --- life cycle ---

    def _send(self, data, split=False):
        if self.flags & F_NO_PREPOSTAMBLE and data[:3] == b"\x00\x00\xff":
            data = data[1:-1]                       # a frame without preamble and postamble
        self._trace("-> " + data.hex())
        if self._rx is not None:                    # loopback: straight to the host's UART
            self._rx.extend(data)
            return
        if split:
            for i in range(len(data)):
                os.write(self._master, data[i:i + 1])
                time.sleep(0.001)
        else:
            os.write(self._master, data)

    def _run(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self._master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                time.sleep(0.01)   # nobody has the slave open right now
                continue
            try:
                self.receive(data)
            except OSError:
                pass

    def receive(self, data):
        """Bytes from the host: parse them and answer (the thread calls this for the pty)."""
        with self._lock:
            self._trace("<- " + bytes(data).hex())
            data = bytes(data)
            if self.asleep:
                data = self._wake(data)
                if not data:
                    return
            buf = self._inbuf
            buf.extend(data)
            if len(buf) > 4096:
                del buf[:-1024]        # a bounded input buffer, like the chip's
            for kind, body in parse_frames(buf):
                self._on(kind, body)

    def _wake(self, data):
        """Asleep: count rising edges on the RX line; the bytes after the one that makes the 5th
        are the first the awake chip reads. Without HSU among the wake-up sources, nothing."""
        if not self.wake_sources & WAKE_HSU:
            return b""
        for i, byte in enumerate(data):
            self._edges += rising_edges(byte)
            if self._edges >= HSU_WAKE_EDGES:
                self.asleep = False
                self._edges = 0
                self.wakeups += 1
                self._inbuf.clear()
                return data[i + 1:]
        return b""

    def loopback(self):
        """A UART object (any/read/readinto/write) wired straight to this emulator, without a
        pty or a thread: for driver tests in the same process."""
        self._rx = bytearray()
        return LoopbackUart(self)

    def _take_fault(self, cmd):
        with self._lock:
            for f in self._faults:
                if f.cmd is None or f.cmd == cmd:
                    f.times -= 1
                    if f.times <= 0:
                        self._faults.remove(f)
                    return f
        return None

    def _on(self, kind, body):
        if kind == "ack":
            self.acks_received += 1
            self._searching = None             # abort: the running command stops
            if self._pending_baud is not None:
                self.baudrate, self._pending_baud = self._pending_baud, None
            return
        if kind == "nack":
            self.nacks_received += 1
            if self._last_response is not None:
                self._send(self._last_response)
            return
        if kind == "bad":
            self.bad_frames += 1           # the chip does not acknowledge a garbled frame
            return
        if len(body) < 2 or body[0] != TFI_HOST:
            self.bad_frames += 1
            return
        cmd, params = body[1], body[2:]
        self.commands.append(cmd)
        self._searching = None             # a new command ends a search
        fault = self._take_fault(cmd)
        name = fault.name if fault else None
        if name == "drop":
            return
        if name == "nack":
            self._send(NACK)
            return
        if name == "garbage":
            self._send(self._garbage())
        self._send(ACK)
        if name == "silent":
            return
        if name == "error_frame":
            self._last_response = ERROR_FRAME
            self._send(ERROR_FRAME)
            return
        if name == "delay" and self._rx is None:
            time.sleep(0.2 if fault.arg is None else float(fault.arg))
        data = self._execute(cmd, bytes(params), fault)
        if data is PENDING:
            self._searching_fault = fault
            return
        then, self._then = self._then, None
        if then is not None:
            then()      # before the answer goes out: a host that has it sees the chip's state
        self._respond(cmd, data, fault)

    def _respond(self, cmd, data, fault):
        name = fault.name if fault else None
        if data is None:
            self.syntax_errors += 1
            resp = good = ERROR_FRAME
        else:
            good = frame(bytes([TFI_PN532, cmd + 1]) + data, extended=(name == "extended"))
            resp = good
            if name == "bad_checksum":
                resp = good[:-2] + bytes([(good[-2] + 1) % 256, 0])
            elif name == "bad_lcs":
                k = 7 if good[3:5] == b"\xff\xff" else 4
                resp = good[:k] + bytes([(good[k] + 1) % 256]) + good[k + 1:]
        self._last_response = good      # a NACK gets the correct frame
        if name == "garbage":
            self._send(self._garbage())
        self._send(resp, split=(name == "split"))

    def _garbage(self):
        # random bytes that never contain a start code (a real line glitch could; the driver
        # copes with that too, but it would make these tests depend on luck)
        return bytes(self._rng.choice([0x00, 0x55, 0x7E, 0xA5, 0xFE, 0x13, 0xD5])
                     for _ in range(self._rng.randint(3, 12)))

    # --- the commands ---

    def _execute(self, cmd, p, fault):
        """Response data after the response code, None for a syntax error, or PENDING."""
        handler = COMMANDS.get(cmd)
        if handler is None:
            return None                                   # not modelled: syntax error
        return handler(self, p, fault)

    def _diagnose(self, p, fault):                        # 7.2.1
        if not p:
            return None
        if p[0] == 0x00:                                  # communication line test: echo
            return p
        if p[0] in (0x01, 0x02) and len(p) == 1:          # ROM, RAM self-tests: pass
            return b"\x00"
        return None

    def _get_firmware_version(self, p, fault):           # 7.2.2
        return bytes(self.firmware)

    def _get_general_status(self, p, fault):             # 7.2.3
        t = self.target
        tgs = b""
        if t is not None:
            tgs = bytes((t.tg, 0x00, 0x00, 0x00))         # Tg, BrRx, BrTx 106 kbps, type A
        return bytes((self.last_error, 0x00, 1 if t else 0)) + tgs + b"\x00"

    def _read_register(self, p, fault):                  # 7.2.4
        if not p or len(p) % 2:
            return None
        out = bytearray()
        for i in range(0, len(p), 2):
            addr = p[i] << 8 | p[i + 1]
            if addr == CIU_FIFO_DATA:
                out.append(self.fifo.pop(0) if self.fifo else 0)
            elif addr == CIU_FIFO_LEVEL:
                out.append(len(self.fifo))
            else:
                out.append(self.registers.get(addr, 0))
        return bytes(out)

    def _write_register(self, p, fault):                 # 7.2.5
        if not p or len(p) % 3:
            return None
        for i in range(0, len(p), 3):
            addr, value = p[i] << 8 | p[i + 1], p[i + 2]
            if addr == CIU_FIFO_DATA:
                if len(self.fifo) < 64:
                    self.fifo.append(value)
            elif addr == CIU_FIFO_LEVEL:
                if value & 0x80:
                    self.fifo.clear()
            else:
                self.registers[addr] = value
                if addr == CIU_TX_CONTROL:
                    self._power_card()
        return b""

    def _set_serial_baud_rate(self, p, fault):           # 7.2.8
        if len(p) != 1 or p[0] >= len(BAUD_RATES):
            return None
        self._pending_baud = BAUD_RATES[p[0]]             # after the host's ACK to the answer
        return b""

    def _set_parameters(self, p, fault):                 # 7.2.9
        if len(p) != 1:
            return None
        self.flags = p[0] & 0x77                          # bits 3 and 7 are RFU
        return b""

    def _sam_configuration(self, p, fault):              # 7.2.10
        if not p or p[0] not in (1, 2, 3, 4) or (p[0] == 2 and len(p) < 2):
            return None
        self.sam_mode = p[0]
        return b""

    def _power_down(self, p, fault):                     # 7.2.11
        if not p:
            return None
        self._then = self._sleep
        self.wake_sources = p[0]
        return b"\x00"

    def _sleep(self):
        self.asleep = True
        self._edges = 0
        self.target = None
        self._set_field(False)

    def _rf_configuration(self, p, fault):               # 7.3.1
        if not p or RF_ITEM_LENGTHS.get(p[0]) != len(p) - 1:
            return None
        item, data = p[0], p[1:]
        if item == 0x01:
            self._set_field(bool(data[0] & 0x01))
        elif item == 0x05:
            self.max_retries = tuple(data)
        return b""

    def _in_list_passive_target(self, p, fault):         # 7.3.5
        if len(p) < 2 or p[0] not in (1, 2) or p[1] not in POLL_MODES:
            return None
        brty, init = p[1], p[2:]
        need = {0: (0, 4, 8, 12), 1: (5,), 2: (5,), 3: None, 4: (0,)}[brty]
        if (need is None and not init) or (need is not None and len(init) not in need):
            return None
        self.target = None
        self._pending_chain = self._host_chain = b""
        self.registers[CIU_TX_MODE] = self.registers[CIU_RX_MODE] = POLL_MODES[brty]
        self._set_field(True)
        self.fifo[:] = b""
        with self._lock:
            away = self._away_polls > 0
            if away:
                self._away_polls -= 1
        found = None if away else self._poll(brty, init)
        if found is not None:
            return found
        if self.max_retries[2] == 0xFF:                   # search until a card comes
            self._searching = brty
            return PENDING
        self.fifo[:] = bytes((REQA,))                     # the REQA went out, nothing answered
        return b"\x00"

    def _poll(self, brty, init):
        """The InListPassiveTarget answer for the card in the field, or None."""
        card = self.card
        if brty != 0 or card is None or not self._picc.select():
            return None
        uid = bytes(getattr(card, "uid", DEFAULT_UID))
        if init and _strip_cascade(init) != uid:
            return None
        sens = bytes(getattr(card, "sens_res", DEFAULT_SENS_RES))
        sel = int(getattr(card, "sel_res", DEFAULT_SEL_RES))
        ats = b""
        if sel & 0x20 and self.flags & F_AUTO_RATS:
            ats = self._air(bytes((0xE0, RATS_PARAM))) or b""
        self.target = _Target(brty, bool(ats), fsc_of(ats) if ats else 0)
        return bytes([1, 1]) + sens + bytes([sel, len(uid)]) + uid + ats

    def _finish_search(self):
        brty, fault = self._searching, self._searching_fault
        self._searching = None
        found = self._poll(brty, b"")
        if found is not None:
            self._respond(0x4A, found, fault)

    def _in_data_exchange(self, p, fault):               # 7.3.8
        if not p:
            return None
        tg, data = p[0] & 0x3F, p[1:]
        if fault is not None and fault.name == "remove_card":
            with self._lock:
                self._away_polls = 1 if fault.arg is None else int(fault.arg)
            self._power_card()
            return self._status(ST_TIMEOUT)
        t = self.target
        if t is None or tg != t.tg or not t.selected:
            return self._status(ST_NOT_ACCEPTABLE)
        if not data and self._pending_chain:              # MI: the host fetches the next part
            out = self._pending_chain
        else:
            if p[0] & 0x40:                               # MI from the host: more to come
                self._host_chain += data
                return self._status(ST_OK)
            data, self._host_chain = self._host_chain + data, b""
            out = self._exchange(t, data)
            if out is None:
                return self._status(ST_TIMEOUT)
        self.last_error = ST_OK
        if len(out) > self.max_chunk:
            self._pending_chain = out[self.max_chunk:]
            return b"\x40" + out[:self.max_chunk]
        self._pending_chain = b""
        return b"\x00" + out

    def _exchange(self, t, data):
        """InDataExchange's air side: ISO-DEP run by the chip for a target it activated (the
        first byte is a NAD with fNADUsed), else the data as one raw frame."""
        if not t.iso:
            return self._air(data)
        nad = None
        if self.flags & F_NAD_USED:
            if not data:
                return None
            nad, data = data[0], data[1:]
        room = t.fsc - 3 - (nad is not None)
        while True:                                       # our I-blocks, chained if long
            part, data = data[:room], data[room:]
            pcb = 0x02 | t.bn | (0x10 if data else 0) | (0x04 if nad is not None else 0)
            block = bytes((pcb,)) + (bytes((nad,)) if nad is not None else b"") + part
            resp = self._block(t, block)
            if resp is None:
                return None
            if not data:
                break
            if resp[0] & 0xF6 != 0xA2:                    # no R(ACK) to our chaining
                return None
            t.bn ^= 1
        out = b""
        while True:                                       # its I-blocks, chained if long
            if resp[0] & 0xE2 != 0x02:
                return None
            t.bn ^= 1
            out += resp[1 + bool(resp[0] & 0x04):]
            if not resp[0] & 0x10:
                return out
            resp = self._block(t, bytes((0xA2 | t.bn,)))
            if resp is None:
                return None

    def _block(self, t, block):
        """Send an ISO-DEP block; retry once with R(NAK) if the card does not answer; answer a
        waiting-time extension request."""
        resp = self._air(block)
        if resp is None:
            resp = self._air(bytes((0xB2 | t.bn,)))
        while resp is not None and resp[0] & 0xF7 == 0xF2:   # S(WTX): grant it
            resp = self._air(resp)
        return resp

    def _in_communicate_thru(self, p, fault):            # 7.3.9
        if not p:
            return None
        tx, rx = self.registers.get(CIU_TX_MODE, 0), self.registers.get(CIU_RX_MODE, 0)
        if tx & 0x73 or rx & 0x73:                        # not 106 kbps type A: no answer
            return self._status(ST_TIMEOUT)
        data = p
        if not tx & CRC_ON:                               # the host added the CRC itself
            if len(data) < 3 or crc_a(data[:-2]) != data[-2:]:
                return self._status(ST_TIMEOUT)
            data = data[:-2]
        resp = self._air(data)
        if resp is None:
            return self._status(ST_TIMEOUT)
        self.last_error = ST_OK
        return b"\x00" + resp + (b"" if rx & CRC_ON else crc_a(resp))

    def _in_deselect(self, p, fault):                    # 7.3.10
        if len(p) != 1:
            return None
        t = self._listed(p[0])
        if t is None:
            return self._status(ST_NOT_ACCEPTABLE)
        if t.selected:
            self._air(bytes((0xC2,)) if t.iso else HLTA)
            t.selected = False
        return self._status(ST_OK)

    def _in_release(self, p, fault):                     # 7.3.11
        if len(p) != 1:
            return None
        t = self._listed(p[0])
        if t is None:
            return self._status(ST_NOT_ACCEPTABLE)
        if t.selected:
            self._air(bytes((0xC2,)) if t.iso else HLTA)
        self.target = None
        self._pending_chain = self._host_chain = b""
        return self._status(ST_OK)

    def _in_select(self, p, fault):                      # 7.3.12
        if len(p) != 1:
            return None
        t = self._listed(p[0])
        if t is None:
            return self._status(ST_NOT_ACCEPTABLE)
        if not self._in_field() or not self._picc.select():
            return self._status(ST_TIMEOUT)
        if t.iso:
            ats = self._air(bytes((0xE0, RATS_PARAM)))
            if ats is None:
                return self._status(ST_TIMEOUT)
            t.fsc, t.bn = fsc_of(ats), 0
        t.selected = True
        return self._status(ST_OK)

    def _listed(self, tg):
        t = self.target
        return t if t is not None and tg in (0, t.tg) else None

    def _status(self, code):
        self.last_error = code
        if code:
            self._pending_chain = b""
        return bytes((code,))


def _strip_cascade(init):
    """The UID in InListPassiveTarget's InitiatorData: without its cascade tags (0x88)."""
    if len(init) == 8:
        return init[1:]
    if len(init) == 12:
        return init[1:4] + init[5:]
    return init


COMMANDS = {
    0x00: PN532Emulator._diagnose,
    0x02: PN532Emulator._get_firmware_version,
    0x04: PN532Emulator._get_general_status,
    0x06: PN532Emulator._read_register,
    0x08: PN532Emulator._write_register,
    0x10: PN532Emulator._set_serial_baud_rate,
    0x12: PN532Emulator._set_parameters,
    0x14: PN532Emulator._sam_configuration,
    0x16: PN532Emulator._power_down,
    0x32: PN532Emulator._rf_configuration,
    0x40: PN532Emulator._in_data_exchange,
    0x42: PN532Emulator._in_communicate_thru,
    0x44: PN532Emulator._in_deselect,
    0x4A: PN532Emulator._in_list_passive_target,
    0x52: PN532Emulator._in_release,
    0x54: PN532Emulator._in_select,
}


class LoopbackUart:
    """The host end of an emulator in loopback mode, with machine.UART's methods."""

    def __init__(self, emu):
        self.emu = emu
        self.written = bytearray()

    def write(self, data):
        self.written.extend(data)
        self.emu.receive(bytes(data))
        return len(data)

    def any(self):
        return len(self.emu._rx)

    def readinto(self, buf, nbytes=None):
        rx = self.emu._rx
        n = min(len(buf) if nbytes is None else nbytes, len(rx))
        if not n:
            return None
        buf[:n] = rx[:n]
        del rx[:n]
        return n

    def read(self, nbytes=None):
        rx = self.emu._rx
        n = len(rx) if nbytes is None else min(nbytes, len(rx))
        if not n:
            return None
        out = bytes(rx[:n])
        del rx[:n]
        return out


class DemoCard:
    """A stand-in card for the CLI and tests: answers SELECT with 90 00 and any other APDU with
    its own bytes reversed followed by 90 00."""

    uid = bytes.fromhex("08123456")

    def apdu(self, cmd):
        if len(cmd) >= 2 and cmd[1] == 0xA4:
            return b"\x90\x00"
        return bytes(reversed(cmd)) + b"\x90\x00"
