"""A PN532 on a pty: the host-controller frame protocol of the PN532 user manual (UM0701-02) over
HSU, carrying a virtual card or phone, so the real firmware driver can be tested without the chip.

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

from host_tools.sim.ptydevice import PtyDevice

TFI_HOST = 0xD4
TFI_PN532 = 0xD5
ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"

FAULTS = ("drop", "nack", "garbage", "bad_checksum", "bad_lcs", "silent", "split", "error_frame",
          "extended", "remove_card", "delay")

DEFAULT_UID = bytes.fromhex("08a1b2c3")        # phones in card emulation: random UID, 0x08 first
DEFAULT_SENS_RES = b"\x00\x04"
DEFAULT_SEL_RES = 0x20                         # ISO/IEC 14443-4 compliant
DEFAULT_ATS = bytes.fromhex("0578807002")      # TL=5, T0, TA, TB, TC


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
        if len(buf) < hdr + n + 1:
            return
        body = bytes(buf[hdr:hdr + n])
        ok = (sum(body) + buf[hdr + n]) % 256 == 0
        del buf[:hdr + n + 1]
        yield ("frame", body) if ok and n else ("bad", None)


class _Fault:
    def __init__(self, name, cmd, times, arg):
        if name not in FAULTS:
            raise ValueError("unknown fault %r (known: %s)" % (name, ", ".join(FAULTS)))
        self.name, self.cmd, self.times, self.arg = name, cmd, times, arg


class PN532Emulator(PtyDevice):
    THREAD_NAME = "pn532-emu"

    def __init__(self, card=None, *, asleep=True, firmware=(0x32, 0x01, 0x06, 0x07),
                 max_chunk=262, link=None, log=None):
        self.card = card
        self.asleep = asleep              # HSU: frames are ignored until the 0x55 wake-up
        self.firmware = firmware
        self.max_chunk = max_chunk        # bigger answers are chained with the MI status bit
        PtyDevice.__init__(self, link, log)
        self._lock = threading.Lock()
        self._faults = []
        self._last_response = None
        self._selected = False
        self._away_polls = 0
        self._pending_chain = b""
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

    # --- control (any thread) ---

    def inject(self, name, cmd=None, times=1, arg=None):
        with self._lock:
            self._faults.append(_Fault(name, cmd, times, arg))

    def pending_faults(self):
        with self._lock:
            return [(f.name, f.cmd, f.times) for f in self._faults]

    def present(self, card):
        with self._lock:
            self.card = card
            self._away_polls = 0

    def remove(self):
        with self._lock:
            self.card = None
            self._selected = False

    def away(self, polls=1):
        """The card leaves the field now and comes back after `polls` InListPassiveTarget."""
        with self._lock:
            self._away_polls = polls
            self._selected = False

    # --- life cycle ---


    # --- the chip ---

    def _send(self, data, split=False):
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
        self._trace("<- " + bytes(data).hex())
        if self.asleep:
            k = bytes(data).find(b"\x55")
            if k < 0:
                return             # power-down: everything before the wake-up is lost
            self.asleep = False
            self.wakeups += 1
            data = data[k:]
        buf = self._inbuf
        buf.extend(data)
        if len(buf) > 4096:
            del buf[:-1024]        # a bounded input buffer, like the chip's
        for kind, body in parse_frames(buf):
            self._on(kind, body)

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
            self.acks_received += 1        # abort: nothing runs in this emulator between frames
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
        if data is None:
            resp = ERROR_FRAME
            good = resp
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

    def _execute(self, cmd, p, fault):
        """Response data after the response code, or None for a syntax error."""
        if cmd == 0x02:                                   # GetFirmwareVersion
            return bytes(self.firmware)
        if cmd == 0x14:                                   # SAMConfiguration
            return b"" if p and p[0] in (1, 2, 3, 4) else None
        if cmd == 0x32:                                   # RFConfiguration
            return b"" if p else None
        if cmd == 0x4A:                                   # InListPassiveTarget
            if len(p) < 2 or p[0] not in (1, 2) or p[1] != 0x00:
                return None
            return self._list_target()
        if cmd == 0x40:                                   # InDataExchange
            return self._data_exchange(p, fault)
        if cmd == 0x52:                                   # InRelease
            self._selected = False
            return b"\x00"
        return None

    def _list_target(self):
        with self._lock:
            card = self.card
            if self._away_polls > 0:
                self._away_polls -= 1
                card = None
        self._selected = False
        self._pending_chain = b""
        if card is None:
            return b"\x00"
        uid = bytes(getattr(card, "uid", DEFAULT_UID))
        sens = bytes(getattr(card, "sens_res", DEFAULT_SENS_RES))
        sel = int(getattr(card, "sel_res", DEFAULT_SEL_RES))
        ats = bytes(getattr(card, "ats", DEFAULT_ATS)) if sel & 0x20 else b""
        self._selected = True
        return bytes([1, 1]) + sens + bytes([sel, len(uid)]) + uid + ats

    def _data_exchange(self, p, fault):
        if not p:
            return None
        tg, data = p[0] & 0x3F, p[1:]
        if fault is not None and fault.name == "remove_card":
            with self._lock:
                self._away_polls = 1 if fault.arg is None else int(fault.arg)
            self._selected = False
            return b"\x01"                                # the target has not answered
        with self._lock:
            card = self.card if self._away_polls == 0 else None
        if tg != 1 or not self._selected:
            return b"\x27"                                # not acceptable in this context
        if card is None:
            self._selected = False
            return b"\x01"
        if not data and self._pending_chain:              # MI: the host fetches the next part
            out = self._pending_chain
        else:
            self.apdus.append(bytes(data))
            try:
                out = bytes(card.apdu(bytes(data)))
            except Exception as e:                        # a crashing card does not answer
                self._trace("card raised %r" % e)
                self._selected = False
                return b"\x01"
        if len(out) > self.max_chunk:
            self._pending_chain = out[self.max_chunk:]
            return b"\x40" + out[:self.max_chunk]
        self._pending_chain = b""
        return b"\x00" + out


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
