# The esp32_devkitc reader (ESP32-WROOM-32 DevKitC): pins in pins.py, wiring in docs/boards.md.
# Everything is in the common ESP32 layer (boards/common/esp32_board.py); this file names the
# board and its pin map.
import esp32_board
import pins


class Board(esp32_board.Esp32Board):
    name = "esp32_devkitc"
    pins = pins
