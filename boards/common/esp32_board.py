# The hardware layer shared by the ESP32 boards (esp32_devkitc, esp32_s3): what the reader asks a
# board for (docs/boards.md, "Board interface"), built from machine.* and the board's pin map
# (the board's pins.py). Only modules and functions of MicroPython's esp32 port are used here;
# tests/boards/test_boards_api.py holds this file to the esp32 port's published stubs.
import json
import os
import time

import machine

import ds3231
from drivers.feedback import wrap
from drivers.links import DriversOnLinks

ROOT = "/flash"  # the reader's data: a directory on the littlefs volume the firmware mounts at /
LOG_PARTITION = "triplog"
PARK_WDT_MS = 3600000  # watchdog timeout while a technician has the REPL (see park_watchdog)
_UNIX_2000 = 946684800  # 2000-01-01 in Unix seconds

# Resets the ESP32's RTC timer runs through (ESP-IDF, "System Time"): machine.reset() and a crash
# ("hard" on the esp32 port), the watchdog, a soft reset, deep sleep. A power-on reset restarts it
# from zero, and so, for all we know, does a brownout, which the esp32 port reports as power-on;
# "unknown" is not trusted either.
RTC_KEPT_CAUSES = ("hard", "watchdog", "soft", "deepsleep")

_CAUSES = {
    machine.PWRON_RESET: "power_on",
    machine.HARD_RESET: "hard",
    machine.WDT_RESET: "watchdog",
    machine.DEEPSLEEP_RESET: "deepsleep",
    machine.SOFT_RESET: "soft",
}


def epoch_offset():
    """Seconds to add to time.time() to get Unix time: MicroPython ports count from 1970 or
    from 2000, so ask the port instead of assuming."""
    return _UNIX_2000 - time.mktime((2000, 1, 1, 0, 0, 0, 0, 0))


# -- feedback hardware (the shapes drivers/feedback.py drives) ------------------------------

class Buzzer:
    """A passive piezo driven by PWM (through a transistor): on(hz) sounds, off() stops."""

    def __init__(self, pin):
        self._pwm = machine.PWM(machine.Pin(pin), freq=2000, duty_u16=0)

    def on(self, hz):
        self._pwm.freq(hz)
        self._pwm.duty_u16(32768)

    def off(self):
        self._pwm.duty_u16(0)


class PinRgbLed:
    """A discrete RGB LED on three GPIOs; a channel is on when its level is above zero."""

    def __init__(self, red, green, blue, active_high=True):
        self._pins = [machine.Pin(p, machine.Pin.OUT) for p in (red, green, blue)]
        self._on = 1 if active_high else 0
        self.color(0, 0, 0)

    def color(self, r, g, b):
        for pin, level in zip(self._pins, (r, g, b)):
            pin.value(self._on if level > 0 else 1 - self._on)


class PixelRgbLed:
    """An addressable RGB LED (WS2812, as on the ESP32-S3-DevKitC-1), dimmed: full brightness
    of these parts is uncomfortable at arm's length."""

    def __init__(self, pin, brightness=64):
        import neopixel
        self._np = neopixel.NeoPixel(machine.Pin(pin), 1)
        self._scale = brightness
        self.color(0, 0, 0)

    def color(self, r, g, b):
        s = self._scale
        self._np[0] = (r * s // 255, g * s // 255, b * s // 255)
        self._np.write()


class Screen:
    """An SSD1306 OLED (128x64, I2C): a few lines of ASCII text, each word-wrapped to the
    screen's width. Its driver is micropython-lib's `ssd1306`, frozen into the firmware by the
    board's manifest.py (require("ssd1306"))."""

    LINE_PX = 10
    ROWS = 6

    def __init__(self, oled, width):
        self._oled = oled
        self.cols = width // 8

    def show(self, pattern, lines):
        oled = self._oled
        oled.fill(0)
        for i, row in enumerate(self.rows(lines)):
            oled.text(row, 0, i * self.LINE_PX)
        oled.show()

    def rows(self, lines):
        """The screen rows for `lines`: each line wrapped over as many rows as it needs, but
        one row is kept for every line after it (the fare under a long message)."""
        out = []
        for i, line in enumerate(lines):
            room = max(1, self.ROWS - len(out) - (len(lines) - i - 1))
            out.extend(wrap(_ascii(line), self.cols, room))
            if len(out) >= self.ROWS:
                break
        return out[:self.ROWS]


def open_screen(i2c, address, width=128, height=64):
    """The display if one answers on the bus and its driver is in the firmware, else None
    (the display is optional: the buzzer and LED carry every decision)."""
    try:
        if address not in i2c.scan():
            return None
        import ssd1306
    except (OSError, ImportError):
        return None
    return Screen(ssd1306.SSD1306_I2C(width, height, i2c, addr=address), width)


def _ascii(text):
    # the display's built-in font is 8x8 ASCII: lines in Chinese are left out, others cleaned
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in str(text))


