# Frozen firmware for the esp32_devkitc reader: MicroPython's ESP32_GENERIC build with the reader
# application frozen in, so its bytecode runs from flash and costs no heap. Build it from a
# MicroPython v1.29.0 checkout (docs/boards.md, "A frozen build"):
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=<repo>/boards/esp32_devkitc/manifest.py
# Paths are relative to this file. `fare deploy` reads the same package()/module() lines to
# know what to copy to a board running the stock firmware.
include("$(MPY_DIR)/ports/esp32/boards/manifest.py")  # the port's own frozen modules

package("validator", base_path="../../firmware")
package("drivers", base_path="../../firmware")
module("board.py")
module("pins.py")
module("esp32_board.py", base_path="../common")
module("pn532_i2c.py", base_path="../common")

require("ssd1306")  # micropython-lib: the optional OLED display's driver
