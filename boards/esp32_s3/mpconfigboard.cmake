# Board definition of the esp32_s3 reader (ESP32-S3-DevKitC-1, N8 or N8R8: 8 MiB of flash) for
# MicroPython's esp32 port, built out of tree from a v1.29 checkout:
#   make -C ports/esp32 BOARD_DIR=<repo>/boards/esp32_s3              (docs/boards.md)
#   make -C ports/esp32 BOARD_DIR=<repo>/boards/esp32_s3 BOARD_VARIANT=SPIRAM_OCT   (N8R8)
# It is MicroPython's generic ESP32-S3 firmware with the reader's partition table
# (partitions.csv) and the reader application frozen in (manifest.py). Paths that do not start
# with ${MICROPY_BOARD_DIR} are relative to ports/esp32.
include(boards/mpconfigboard_esp32s3_common.cmake)     # IDF_TARGET esp32s3; base, ble, quad PSRAM

list(APPEND SDKCONFIG_DEFAULTS
    boards/sdkconfig.flash_qio_80m
    ${MICROPY_BOARD_DIR}/sdkconfig.board
)

# ESP-IDF resolves CONFIG_PARTITION_TABLE_CUSTOM_FILENAME against the project folder
# (ports/esp32), and sdkconfig files are copied without variable expansion, so no fixed line
# can name this folder's partitions.csv: write that line, with the absolute path, into the
# build folder and add it last.
set(FV_PARTITION_SDKCONFIG ${CMAKE_BINARY_DIR}/sdkconfig.partitions)
file(WRITE ${FV_PARTITION_SDKCONFIG}
    "CONFIG_PARTITION_TABLE_CUSTOM=y\nCONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\"${MICROPY_BOARD_DIR}/partitions.csv\"\n")
list(APPEND SDKCONFIG_DEFAULTS ${FV_PARTITION_SDKCONFIG})

set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)
