# Frozen modules of the esp32_s3 reader: MicroPython's ESP32_GENERIC_S3 set with the reader
# application frozen in, so its bytecode runs from flash and costs no heap. The board definition
# in this folder builds it (mpconfigboard.cmake names this file; docs/boards.md, "A frozen
# build"):
#   make -C ports/esp32 BOARD_DIR=<repo>/boards/esp32_s3
# Paths are relative to this file. `fare deploy` reads the same package()/module() lines to
# know what to copy to a board running the stock firmware.
include("../common/esp32_manifest.py")  # the port's modules, the application, the board layer
module("board.py")
module("pins.py")
