# DS3231 battery-backed real-time clock on I2C: the reader's time across a power cut (the ESP32's
# own RTC restarts from zero when the bus engine stops). The chip keeps UTC here, in 24-hour mode;
# its registers are BCD. Its oscillator-stop flag (OSF, status bit 7) is set when the chip first
# gets power or its battery ran flat: then the time in it is not a time, and read_time() says so.
# Years 2000-2099 only (the century bit is left clear).

ADDRESS = 0x68
REG_TIME = 0x00           # seconds, minutes, hours, weekday, date, month (bit 7: century), year
REG_CONTROL = 0x0E
REG_STATUS = 0x0F
OSF = 0x80                # status: the oscillator stopped since the flag was last cleared
EOSC = 0x80               # control: set = the oscillator stops when on battery (never wanted)
HOUR_12 = 0x40            # hours register: 12-hour mode (bit 5 is then PM)

# why read_time() has no time (DS3231.fault)
ABSENT = "absent"             # no answer on the bus
STOPPED = "oscillator_stopped"  # OSF set: first power-up, or the battery is flat or missing
BAD_TIME = "bad_time"         # registers that are not a date (or outside 2000-2099)

_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    """(year, month, day) of a day count since 1970-01-01."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


def _bcd(v):
    return ((v // 10) << 4) | (v % 10)


def _unbcd(b):
    """The value of a BCD byte, or -1 if a digit is not 0-9 (a bus of 0xFF, a garbled chip)."""
    hi, lo = b >> 4, b & 0x0F
    if hi > 9 or lo > 9:
        return -1
    return hi * 10 + lo


def encode(t):
    """The seven time registers for Unix seconds `t` (2000-01-01 to 2099-12-31)."""
    days, s = divmod(int(t), 86400)
    y, m, d = civil_from_days(days)
    if not 2000 <= y <= 2099:
        raise ValueError("DS3231 holds years 2000-2099")
    weekday = (days + 3) % 7 + 1   # 1 = Monday (1970-01-01 was a Thursday)
    return bytes((_bcd(s % 60), _bcd(s // 60 % 60), _bcd(s // 3600), weekday, _bcd(d), _bcd(m),
                  _bcd(y - 2000)))


def decode(regs):
    """Unix seconds from the seven time registers, or None if they are not a valid date."""
    sec = _unbcd(regs[0] & 0x7F)
    mins = _unbcd(regs[1] & 0x7F)
    h = regs[2]
    if h & HOUR_12:
        hour = _unbcd(h & 0x1F)
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if h & 0x20 else 0)
    else:
        hour = _unbcd(h & 0x3F)
    d = _unbcd(regs[4] & 0x3F)
    m = _unbcd(regs[5] & 0x1F)
    y = _unbcd(regs[6])
    if regs[5] & 0x80 or min(sec, mins, hour, d, m, y) < 0:
        return None   # the century bit: 2100 or later, which we never write
    if sec > 59 or mins > 59 or hour > 23 or not 1 <= m <= 12:
        return None
    y += 2000
    leap = y % 4 == 0   # 2000-2099: every fourth year
    if not 1 <= d <= _DAYS_IN_MONTH[m - 1] + (1 if m == 2 and leap else 0):
        return None
    return days_from_civil(y, m, d) * 86400 + hour * 3600 + mins * 60 + sec


class DS3231:
    def __init__(self, i2c, address=ADDRESS):
        self.i2c = i2c
        self.address = address
        self.fault = None   # why the last read_time() gave None: ABSENT, STOPPED or BAD_TIME
        self._one = bytearray(1)
        self._time = bytearray(7)

    def present(self):
        try:
            return self.address in self.i2c.scan()
        except OSError:
            return False

    def read_time(self):
        """UTC Unix seconds, or None when the chip has no valid time (`fault` says why)."""
        try:
            self.i2c.readfrom_mem_into(self.address, REG_STATUS, self._one)
            status = self._one[0]
            # one read of all seven registers: the chip latches them at its start
            self.i2c.readfrom_mem_into(self.address, REG_TIME, self._time)
        except OSError:
            self.fault = ABSENT
            return None
        if status & OSF:
            self.fault = STOPPED
            return None
        t = decode(self._time)
        self.fault = None if t is not None else BAD_TIME
        return t

    def write_time(self, t):
        """Set the chip to UTC Unix seconds `t`, keep its oscillator running on battery, and
        clear OSF (the time is valid from now on). OSError if the chip does not answer,
        ValueError outside 2000-2099."""
        regs = encode(t)
        a = self.address
        self.i2c.writeto_mem(a, REG_TIME, regs)  # writing the seconds restarts the second
        self.i2c.readfrom_mem_into(a, REG_CONTROL, self._one)
        if self._one[0] & EOSC:
            self.i2c.writeto_mem(a, REG_CONTROL, bytes((self._one[0] & ~EOSC,)))
        self.i2c.readfrom_mem_into(a, REG_STATUS, self._one)
        # only OSF cleared: the other flags are written back as they are
        self.i2c.writeto_mem(a, REG_STATUS, bytes((self._one[0] & ~OSF,)))
        self.fault = None
