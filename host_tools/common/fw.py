"""Gives the host tools the firmware's pure-logic modules (one implementation of the trip record,
framing and envelope formats on both sides): `from host_tools.common.fw import validator`."""
import sys
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
if str(FIRMWARE) not in sys.path:
    sys.path.insert(0, str(FIRMWARE))

import validator  # noqa: E402,F401
