# What every ESP32 reader freezes: the port's own modules, the reader application, the ESP32
# board layer and the micropython-lib packages it uses. boards/esp32_*/manifest.py include this
# and add their own board.py and pins.py. Paths are relative to this file.
include("$(MPY_DIR)/ports/esp32/boards/manifest.py")

package("validator", base_path="../../firmware")
package("drivers", base_path="../../firmware")
module("esp32_board.py")
module("pn532_i2c.py")
module("ds3231.py")

require("ssd1306")  # micropython-lib: the optional OLED display's driver
