// Board definition of the esp32_devkitc reader (ESP32-DevKitC, ESP32-WROOM-32): the generic
// ESP32 firmware's settings, named for the reader. The pin map the application uses is pins.py.
#define MICROPY_HW_BOARD_NAME               "Fare validator esp32_devkitc"
#define MICROPY_HW_MCU_NAME                 "ESP32"

// machine.I2C(0) without pins: the reader's bus (pins.py I2C: SCL 22, SDA 21)
#define MICROPY_HW_I2C0_SCL                 (22)
#define MICROPY_HW_I2C0_SDA                 (21)
