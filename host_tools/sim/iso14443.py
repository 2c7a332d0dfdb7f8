"""The card's side of the air interface, for the PN532 emulator: a card or phone in the reader's
field as ISO/IEC 14443-3 type A (selected by the chip's anticollision) and ISO/IEC 14443-4
(ISO-DEP: RATS/ATS, I-, R- and S-blocks, chaining both ways), carrying an application that
answers APDUs (`card.apdu(cmd: bytes) -> bytes`).

    picc = Picc(card, log=apdus)       # log: a list that gets every APDU the card is given
    picc.power(True); picc.select()    # the chip's field and anticollision found it
    picc.frame(b"\\xe0\\x80")          # -> the ATS; then I-blocks carry APDUs
    picc.frame(b"\\x02" + apdu)        # -> b"\\x02" + response (data + SW1 SW2)

`frame(data)` takes one frame as the card receives it (CRC checked and removed by whoever
models the radio) and returns the card's answer, or None when it stays silent: a frame it does
not expect in its state, a card out of the field or unpowered, an application that raised (a
crashing phone answers nothing, and goes mute until it is selected again).

The block rules are those of ISO/IEC 14443-4, 7.5.4 (the PICC's rules): block number 1 after
activation, toggled on each I-block received and on an R(ACK) that continues its own chaining;
an R-block with the current block number gets the last block again, an R(NAK) with the other
number gets an R(ACK). The code is ours.
"""

DEFAULT_ATS = bytes.fromhex("0578807002")      # TL=5, T0 (FSCI 8: 256 bytes), TA, TB (FWI 7), TC
FSD = (16, 24, 32, 40, 48, 64, 96, 128, 256)   # FSDI/FSCI -> frame size in bytes

RATS = 0xE0
HLTA = b"\x50\x00"


def crc_a(data):
    """CRC_A of ISO/IEC 14443-3 (initial 0x6363, reflected polynomial 0x8408), two bytes, LSB
    first: what the reader appends to a frame and the card checks."""
    crc = 0x6363
    for b in data:
        b ^= crc & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        crc = (crc >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)
    return bytes((crc & 0xFF, crc >> 8))


def fsc_of(ats):
    """The card's maximum frame size from its ATS (FSCI in T0; 32 bytes without T0)."""
    if len(ats) < 2:
        return 32
    return FSD[min(ats[1] & 0x0F, 8)]


class Picc:
    """One card in the field. States: "off" (no field), "idle" (powered, not selected),
    "active" (selected, ISO 14443-3), "protocol" (after RATS, ISO 14443-4), "halt"."""

    def __init__(self, card, log=None):
        self.card = card
        self.log = log if log is not None else []
        self.state = "off"
        self.bn = 1
        self.fsd = 32
        self.cid = None
        self._rx = b""          # an APDU the reader is sending in chained I-blocks
        self._tx = b""          # the rest of a response the card is sending in chained blocks
        self._last = None       # the last block sent (for a reader's R-block asking again)

    @property
    def iso_dep(self):
        """Does the card speak ISO/IEC 14443-4 (SAK bit 6)?"""
        return bool(int(getattr(self.card, "sel_res", 0x20)) & 0x20)

    @property
    def ats(self):
        return bytes(getattr(self.card, "ats", DEFAULT_ATS))

    def power(self, on):
        """The field goes on (the card powers up, idle) or off (it forgets everything)."""
        if on == (self.state != "off"):
            return
        self.state = "idle" if on else "off"
        self._rx = self._tx = b""
        self._last = None

    def select(self):
        """The chip's anticollision and SELECT reached the card (from idle or halt: the chip
        polls with a wake-up). Returns False if it is unpowered."""
        if self.state == "off":
            return False
        self.state = "active"
        self._rx = self._tx = b""
        self._last = None
        return True

    def frame(self, data):
        data = bytes(data)
        if not data or self.state in ("off", "idle", "halt"):
            return None
        if self.state == "active":
            return self._layer3(data)
        return self._layer4(data)

    def _layer3(self, data):
        if data == HLTA:
            self.state = "halt"
            return None
        if data[0] == RATS and len(data) == 2 and self.iso_dep:
            self.fsd = FSD[min(data[1] >> 4, 8)]
            self.cid = data[1] & 0x0F
            self.bn = 1                                   # rule C
            self.state = "protocol"
            return self.ats
        self.state = "idle"                               # anything else: back to idle
        return None

    def _layer4(self, data):
        pcb = data[0]
        i = 1
        cid = None
        if pcb & 0x08:                                    # a CID byte follows (any block)
            if len(data) < 2:
                return None
            cid = data[1]
            i = 2
        if pcb & 0xE2 == 0x02:                            # I-block
            if pcb & 0x04:
                i += 1                                    # NAD: this application has no use
            return self._i_block(pcb, data[i:], cid)
        if pcb & 0xE6 == 0xA2:                            # R-block: ACK (A2) or NAK (B2)
            return self._r_block(pcb, cid)
        if pcb & 0xC7 == 0xC2 and pcb & 0x30 == 0x00:     # S(DESELECT)
            self.state = "halt"
            self._last = None
            return self._block(0xC2, b"", cid)
        return None                                       # S(WTX) unasked, or not a block

    def _i_block(self, pcb, inf, cid):
        self.bn ^= 1                                      # rule D
        if pcb & 0x10:                                    # the reader chains: ask for more
            self._rx += inf
            return self._send(self._block(0xA2 | self.bn, b"", cid))
        apdu = self._rx + inf
        self._rx = b""
        self.log.append(apdu)
        try:
            resp = bytes(self.card.apdu(apdu))
        except Exception:                                 # a crashing card does not answer
            self.state = "idle"
            return None
        self._tx = resp
        return self._next_part(cid)

    def _r_block(self, pcb, cid):
        if pcb & 0x01 == self.bn:                         # it missed our last block: again
            return self._last
        if pcb & 0x10:                                    # R(NAK), other number: R(ACK)
            return self._send(self._block(0xA2 | self.bn, b"", cid))
        if self._tx:                                      # R(ACK): go on with our chaining
            self.bn ^= 1
            return self._next_part(cid)
        return None

    def _next_part(self, cid):
        room = self.fsd - 3 - (cid is not None)           # PCB, CID, CRC
        part, self._tx = self._tx[:room], self._tx[room:]
        more = 0x10 if self._tx else 0x00
        return self._send(self._block(0x02 | more | self.bn, part, cid))

    @staticmethod
    def _block(pcb, inf, cid):
        if cid is None:
            return bytes((pcb,)) + inf
        return bytes((pcb | 0x08, cid)) + inf

    def _send(self, block):
        self._last = block
        return block
