# Pin map of the esp32_devkitc reader: ESP32-WROOM-32 DevKitC, PN532 and DS3231 RTC on I2C,
# GM65-class QR scanner on UART2, depot sync cable on UART1, passive buzzer, RGB LED, optional
# SSD1306.
# The REPL keeps UART0 (the USB port: flashing, deploy, console), which leaves two UARTs for
# three serial peripherals: the PN532 is the one that also speaks I2C. To put it on a UART
# instead, give NFC_UART a (id, tx, rx, 115200, 512) tuple and free that UART.
# Wiring tables: docs/boards.md. Avoided: GPIO6-11 (module flash), 34-39 (input only),
# strapping pins 0/2/5/12/15 as outputs, and GPIO1/3 (UART0: the USB port and the REPL).

# UART links: (UART id, TX GPIO, RX GPIO, baud, receive buffer bytes)
QR_UART = (2, 17, 16, 9600, 1024)      # GM65 factory default 9600 8N1; a ride code line < 1 KB
SYNC_UART = (1, 25, 26, 115200, 2048)  # the depot's USB-serial cable (3.3 V TTL)
NFC_UART = None                        # None: the PN532 is on I2C (below)

# I2C bus: (bus id, SCL GPIO, SDA GPIO, frequency); the PN532, the DS3231 RTC and the display
# share it
I2C = (0, 22, 21, 400000)
NFC_I2C_ADDR = 0x24                    # PN532 (interface switches set to I2C)
NFC_IRQ = 4                            # PN532 IRQ (low = response ready); None to poll the bus
DISPLAY_ADDR = 0x3C                    # SSD1306 128x64, optional
RTC_I2C_ADDR = 0x68                    # DS3231 with its coin cell: the time across a power cut

BUZZER = 18                            # passive piezo through an NPN transistor
LED_RGB = (32, 33, 23)                 # red, green, blue; common cathode, 220 ohm each
SERVICE_BUTTON = 0                     # the DevKitC's BOOT button (pressed = low)

WDT_TIMEOUT_MS = 8000                  # the reader loop feeds it every pass; min 1 s on esp32