class PatternDisplay:
    """`display.show(pattern, lines)` as the reader loop calls it on every board: plays the
    pattern of drivers/feedback.py (LED colour, beeps, hold time) on the buzzer and LED, and the
    lines (those in ASCII) on the screen. tick() runs the due steps; task() calls it."""

    ALIASES = {"idle": "ready"}

    def __init__(self, buzzer, led, screen, clock_ms=None):
        from drivers import feedback
        self._patterns = feedback.PATTERNS
        self.clock_ms = clock_ms or time.ticks_ms
        self.buzzer = buzzer
        self.led = led
        self.screen = screen
        self.pattern = None
        self.resting = "ready"  # what the LED returns to after a decision: "ready" or "service"
        self._steps = []
        self._t0 = 0

    def show(self, pattern, lines):
        pattern = self.ALIASES.get(pattern, pattern)
        spec = self._patterns.get(pattern)
        if spec is None:
            return
        colour, beeps, hold = spec
        self.pattern = pattern
        if pattern in ("ready", "service"):
            self.resting = pattern
        steps = []
        t = 0
        for hz, on_ms, off_ms in beeps:
            steps.append((t, hz))
            t += on_ms
            steps.append((t, 0))
            t += off_ms
        if hold:
            steps.append((max(t, hold), None))  # back to the resting colour
        self._steps = steps
        self._t0 = self.clock_ms()
        self._buzz(0)
        self._colour(colour)
        if self.screen is not None:
            self.screen.show(pattern, [ln for ln in lines if _is_ascii(ln)])
        self.tick()

    def tick(self):
        t = time.ticks_diff(self.clock_ms(), self._t0)
        while self._steps and self._steps[0][0] <= t:
            _, hz = self._steps.pop(0)
            if hz is None:
                self._buzz(0)
                self._colour(self._patterns[self.resting][0])
            else:
                self._buzz(hz)

    async def task(self, period_ms=10):
        import asyncio
        while True:
            self.tick()
            await asyncio.sleep_ms(period_ms)

    def _buzz(self, hz):
        if self.buzzer is not None:
            if hz:
                self.buzzer.on(hz)
            else:
                self.buzzer.off()

    def _colour(self, rgb):
        if self.led is not None:
            self.led.color(rgb[0], rgb[1], rgb[2])


def _is_ascii(text):
    for c in str(text):
        if ord(c) > 126:
            return False
    return True


# -- the board --------------------------------------------------------------------------------

