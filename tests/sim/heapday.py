"""A long day on the simulated reader (host_tools.sim.simbus: the real firmware on the MicroPython
binary, its heap the device's less a safety margin): taps of every kind of rider interleaved with
depot syncs that push every kind of file, each checked as it happens; and the same pushes with the
power cut in the middle of their install. tests/sim/test_heap_day.py runs a representative day;
FV_LONG_DAY=1 runs the full one. (No test functions here.)

Riders: regulars (issuer 1; the first tap of each is a first sighting, later ones hit the reader's
credential cache), new riders every so often (first sightings), NFC phones, riders of issuer keys
the reader gets later in the day (UNKNOWN_KEY until a key ring push adds their key), riders whose
account is denied (the deny list pushed grows a denied rider now and then), unreadable codes
(MALFORMED). Every tap must come back with the decision that rider should get (READER_ERROR is
never one), every push must install."""
import random

from host_tools.common import signedfile as hsf
from host_tools.issuing import denylist_build
from host_tools.sim import simbus, simreader
from host_tools.common.fw import validator  # noqa: F401
from validator import denylist as fw_denylist
from validator import signedfile as sf

T = 1795471200
DAY = 86400
MARGIN = 16 * 1024     # the heap is the device's less this: code + 110 KB (no load-holes allowance)
FILLER = 10 ** 12      # denied accounts that are nobody in the day


def _accounts(accounts):
    return {(fw_denylist.TAG_ACCOUNT, fw_denylist.account_bytes(a)): 0 for a in accounts}


