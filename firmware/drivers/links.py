# The reader's peripherals on a board's byte links. Every board builds them the same way from its
# `uart(role)`; boards inherit this and differ only in how they make the links.


class DriversOnLinks:
    def qr_scanner(self):
        """The QR scanner on the "qr" link, or None when the board has none. When the board
        can change the link's speed (link_speed("qr")), the module is first moved to 115200
        baud (QrScanner.use_fast_baud); the outcome is on the scanner (`baud`, `baud_state`)
        and reported as {"ev": "qr", "baud", "state"}. That step never fails the start."""
        u = self.uart("qr")
        if u is None:
            return None
        from drivers import qrscanner
        q = qrscanner.QrScanner(u)
        speed = self.link_speed("qr")
        if speed is not None:
            state = q.use_fast_baud(speed[0], speed[1])
            report = getattr(self, "report", None)
            if report is not None:
                report({"ev": "qr", "baud": q.baud, "state": state})
        return q

    def link_speed(self, role):
        """(set_baud, baud): a function that sets the host side of link `role` to a new speed
        in place (on the esp32 port `lambda b: uart.init(baudrate=b)`), and the speed the link
        was opened at; None when the speed cannot be changed (ptys). Boards override it."""
        return None

    def nfc_reader(self):
        """The PN532 on the "nfc" link, or None when the board has no such link. The driver is
        returned even when the chip does not start (dead, unplugged, miswired): then its
        `ready` is False and `error` holds why; call its begin() again later (it raises
        NfcError while the chip stays away, and sets `ready` when it starts)."""
        u = self.uart("nfc")
        if u is None:
            return None
        from drivers import pn532
        nfc = pn532.PN532(u)
        try:
            nfc.begin()
        except Exception:  # noqa: BLE001 -- kept in nfc.error; a reboot would not bring it back
            pass
        return nfc
