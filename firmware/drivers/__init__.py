# Drivers shared by the boards: PN532 NFC (pn532), UART QR scanner (qrscanner), rider feedback
# patterns (feedback). Hardware objects come from the board; nothing here knows pin numbers.
