# Frozen firmware for the esp32_devkitc reader: MicroPython's ESP32_GENERIC build with the reader
# application frozen in, so its bytecode runs from flash and costs no heap. Build it from a
# MicroPython v1.29.0 checkout (docs/boards.md, "A frozen build"):
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=<repo>/boards/esp32_devkitc/manifest.py
# Paths are relative to this file. `fare deploy` reads the same package()/module() lines to
# know what to copy to a board running the stock firmware.
include("../common/esp32_manifest.py")  # the application and the ESP32 board layer
module("board.py")
module("pins.py")