class HeapDay:
    def __init__(self, workdir, margin=MARGIN, seed=1, regulars=40, pending_keys=8,
                 fragment=None):
        self.rng = random.Random(seed)
        self.heap = simreader.heap_with_margin(margin)
        self.fare = 180
        self.bus = simbus.SimBus(workdir, T, reader_id=4001, config=self._config(),
                                 heap=self.heap, fragment=fragment)
        w = self.w = self.bus.world
        self.new_riders = 0
        w.add_issuer(1, T - DAY, T + 365 * DAY)
        self.regulars = [self._rider(1) for _ in range(regulars)]
        self.pending = []          # issuer key ids the reader does not have yet, in push order
        self.waiting = {}          # key id -> its riders
        for k in range(2, 2 + pending_keys):
            w.add_issuer(k, T - DAY, T + 365 * DAY, in_ring=False)
            self.pending.append(k)
            self.waiting[k] = [self._rider(k) for _ in range(2)]
        self.keys_on_reader = {1}
        self.denied = set()        # accounts the reader's list denies
        self.deny_version = 0
        self.deny_base = None      # the full list (host bytes) the reader holds: deltas start there
        self.filler = 5000
        self.counts = {}           # decision name -> taps
        self.pushes = []           # (kind, how it went)
        self.cuts = []             # (kind, flash operations before the cut, version after)
        self.low = None            # the reader's low-water mark of free heap, from INFO
        self.nfc_again = 0         # NFC taps the rider had to repeat ("Tap again")

    # -- set-up ------------------------------------------------------------------------------

    def _config(self):
        return {"line": 5, "fares": {"5": {"adult": self.fare}},
                "rules": {"passback_window": "0s"}}

    def _rider(self, key_id):
        self.new_riders += 1
        n = self.new_riders
        return self.w.add_rider("r%d" % n, 1000 + n, key_id=key_id, max_rides=10 ** 6,
                                max_amount=10 ** 12)

    def start(self):
        self.bus.start()
        self.push("denylist", self._full(5000))
        return self

    def close(self):
        self.bus.close()

    # -- taps --------------------------------------------------------------------------------

    def expected(self, rider):
        if rider is None:
            return "MALFORMED"
        kid = self._key_of(rider)
        if kid not in self.keys_on_reader:
            return "UNKNOWN_KEY"
        if rider.account in self.denied:
            return "DENIED_ACCOUNT"
        return "OK"

    def _key_of(self, rider):
        for k, riders in self.waiting.items():
            if rider in riders:
                return k
        return 1

    def tap(self):
        """One tap of a rider drawn for the day's mix; checked against what it should get."""
        bus = self.bus
        bus.at(bus.now + 7)
        x = self.rng.random()
        nfc = False
        if x < 0.08:
            rider = self._rider(1)                       # a first sighting
            self.regulars.append(rider)
        elif x < 0.18:
            rider = self.rng.choice([r for rs in self.waiting.values() for r in rs])
        elif x < 0.22:
            rider = None                                 # an unreadable code
        else:
            rider = self.rng.choice(self.regulars)
            nfc = x > 0.92
        want = self.expected(rider)
        if rider is None:
            out = bus.show_qr("FV1:%d" % self.rng.randrange(10 ** 9))
        elif nfc:
            out = bus.tap_nfc(rider)
            for _ in range(3):
                # "Tap again": the exchange broke off (on this shared machine, an emulated phone
                # that answered too late), nothing was decided or logged; the rider taps again
                if out.reason != "NFC_FAILED":
                    break
                self.nfc_again += 1
                out = bus.tap_nfc(rider)
        else:
            out = bus.tap_qr(rider)
        assert out.reason == want, ("tap %d: %s, expected %s; reader faults: %s" % (
            sum(self.counts.values()) + 1, out.event, want, bus.reader.faults[-2:]))
        if want == "OK":
            assert out.fare == self.fare, out.event
        self.counts[out.reason] = self.counts.get(out.reason, 0) + 1

    def taps(self, n):
        for _ in range(n):
            self.tap()

    # -- the files the depot pushes ----------------------------------------------------------

    def _deny_one_more(self):
        rider = self.rng.choice(self.regulars)
        self.denied.add(rider.account)

    def _full(self, n):
        """A full list of `n` entries: the denied riders (one more than before) and filler."""
        self._deny_one_more()
        self.deny_version += 1
        accounts = list(self.denied) + [FILLER + self.deny_version * 10 ** 6 + j
                                        for j in range(n - len(self.denied))]
        data, _, _ = denylist_build.build_list(_accounts(accounts), self.deny_version,
                                               self.w.operator_key, self.w.operator_kid,
                                               self.bus.now)
        self._next_base = data
        return data

    def _delta(self):
        """A delta on the reader's list: one more denied rider, a hundred filler entries gone."""
        h, base = denylist_build.read_list(self.deny_base)
        before = set(self.denied)
        self._deny_one_more()
        add = _accounts(self.denied - before)
        gone = [FILLER + h.version * 10 ** 6 + j for j in range(100 * self.deny_version,
                                                                100 * self.deny_version + 100)]
        self.deny_version += 1
        data, model, _ = denylist_build.build_delta(self.deny_base, self.deny_version,
                                                    self.w.operator_key, self.w.operator_kid,
                                                    add=add, remove=_accounts(gone),
                                                    created=self.bus.now)
        self._next_base = hsf.seal(sf.DENYLIST, self.deny_version, model.encode(),
                                   self.w.operator_key, self.w.operator_kid, self.bus.now)
        return data

    def _keyring(self):
        """The key ring with the next pending issuer key: the reader builds its table."""
        k = self.pending.pop(0)
        self.w.key_entries[k] = self.w.issuers[k].entry(T - DAY, T + 365 * DAY)
        self._next_key = k
        return self.w.keyring_file()

    def _configfile(self):
        self.fare += 10
        return self.w.config_file(self._config())

    def file(self, kind):
        """The next file of `kind` ("denylist", "denylist_big", "denylist_delta", "keyring",
        "config"), the host's view of the reader updated once it is installed (installed())."""
        if kind == "denylist":
            return "denylist", self._full(5000)
        if kind == "denylist_big":
            return "denylist", self._full(50_000)
        if kind == "denylist_delta":
            return "denylist_delta", self._delta()
        if kind == "keyring":
            return "keyring", self._keyring()
        return "config", self._configfile()

    def installed(self, kind):
        if kind.startswith("denylist"):
            self.deny_base = self._next_base
        elif kind == "keyring":
            self.keys_on_reader.add(self._next_key)

    def _check_versions(self, info):
        assert info["deny_version"] == self.deny_version, info
        assert info["keyring_version"] == self.w.keyring_version, info
        assert info["config_version"] == self.w.config_version, info

    def _note_heap(self, info):
        heap = info["heap"]
        if self.low is None or heap["low"] < self.low["low"]:
            self.low = heap
        self.last_heap = heap

    def push(self, kind, data=None):
        """Push the next file of `kind` in a depot sync; it must install."""
        if data is None:
            kind, data = self.file(kind)
        res = self.bus.sync(pushes=[(kind, data)])
        assert res.ok, "push of %s: %s (reader fault: %s)" % (kind, res.message,
                                                               self.bus.reader.faults[-3:])
        self.installed(kind)
        info = self.bus.info()
        self._check_versions(info)
        assert info["fault"] is None, info["fault"]
        self._note_heap(info)
        self.pushes.append((kind, len(data)))

    def push_with_cut(self, kind, after):
        """Push the next file of `kind`, the power cut after `after` flash operations of its
        install; after the reboot the reader holds the old version or the new, never anything
        else, and the depot's next push of the same file installs it (or finds it there)."""
        name, data = self.file(kind)
        bus = self.bus
        assert bus.sync().ok                     # the logs home: the next sync is only the push
        assert bus.upload(name, data) == "uploaded"
        bus.reader.arm_flash_cut(after)
        bus.sync(pushes=[(name, data)])          # the install dies with the flash
        bus.power_cut()
        info = bus.info()
        field = {"denylist": "deny_version", "denylist_delta": "deny_version",
                 "keyring": "keyring_version", "config": "config_version"}[name]
        new = {"deny_version": self.deny_version, "keyring_version": self.w.keyring_version,
               "config_version": self.w.config_version}[field]
        got = info[field]
        assert got in (new - 1, new), (name, after, info)
        res = bus.sync(pushes=[(name, data)])
        assert res.ok, "retry of %s after the cut: %s" % (name, res.message)
        self.installed(kind)
        info = bus.info()
        self._check_versions(info)
        self._note_heap(info)
        self.cuts.append((kind, after, "new" if got == new else "old"))
