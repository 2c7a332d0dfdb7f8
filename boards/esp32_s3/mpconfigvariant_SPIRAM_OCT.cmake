# The esp32_s3 reader on an N8R8 module: its 8 MB of octal PSRAM as MicroPython's heap (the
# reader does not need it; the development image uses the same setting).
list(APPEND SDKCONFIG_DEFAULTS
    boards/sdkconfig.240mhz
    boards/sdkconfig.spiram_oct
)

list(APPEND MICROPY_DEF_BOARD
    MICROPY_HW_BOARD_NAME="Fare validator esp32_s3 with octal PSRAM"
)
