# What the rider sees and hears: distinct beep, LED and display patterns for accept, reject (with
# the reason's message) and the reader's service states. Hardware-agnostic: the board supplies
# small objects, any of which may be None:
#   buzzer.on(freq_hz) / buzzer.off()
#   led.color(r, g, b)               0..255 each
#   display.show(pattern, lines)     lines: list of str, at most `rows`, each at most `cols`
#   events: callable(dict) or a stream with write(str): one event per signal (the simulated
#           board reports them as JSON lines; a device may log them)
# Patterns are timed, not blocking: signal, then call tick() often (or run the async task()); it
# switches the buzzer and LED at the pattern's times and goes back to the resting state.
from drivers.ticks import ticks_ms as _ticks_ms, ticks_diff as _ticks_diff
from validator import reasons

OFF = (0, 0, 0)
GREEN = (0, 255, 0)
RED = (255, 0, 0)
AMBER = (255, 120, 0)
BLUE = (0, 0, 255)
IDLE = (0, 0, 24)            # dim blue: powered and waiting

# pattern: (LED colour, beeps [(freq_hz, on_ms, off_ms)], hold_ms before going back to rest)
# accept: one short high beep; already validated: two short high beeps; reject: three low beeps;
# service: one long very low beep and a steady amber LED until the reader is back in service.
PATTERNS = {
    "accept": (GREEN, ((2700, 120, 0),), 1200),
    "already": (GREEN, ((2700, 60, 60), (2700, 60, 0)), 1200),
    "reject": (RED, ((700, 150, 100), (700, 150, 100), (700, 150, 0)), 2000),
    "service": (AMBER, ((400, 600, 0),), 0),
    "busy": (BLUE, (), 0),
    "ready": (IDLE, (), 0),
}

READY_TEXT = ("请扫码或刷卡", "Scan code or tap")
BUSY_TEXT = ("请勿移开", "Hold still")


def wrap(text, cols, rows):
    """Word-wrap `text` into at most `rows` lines of at most `cols` characters."""
    out = []
    line = ""
    for word in text.split():
        while len(word) > cols:                      # a word longer than a line is cut
            if line:
                out.append(line)
                line = ""
            out.append(word[:cols])
            word = word[cols:]
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= cols:
            line = line + " " + word
        else:
            out.append(line)
            line = word
    if line:
        out.append(line)
    return out[:rows]


def money(amount):
    return "%d.%02d" % (amount // 100, amount % 100)


class Feedback:
    def __init__(self, buzzer=None, led=None, display=None, events=None, clock_ms=None,
                 cols=16, rows=4, lang="en"):
        self.buzzer = buzzer
        self.led = led
        self.display = display
        self.events = events
        self.clock_ms = clock_ms or _ticks_ms
        self.cols = cols
        self.rows = rows
        self.lang = lang              # "en" for the built-in 8x8 font of small displays
        self.pattern = None           # the pattern now showing
        self.resting = "ready"        # where a pattern returns to: "ready" or "service"
        self._rest_lines = self._lines(READY_TEXT)
        self._steps = []              # [(due_ms, action, arg)], sorted by due time
        self._t0 = 0
        self.signals = 0              # the reader calls ready() or service() once it has booted

    # --- signals ---

    def ready(self):
        """In service and waiting for a rider."""
        self.resting = "ready"
        self._rest_lines = self._lines(READY_TEXT)
        self._start("ready", reasons.OK, 0, READY_TEXT, self._rest_lines)

    def busy(self):
        """A card or phone is being read: keep it still."""
        self._start("busy", reasons.OK, 0, BUSY_TEXT, self._lines(BUSY_TEXT))

    def accept(self, reason=reasons.OK, fare=0, message=None):
        msg = message or reasons.message(reason)
        lines = self._lines(msg)
        if fare and len(lines) < self.rows:
            lines.append(("票价 " if self.lang == "zh" else "Fare ") + money(fare))
        pattern = "already" if reason == reasons.ALREADY_VALIDATED else "accept"
        self._start(pattern, reason, fare, msg, lines)

    def reject(self, reason, message=None):
        msg = message or reasons.message(reason)
        self._start("reject", reason, 0, msg, self._lines(msg))

    def service(self, reason, message=None):
        """Out of service (sync required, log full, reader error) until ready() is called."""
        msg = message or reasons.message(reason)
        self.resting = "service"
        self._rest_lines = self._lines(msg)
        self._start("service", reason, 0, msg, self._rest_lines)

    def decision(self, d):
        """Signal a policy Decision (accepted, reason, fare, message)."""
        if d.accepted:
            self.accept(d.reason, d.fare, getattr(d, "message", None))
        else:
            self.reject(d.reason, getattr(d, "message", None))

    # --- timing ---

    def tick(self, now=None):
        """Run the pattern's due steps; True while a pattern is still playing."""
        if not self._steps:
            return False
        if now is None:
            now = self.clock_ms()
        t = _ticks_diff(now, self._t0)
        while self._steps and self._steps[0][0] <= t:
            _, action, arg = self._steps.pop(0)
            action(arg)
        return bool(self._steps)

    async def task(self, period_ms=10):
        import asyncio
        while True:
            self.tick()
            await asyncio.sleep_ms(period_ms)

    # --- internals ---

    def _lines(self, msg):
        text = msg[0] if self.lang == "zh" else msg[1]
        cols = self.cols // 2 if self.lang == "zh" else self.cols   # CJK glyphs are double width
        return wrap(text, cols, self.rows) if self.lang != "zh" else _cut(text, cols, self.rows)

    def _start(self, pattern, reason, fare, msg, lines):
        colour, beeps, hold = PATTERNS[pattern]
        self.pattern = pattern
        self.signals += 1
        self._t0 = self.clock_ms()
        steps = []
        t = 0
        for freq, on_ms, off_ms in beeps:
            steps.append((t, self._buzz, freq))
            t += on_ms
            steps.append((t, self._buzz, 0))
            t += off_ms
        if hold:
            steps.append((max(t, hold), self._rest, None))
        self._steps = steps
        self._buzz(0)
        self._colour(colour)
        if self.display is not None:
            self.display.show(pattern, lines)
        self._emit({"ev": "feedback", "pattern": pattern, "reason": reason,
                    "name": reasons.name(reason), "fare": fare, "zh": msg[0], "en": msg[1],
                    "lines": lines, "led": list(colour),
                    "beeps": [[f, on] for f, on, _ in beeps]})
        self.tick(self._t0)

    def _rest(self, _):
        self.pattern = self.resting
        self._buzz(0)
        self._colour(PATTERNS[self.resting][0])
        if self.display is not None:
            self.display.show(self.resting, self._rest_lines)

    def _buzz(self, freq):
        if self.buzzer is not None:
            if freq:
                self.buzzer.on(freq)
            else:
                self.buzzer.off()

    def _colour(self, rgb):
        if self.led is not None:
            self.led.color(rgb[0], rgb[1], rgb[2])

    def _emit(self, ev):
        sink = self.events
        if sink is None:
            return
        if callable(sink):
            sink(ev)
            return
        import json
        sink.write(json.dumps(ev) + "\n")
        if hasattr(sink, "flush"):
            sink.flush()


def _cut(text, cols, rows):
    """Lines for text without spaces (Chinese): cut every `cols` characters."""
    out = []
    for i in range(0, len(text), cols):
        out.append(text[i:i + cols])
    return out[:rows]
