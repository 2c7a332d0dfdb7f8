# What every ESP32 reader freezes: the port's own modules, the reader application, the ESP32
# board layer and the micropython-lib packages it uses. boards/esp32_*/manifest.py include this
# and add their own board.py and pins.py. Paths are relative to this file.
include("$(MPY_DIR)/ports/esp32/boards/manifest.py")

# The application, but for the field engines an ESP32 never imports (p256_xtensa is its engine):
# p256_native, the unix port's viper engine (56 KB of native code), and p256_host, the CPython
# twin. tests/boards/test_board_definitions.py checks that this list names every other module.
package("validator", base_path="../../firmware", files=[
    "__init__.py", "app.py", "atomicfile.py", "base45.py", "base45_native.py", "cbor.py",
    "clock.py", "config.py", "credential.py", "denylist.py", "denylist_format.py",
    "denylist_update.py", "framing.py", "heapwatch.py", "hmac256.py", "iobuf.py", "keyring.py",
    "p256.py", "p256_digits.py", "p256_field.py", "p256_fixed.py", "p256_gtable.py",
    "p256_progs.py", "p256_xtensa.py", "policy.py", "reasons.py", "riderstate.py",
    "ridertable.py", "signedfile.py", "sync.py", "syncproto.py", "tokens.py", "triplog.py",
    "watchdog.py"])
package("drivers", base_path="../../firmware")
module("esp32_board.py")
module("pn532_i2c.py")
module("ds3231.py")

require("ssd1306")  # micropython-lib: the optional OLED display's driver
