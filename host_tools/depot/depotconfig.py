"""The depot's own settings, configured once in a TOML file (examples/depot.toml):

    [service_day]
    time_zone = "Asia/Shanghai"   # IANA name, or a fixed offset such as "+08:00"
    starts_at = 4                 # the hour (local) a service day begins: 04:00 to 04:00
    [operator]
    key = "operator.json"         # the operator's public key (operator.json or KID:PUBHEX):
                                  # files are checked against it before they are pushed

Where it is: --depot-config FILE, else $FARE_DEPOT_CONFIG, else `depot.toml` in the depot
database's folder if there is one. Without one, days are UTC calendar days (and reports say so).
A relative `key` path is taken from the configuration file's folder.
"""
import os
import tomllib
from pathlib import Path

from host_tools.common import serviceday
from host_tools.common.clierrors import UserError, read_text

DEFAULT_NAME = "depot.toml"
SECTIONS = {"service_day": {"time_zone", "starts_at"}, "operator": {"key"}}


class DepotConfig:
    def __init__(self, day=None, operator_key=None, source=None):
        self.day = day or serviceday.ServiceDay()   # serviceday.ServiceDay
        self.operator_key = operator_key            # spec for signedcheck, or None
        self.source = source                        # the file it came from, or None


def find(db_path=None, explicit=None):
    """The configuration file to use, or None."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("FARE_DEPOT_CONFIG")
    if env:
        return Path(env)
    if db_path:
        p = Path(str(db_path)).resolve().parent / DEFAULT_NAME
        if p.is_file():
            return p
    return None


def load(path):
    """DepotConfig from a TOML file; UserError (one line) for a missing or wrong one."""
    if path is None:
        return DepotConfig()
    path = Path(path)
    try:
        src = tomllib.loads(read_text(path, "depot configuration"))
    except tomllib.TOMLDecodeError as e:
        raise UserError("depot configuration %s: not TOML: %s" % (path, e)) from None
    for name, value in src.items():
        if name not in SECTIONS or not isinstance(value, dict):
            raise UserError("depot configuration %s: unknown section %r (known: [%s])"
                            % (path, name, "], [".join(SECTIONS)))
        unknown = set(value) - SECTIONS[name]
        if unknown:
            raise UserError("depot configuration %s: [%s] has unknown setting(s) %s"
                            % (path, name, ", ".join(sorted(unknown))))
    sd = src.get("service_day", {})
    start = sd.get("starts_at", 0)
    if isinstance(start, str) and start.strip().replace(":00", "", 1).isdigit():
        start = int(start.strip().replace(":00", "", 1))  # "04:00" as well as 4
    try:
        day = serviceday.ServiceDay.parse(sd.get("time_zone", "UTC"), start)
    except serviceday.ZoneError as e:
        raise UserError("depot configuration %s: [service_day] %s" % (path, e)) from None
    key = src.get("operator", {}).get("key")
    if key is not None:
        key = str(key)
        if ":" not in key and not Path(key).is_absolute():
            key = str(path.parent / key)
    return DepotConfig(day, key, str(path))


def for_args(args):
    """The DepotConfig of a command's --depot-config, --db, --time-zone and --day-starts."""
    cfg = load(find(getattr(args, "db", None), getattr(args, "depot_config", None)))
    tz, start = getattr(args, "time_zone", None), getattr(args, "day_starts", None)
    if tz is not None or start is not None:
        try:
            cfg.day = serviceday.ServiceDay(
                serviceday.parse_zone(tz) if tz is not None else cfg.day.tz,
                start if start is not None else cfg.day.day_start_hour)
        except serviceday.ZoneError as e:
            raise UserError(str(e)) from None
    return cfg


def add_options(p, service_day=True):
    p.add_argument("--depot-config", metavar="FILE",
                   help="the depot's settings (TOML, see examples/depot.toml; default "
                   "$FARE_DEPOT_CONFIG, else depot.toml next to the database)")
    if service_day:
        p.add_argument("--time-zone", metavar="ZONE",
                       help="the operator's time zone for days and local times, an IANA name "
                       "(Asia/Shanghai) or an offset (+08:00); overrides the depot "
                       "configuration (default there: UTC)")
        p.add_argument("--day-starts", type=_hour, metavar="HOUR",
                       help="the hour (0-23, local) at which a service day starts; overrides "
                       "the depot configuration (default there: 0)")


def _hour(text):
    import argparse
    try:
        h = int(text)
    except ValueError:
        h = -1
    if not 0 <= h <= 23:
        raise argparse.ArgumentTypeError("a whole hour 0..23, not %r" % text)
    return h
