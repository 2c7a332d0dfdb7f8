"""The operator's service day: which day a trip belongs to, in the operator's time zone.

A bus service runs from early morning to past midnight, so a calendar day at UTC (or even a local
calendar day) cuts one day's service in two. The depot's reports and exports, and the back
office, file each trip under its **service day**: the local date on which the service day began,
a service day running from `day_start_hour` o'clock local time to the same hour the next day.

    tz = parse_zone("Asia/Shanghai")             # or "+08:00", "UTC"
    service_day(1795471200, tz, 4)               # date(2026, 11, 24): 06:00 local that day
    day_bounds(date(2026, 11, 24), tz, 4)        # (first second, end) of that service day, Unix
    iso_time(1795471200, tz)                     # "2026-11-24T06:00:00+08:00"

`ServiceDay(tz, day_start_hour)` bundles both settings, with `describe()` for a report's header.
Times everywhere else are Unix seconds (UTC); only these functions turn them into local dates.
"""
import datetime
import re
import zoneinfo

UTC = datetime.timezone.utc
_OFFSET = re.compile(r"^(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ZoneError(ValueError):
    pass


def parse_zone(text):
    """A tzinfo from an IANA zone name ("Asia/Shanghai"), "UTC", or a fixed offset ("+08:00",
    "-0530", "UTC+8"). Raises ZoneError with a one-line message."""
    s = str(text).strip()
    if s.upper() in ("UTC", "Z", "GMT"):
        return UTC
    m = _OFFSET.match(s.upper())
    if m:
        sign, hours, minutes = m.group(1), int(m.group(2)), int(m.group(3) or 0)
        if hours > 14 or minutes > 59:
            raise ZoneError("time zone offset %r is out of range (-14:00 .. +14:00)" % s)
        delta = datetime.timedelta(hours=hours, minutes=minutes)
        return datetime.timezone(-delta if sign == "-" else delta)
    try:
        return zoneinfo.ZoneInfo(s)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ZoneError("unknown time zone %r: give an IANA name like Asia/Shanghai (this system "
                        "needs its time zone database) or an offset like +08:00" % s) from None


def zone_name(tz):
    """How a tzinfo was given: its IANA key, "UTC" or "+08:00"."""
    key = getattr(tz, "key", None)
    if key:
        return key
    off = tz.utcoffset(None)
    if not off:
        return "UTC"
    minutes = int(off.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return "%s%02d:%02d" % (sign, abs(minutes) // 60, abs(minutes) % 60)


def _check_hour(day_start_hour):
    if type(day_start_hour) is not int or not 0 <= day_start_hour <= 23:
        raise ZoneError("the service day's start hour must be a whole hour 0..23, not %r"
                        % (day_start_hour,))


def service_day(unix_time, tz, day_start_hour=0):
    """The service day (a datetime.date) that the instant `unix_time` falls in: its local date
    in `tz`, minus one day before `day_start_hour` o'clock."""
    _check_hour(day_start_hour)
    local = datetime.datetime.fromtimestamp(unix_time, tz)
    day = local.date()
    if local.hour < day_start_hour:
        day -= datetime.timedelta(days=1)
    return day


def day_bounds(day, tz, day_start_hour=0):
    """(start, end) in Unix seconds of service day `day` (a date): start <= t < end exactly for
    the instants t whose service_day is `day`. (23 or 25 hours long across a DST change.)"""
    _check_hour(day_start_hour)

    def at(d):
        return int(datetime.datetime.combine(d, datetime.time(day_start_hour), tz).timestamp())
    return at(day), at(day + datetime.timedelta(days=1))


def iso_time(unix_time, tz):
    """ISO 8601 local time with its UTC offset, to the second: 2026-11-24T06:00:00+08:00."""
    return datetime.datetime.fromtimestamp(unix_time, tz).isoformat(timespec="seconds")


def parse_day(text):
    """A date from YYYY-MM-DD, checked (2026-13-45 and 23/11/2026 are refused with ValueError)."""
    s = str(text).strip()
    if not _DAY.match(s):
        raise ValueError("day %r is not written YYYY-MM-DD (for example 2026-11-23)" % s)
    try:
        return datetime.date.fromisoformat(s)
    except ValueError:
        raise ValueError("day %r is not a date in the calendar" % s) from None


class ServiceDay:
    """The operator's definition of a day: a time zone and the hour a service day starts."""

    def __init__(self, tz=UTC, day_start_hour=0):
        _check_hour(day_start_hour)
        self.tz = tz
        self.day_start_hour = day_start_hour

    @classmethod
    def parse(cls, zone="UTC", day_start_hour=0):
        return cls(parse_zone(zone), day_start_hour)

    def day(self, unix_time):
        return service_day(unix_time, self.tz, self.day_start_hour)

    def bounds(self, day):
        return day_bounds(day, self.tz, self.day_start_hour)

    def iso(self, unix_time):
        return iso_time(unix_time, self.tz)

    @property
    def zone(self):
        return zone_name(self.tz)

    def describe(self):
        """For a report's header: "service days from 04:00 to 04:00, Asia/Shanghai"."""
        h = "%02d:00" % self.day_start_hour
        if self.day_start_hour == 0:
            return "calendar days (00:00-24:00), time zone %s" % self.zone
        return "service days from %s to %s the next day, time zone %s" % (h, h, self.zone)
