"""One simulated bus: a reader running the real firmware (host_tools.sim.simreader) wired to a QR
scanner emulator, a PN532 emulator and a null-modem cable to the depot PC, in a world of keys
and riders (host_tools.sim.simworld). `fare sim` and `fare scenario` both drive it.

Simulated time is explicit: every step says when it happens, the reader's battery-backed RTC is
set to that time before the step, and the depot sets the reader clock to simulated time too."""
import os
import types
from pathlib import Path

from host_tools.depot import readersync
from host_tools.sim import nullmodem, simreader, simworld
from host_tools.sim.pn532_emu import PN532Emulator
from host_tools.sim.qr_emu import QrEmulator

CMD_IN_DATA_EXCHANGE = 0x40


class TapOutcome:
    def __init__(self, event):
        self.event = event
        self.accepted = event.get("accepted", False)
        self.reason = event.get("name")
        self.fare = event.get("fare", 0)
        self.seq = event.get("seq")
        self.us = event.get("us", 0)


class SimBus:
    def __init__(self, workdir, start_time, reader_id=1001, config=None, log_blocks=None,
                 heap=None, fragment=None, world=None, db_path=None):
        """`world`, `db_path`: another bus's, for a second bus of the same operator and depot."""
        self.dir = Path(workdir).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.now = start_time
        self.world = world or simworld.World(self.dir / "world", start_time)
        self.reader_id = reader_id
        self.config = config or {}
        self.log_blocks = log_blocks
        self.heap = heap
        self.fragment = fragment   # cut the reader's free heap into holes this big once it is up
        self.db_path = Path(db_path) if db_path else self.dir / "depot.sqlite"
        self.qr = self.nfc = self.cable = self.reader = None
        self.syncs = []

    # -- set-up ----------------------------------------------------------------------------

    def start(self):
        """Provision the reader (first boot copies identity, key ring, configuration) and power
        it on with its peripherals."""
        prov = self.world.provision_reader(self.reader_id, self.config)
        self.secrets = self.world.depot_keys_dir
        self.qr = QrEmulator()
        self.qr.start()
        self.nfc = PN532Emulator()
        self.nfc.start()
        self.cable = nullmodem.NullModem()
        kw = {}
        if self.log_blocks:
            kw["log_blocks"] = self.log_blocks
        if self.heap:
            kw["heap"] = self.heap
        if self.fragment:
            kw["env"] = {"FV_FRAGMENT": str(self.fragment)}
        self.reader = simreader.SimReader(self.dir / "reader", provision_dir=prov,
                                          qr_port=self.qr.path, nfc_port=self.nfc.path,
                                          sync_port=self.cable.a, **kw)
        self.reader.rtc = self.now
        return self.reader.start()

    def close(self):
        for part in (self.reader, ):
            if part is not None:
                part.stop()
        for part in (self.qr, self.nfc):
            if part is not None:
                part.stop()
        if self.cable is not None:
            self.cable.close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    # -- time ------------------------------------------------------------------------------

    def at(self, t):
        """Move simulated time to `t` (never backwards: the world's clock is monotonic; a test
        that needs a wrong reader clock uses the depot's SET_TIME)."""
        if t > self.now:
            self.now = t
        self.world.now = self.now
        self.reader.set_rtc(self.now)

    # -- taps ------------------------------------------------------------------------------

    def show_qr(self, text):
        """The rider holds a code (text) in front of the scanner; returns what the reader did."""
        self.qr.scan(text)
        return TapOutcome(self.reader.wait_event("tap"))

    def tap_qr(self, rider, code_age=0, counter=None, reuse=False):
        if reuse and rider.last_code is not None:
            code = rider.last_code
        else:
            code = rider.wallet.ride_code(self.now - code_age, counter)
            rider.last_code = code
        return self.show_qr(code)

    def tap_nfc(self, rider=None, card=None, leave_after=None):
        """Hold a phone (the rider's wallet) or any card on the reader until it answers.
        `leave_after`: the phone is pulled away during the n-th APDU exchange."""
        card = card if card is not None else rider.wallet.card(clock=lambda: self.now)
        card.uid = b"\x08" + os.urandom(3)  # phones show a random UID at every tap
        if leave_after is not None:
            # pulled away mid-exchange, and kept away until this tap is over
            self.nfc.inject("remove_card", cmd=CMD_IN_DATA_EXCHANGE, times=1, arg=10 ** 6)
        self.nfc.present(card)
        try:
            return TapOutcome(self.reader.wait_event("tap"))
        finally:
            self.nfc.remove()

    # -- power and depot -------------------------------------------------------------------

    def power_cut(self):
        """Cut the power (SIGKILL) and power up again from the same flash."""
        self.reader.power_cut()
        return self.reader.start()

    def sync(self, push_denylist=False, push_keyring=False, push_config=None, set_time=True,
             reboot=False, pushes=()):
        """The bus at the depot: pull logs into the depot database, push what is asked (and
        `pushes`: more (kind, signed file bytes), e.g. a deny-list delta), set the reader clock
        to simulated time. Returns the depot's Result."""
        pushes = list(pushes)
        if push_denylist:
            pushes.append(("denylist", self.world.deny_data))
        if push_keyring:
            pushes.append(("keyring", self.world.keyring_file()))
        if push_config is not None:
            pushes.append(("config", self.world.config_file(push_config)))
        opts = types.SimpleNamespace(pushes=pushes, set_time=set_time, allow_time_backwards=False,
                                     reboot=reboot, accept_gaps=False, timeout=2.0, retries=5,
                                     now=lambda: self.now)
        res = readersync.sync_port(self.cable.b, readersync.load_keys(self.secrets), str(self.db_path), opts)
        self.syncs.append(res)
        res.reader_info = self.reader.info()  # also collects any fault the reader reported
        return res

    def upload(self, kind, data):
        """Send a push without committing it (the reader keeps the staged upload: the next
        sync's push of the same file resumes at its end and commits)."""
        from host_tools.depot.synclink import SyncLink, open_serial
        port = open_serial(self.cable.b)
        try:
            link = SyncLink(port, readersync.load_keys(self.secrets).get)
            link.hello()
            return link.push(kind, data, commit=False)
        finally:
            port.close()

    def info(self):
        return self.reader.info()
