// Board definition of the esp32_s3 reader (ESP32-S3-DevKitC-1): the generic ESP32-S3
// firmware's settings, named for the reader. The pin map the application uses is pins.py.
#ifndef MICROPY_HW_BOARD_NAME
// (the SPIRAM_OCT variant names itself in mpconfigvariant_SPIRAM_OCT.cmake)
#define MICROPY_HW_BOARD_NAME               "Fare validator esp32_s3"
#endif
#define MICROPY_HW_MCU_NAME                 "ESP32-S3"

// The REPL on UART0 (the board's "UART" connector) as well as on native USB, as in the generic
// ESP32-S3 firmware: esptool and the console work on either connector.
#define MICROPY_HW_ENABLE_UART_REPL         (1)

// machine.I2C(0) without pins: the reader's bus (pins.py I2C: SCL 9, SDA 8)
#define MICROPY_HW_I2C0_SCL                 (9)
#define MICROPY_HW_I2C0_SDA                 (8)
