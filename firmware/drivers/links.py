# The reader's peripherals on a board's byte links. Every board builds them the same way from its
# `uart(role)`; boards inherit this and differ only in how they make the links.


class DriversOnLinks:
    def qr_scanner(self):
        """The QR scanner on the "qr" link, or None when the board has none."""
        u = self.uart("qr")
        if u is None:
            return None
        from drivers import qrscanner
        return qrscanner.QrScanner(u)

    def nfc_reader(self):
        """The PN532, woken and configured, on the "nfc" link, or None."""
        u = self.uart("nfc")
        if u is None:
            return None
        from drivers import pn532
        nfc = pn532.PN532(u)
        nfc.begin()
        return nfc
