# The reader clock. The depot sets it (SET_TIME at every sync); until then, after a power-up, the
# reader has no time and refuses taps (SYNC_REQUIRED). The last known time is persisted, so the
# clock never goes behind it across reboots by more than a small bound unless the depot says so
# explicitly: a reader that can be wound back would accept stale codes and reopen spent windows.
#
# The time source is injected: `source()` returns integer seconds on any scale (an uptime counter,
# or the board's RTC). Boards whose RTC keeps time across a reboot pass `setter` (writes the RTC):
# then at power-up the clock trusts the RTC if it reads no earlier than the persisted time and not
# implausibly later.
import struct

from validator import atomicfile

OK = "OK"
BAD_TIME = "BAD_TIME"                 # not an integer time in [MIN_TIME, MAX_TIME]
BACKWARDS = "CLOCK_BACKWARDS"         # more than max_back behind the reader's time, not authorised

MIN_TIME = 1577836800                 # 2020-01-01: anything earlier is an unset RTC or a bug
MAX_TIME = 0xFFFFFFFF                 # times are stored as u32

_MAGIC = b"FCK1"
_FMT = "<4sII"                        # magic, floor (last persisted time), synced_at (0 = never)
_SIZE = 12


class Clock:
    def __init__(self, source, state_dir, setter=None, max_back=300, persist_every=600,
                 rtc_max_gap=30 * 86400):
        self.source = source
        self.setter = setter
        self.max_back = max_back
        self.persist_every = persist_every
        self.path = state_dir + "/clock"
        self.floor = 0          # no time before this one was ever handed out (persisted)
        self.synced_at = 0      # time of the last depot SET_TIME (persisted); 0 = never
        self._offset = None     # None: not set since power-up
        self._last = 0
        data = atomicfile.read(self.path)
        if data is not None and len(data) == _SIZE:
            magic, floor, synced = struct.unpack(_FMT, data)
            if magic == _MAGIC:
                self.floor = floor
                self.synced_at = synced
        if setter is not None and self.synced_at:
            t = source()
            if self.floor <= t <= self.floor + rtc_max_gap:
                self._offset = 0
                self._last = t

    def is_set(self):
        return self._offset is not None

    def now(self):
        """Integer seconds, or None if the clock was not set since power-up. Never decreases
        within a power-up, even if the source does."""
        if self._offset is None:
            return None
        t = self.source() + self._offset
        if t < self._last:
            t = self._last
        self._last = t
        return t

    def set(self, t, allow_backwards=False):
        """Set the time (the depot's SET_TIME). Returns OK, BAD_TIME or BACKWARDS; a move back of
        at most max_back seconds (a clock correction) is allowed, a larger one only if
        `allow_backwards` (the depot operator authorised it)."""
        if type(t) is not int or not MIN_TIME <= t <= MAX_TIME:
            return BAD_TIME
        ref = self.now()
        if ref is None:
            ref = self.floor
        if t < ref - self.max_back and not allow_backwards:
            return BACKWARDS
        if self.setter is not None:
            self.setter(t)
        self._offset = t - self.source()
        self._last = t
        self.floor = t
        self.synced_at = t
        self._save()
        return OK

    def checkpoint(self):
        """Persist the current time if it moved on by persist_every since the last save (cheap
        otherwise); the policy calls it after each committed tap. Returns True if it wrote."""
        t = self.now()
        if t is None or t - self.floor < self.persist_every:
            return False
        self.floor = t
        self._save()
        return True

    def _save(self):
        atomicfile.write(self.path, struct.pack(_FMT, _MAGIC, self.floor, self.synced_at))