class Esp32Board(DriversOnLinks):
    """Base of the ESP32 boards. A subclass sets `name` and `pins` (its pins.py module). A link
    is a UART when pins.py gives <ROLE>_UART; the PN532 may instead be on the I2C bus
    (NFC_I2C_ADDR), reached through pn532_i2c.Pn532I2CLink with the same methods. The time
    comes from a DS3231 on the same bus when one is fitted (RTC_I2C_ADDR), see time_source()."""

    name = "esp32"
    root = ROOT
    pins = None
    stopping = False          # a device never stops by itself (the simulator's bench does)
    reset_requested = False   # set by the reader when the depot asks for a reboot

    def __init__(self):
        self._links = {}
        self._wdt = None
        self._offset = epoch_offset()
        self._rtc = machine.RTC()
        self._i2c = None
        self._ds3231 = None       # None: not probed yet; False: not fitted or not answering
        self._rtc_valid = None    # None: not decided yet (_start_clock)
        self.clock_origin = None  # where the time came from at start: "ds3231", "rtc" or None
        self.ds3231_status = None  # "ok", "none" (not in pins.py) or a ds3231 fault
        self.cause = reset_cause()
        _ensure_dir(self.root)
        self.buzzer = self._make_buzzer()
        self.led = self._make_led()
        self.screen = self._make_screen()
        self.display = PatternDisplay(self.buzzer, self.led, self.screen)

    # -- links to the peripherals ---------------------------------------------------------

    def uart(self, role):
        """The byte link for `role` ("qr", "nfc", "sync"): a machine.UART, or an object with
        the same read/readinto/write/any methods; None when the board has no such link."""
        if role not in self._links:
            self._links[role] = self._open_link(role)
        return self._links[role]

    def link_speed(self, role):
        """(set_baud, opened_at) for a UART link: the QR driver moves a GM65 from its factory
        9600 baud to 115200 at start-up (drivers/links.py, QrScanner.use_fast_baud)."""
        spec = getattr(self.pins, role.upper() + "_UART", None)
        u = self.uart(role)
        if spec is None or u is None:
            return None
        return (lambda b: u.init(baudrate=b)), spec[3]

    def _open_link(self, role):
        spec = getattr(self.pins, role.upper() + "_UART", None)
        if spec is not None:
            uart_id, tx, rx, baud, rxbuf = spec
            # timeout=0: reads return at once with what is there (the reader loop polls); the
            # sync link's TX buffer holds a whole frame, so the reader prepares the next answer
            # while the last one is on the wire (docs/sync-protocol.md)
            txbuf = 1536 if role == "sync" else 256
            return machine.UART(uart_id, baudrate=baud, tx=tx, rx=rx, timeout=0, rxbuf=rxbuf,
                                txbuf=txbuf)
        if role == "nfc" and getattr(self.pins, "NFC_I2C_ADDR", None) is not None:
            from pn532_i2c import Pn532I2CLink
            irq = None
            if getattr(self.pins, "NFC_IRQ", None) is not None:
                irq = machine.Pin(self.pins.NFC_IRQ, machine.Pin.IN, machine.Pin.PULL_UP)
            return Pn532I2CLink(self.i2c(), self.pins.NFC_I2C_ADDR, irq=irq)
        return None

    def log_device(self):
        """The trip log's raw flash region: the `triplog` data partition that `fare flash`
        writes into the partition table (docs/boards.md, "Flash layout")."""
        import esp32
        found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=LOG_PARTITION)
        if not found:
            raise OSError("no '%s' partition: flash the board with `fare flash`" % LOG_PARTITION)
        return found[0]

    def i2c(self):
        """The board's I2C bus (display; the PN532 on esp32_devkitc), or None if not wired."""
        spec = getattr(self.pins, "I2C", None)
        if spec is None:
            return None
        if self._i2c is None:
            bus, scl, sda, freq = spec
            self._i2c = machine.I2C(bus, scl=machine.Pin(scl), sda=machine.Pin(sda), freq=freq)
        return self._i2c

    # -- clock, randomness, watchdog, reset -----------------------------------------------

    def rtc_chip(self):
        """The DS3231 if pins.py names RTC_I2C_ADDR and the chip answered when first asked,
        else None."""
        if self._ds3231 is None:
            addr = getattr(self.pins, "RTC_I2C_ADDR", None)
            bus = self.i2c() if addr is not None else None
            chip = ds3231.DS3231(bus, addr) if bus is not None else None
            self._ds3231 = chip if chip is not None and chip.present() else False
        return self._ds3231 or None

    def _start_clock(self):
        """Decide once per start whether the ESP32's RTC holds the time: set it from the DS3231
        when that has a valid time; else keep it only if this reset did not restart the RTC
        (RTC_KEPT_CAUSES). Without either the reader has no time until the depot sets it."""
        if self._rtc_valid is not None:
            return
        chip = self.rtc_chip()
        t = chip.read_time() if chip is not None else None
        if chip is None:
            self.ds3231_status = "none" if getattr(self.pins, "RTC_I2C_ADDR", None) is None \
                else ds3231.ABSENT
        else:
            self.ds3231_status = chip.fault or "ok"
        if t is not None:
            self._set_rtc(t)
            self.clock_origin = "ds3231"
        elif self.cause in RTC_KEPT_CAUSES:
            self.clock_origin = "rtc"
        else:
            self.clock_origin = None
        self._rtc_valid = self.clock_origin is not None
        self.report({"ev": "clock", "origin": self.clock_origin, "ds3231": self.ds3231_status,
                     "cause": self.cause})

    def time_source(self):
        """A function returning the time in Unix seconds, or 0 while the board has none (after
        a power cut without a valid DS3231: the Clock then waits for the depot)."""
        self._start_clock()
        off = self._offset

        def now():
            if not self._rtc_valid:
                return 0
            return int(time.time()) + off
        return now

    def time_setter(self):
        """A function setting the time from Unix seconds (the depot's SET_TIME): the ESP32's
        RTC, and the DS3231 if fitted (which clears its oscillator-stop flag). A DS3231 that
        fails is reported; the RTC still has the time for this power-up."""

        def set_time(t):
            self._set_rtc(t)
            self._rtc_valid = True
            chip = self.rtc_chip()
            if chip is not None:
                try:
                    chip.write_time(t)
                    self.ds3231_status = "ok"
                except (OSError, ValueError) as e:
                    self.ds3231_status = "write_failed"
                    self.report({"ev": "fault", "where": "ds3231", "error": repr(e)})
        return set_time

    def _set_rtc(self, t):
        tm = time.gmtime(int(t) - self._offset)
        # RTC.datetime: (year, month, day, weekday, hours, minutes, seconds, subseconds)
        self._rtc.datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))

    def random(self, n):
        return os.urandom(n)  # the ESP32's hardware RNG

    def feed_watchdog(self):
        """Feed the hardware watchdog; the first call starts it (it cannot be stopped)."""
        if self._wdt is None:
            self._wdt = machine.WDT(timeout=self.pins.WDT_TIMEOUT_MS)
        self._wdt.feed()

    def park_watchdog(self):
        """Stretch a running watchdog to an hour, for a technician who stopped the reader with
        Ctrl-C (deploy, REPL): the esp32 port applies the timeout again when WDT is created."""
        if self._wdt is not None:
            self._wdt = machine.WDT(timeout=PARK_WDT_MS)
            self._wdt.feed()

    def service_requested(self):
        """True while the BOOT button is held: main.py then leaves the REPL to the technician
        instead of starting the reader (and its watchdog)."""
        pin = getattr(self.pins, "SERVICE_BUTTON", None)
        if pin is None:
            return False
        return machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP).value() == 0

    def reset(self):
        machine.reset()

    # -- what the reader reports ----------------------------------------------------------

    def report(self, event):
        """Events go to the USB console as JSON lines (a technician's serial monitor). Tap and
        feedback events are left out: at 115200 baud a line costs milliseconds of the tap."""
        if event.get("ev") in ("tap", "feedback"):
            return
        print(json.dumps(event))

    def tasks(self, reader):
        return [self.display.task()]

    def free_bytes(self):
        st = os.statvfs(self.root)
        return st[0] * st[3]

    # -- feedback parts (overridable per board) -------------------------------------------

    def _make_buzzer(self):
        pin = getattr(self.pins, "BUZZER", None)
        return Buzzer(pin) if pin is not None else None

    def _make_led(self):
        rgb = getattr(self.pins, "LED_RGB", None)
        if rgb is not None:
            return PinRgbLed(*rgb)
        pixel = getattr(self.pins, "LED_PIXEL", None)
        if pixel is not None:
            return PixelRgbLed(pixel)
        return None

    def _make_screen(self):
        addr = getattr(self.pins, "DISPLAY_ADDR", None)
        bus = self.i2c() if addr is not None else None
        return open_screen(bus, addr) if bus is not None else None


def reset_cause():
    return _CAUSES.get(machine.reset_cause(), "unknown")


def _ensure_dir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass  # exists already
