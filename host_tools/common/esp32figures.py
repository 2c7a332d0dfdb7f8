"""The ESP32 time estimates `make bench` last computed (bench/esp32_estimate.py), kept in the
build directory so that `make bench-device` can print a board's measured times beside them and
`make sim` can state them: {name: [low ms, high ms]} for rider, rider_cached, issuer, tap_first,
tap_cached."""
import json
from pathlib import Path

FILE = Path(__file__).resolve().parents[2] / "build" / "esp32-estimate.json"


def load():
    """The saved estimates ({} if `make bench` has not run here)."""
    try:
        data = json.loads(FILE.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(**figures):
    """Keep (low, high) ms estimates by name, besides those already saved."""
    have = load()
    have.update({k: [round(v[0], 1), round(v[1], 1)] for k, v in figures.items()})
    FILE.parent.mkdir(parents=True, exist_ok=True)
    FILE.write_text(json.dumps(have, indent=1, sort_keys=True) + "\n")
