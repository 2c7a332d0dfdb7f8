# Pin map of the esp32_s3 reader: ESP32-S3-DevKitC-1 (N8 or N8R8), PN532 and DS3231 RTC on I2C,
# GM65-class QR scanner on UART1, depot sync cable on UART2, passive buzzer, the on-board RGB
# pixel, optional SSD1306. The ESP32_GENERIC_S3 firmware keeps its REPL on UART0 (GPIO43/44,
# the "UART" USB connector) as well as on the native "USB" connector, so as on esp32_devkitc
# two UARTs are free and the PN532 goes on I2C. Avoided: GPIO26-32 (flash), 33-37 (octal
# PSRAM on R8 parts), 19/20 (USB), 43/44 (UART0), strapping pins 3/45/46.

# UART links: (UART id, TX GPIO, RX GPIO, baud, receive buffer bytes)
QR_UART = (1, 17, 18, 9600, 1024)      # GM65 factory default 9600 8N1
SYNC_UART = (2, 4, 5, 115200, 2048)    # the depot's USB-serial cable (3.3 V TTL)
NFC_UART = None                        # None: the PN532 is on I2C (below)

# I2C bus: (bus id, SCL GPIO, SDA GPIO, frequency); the PN532, the DS3231 RTC and the display
# share it
I2C = (0, 9, 8, 400000)                # the firmware's default I2C0 pins on ESP32_GENERIC_S3
NFC_I2C_ADDR = 0x24
NFC_IRQ = 10                           # PN532 IRQ (low = response ready); None to poll the bus
DISPLAY_ADDR = 0x3C                    # SSD1306 128x64, optional
RTC_I2C_ADDR = 0x68                    # DS3231 with its coin cell: the time across a power cut

BUZZER = 7                             # passive piezo through an NPN transistor
LED_PIXEL = 48                         # on-board WS2812 (GPIO38 on DevKitC-1 v1.1 boards)
SERVICE_BUTTON = 0                     # the BOOT button (pressed = low)

WDT_TIMEOUT_MS = 8000                  # the reader loop feeds it every pass; min 1 s on esp32
