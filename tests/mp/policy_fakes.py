# Stand-ins for the policy tests (MicroPython and CPython): a verified token with the attributes of
# tokens.RideToken (docs/design.md, "tokens -> policy"), a deny list with the DenyList lookup API,
# a settable time source, and a reader built from flash state.
#
# The firmware modules are imported here, first: compiling them from source (the device has them
# frozen in flash) needs large free blocks, which a 110 KB heap has only before the tests run.
# riderstate (with ridertable) first: after the others, its compile found no 2.6 KB block.
import gc
import os
import struct

from validator import riderstate, clock, config, policy  # noqa: F401

gc.collect()
T0 = 1750000000            # a Unix time in 2025: the tests' epoch
LOG_REC = "<IQQII16s"      # the trip log stand-in: seq, account, counter, time, fare, cred id


class Token:
    def __init__(self, cred_id=b"C" * 16, account=1, counter=1, time=T0, valid_from=T0 - 86400,
                 valid_until=T0 + 7 * 86400, max_rides=10, max_amount=100000, product=0,
                 kind="qr", key_id=1):
        self.kind = kind
        self.cred_id = cred_id
        self.cred_hash = b"\0" * 32
        self.account = account
        self.key_id = key_id
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.max_rides = max_rides
        self.max_amount = max_amount
        self.product = product
        self.time = time
        self.counter = counter
        self.raw = b"raw:" + cred_id + counter.to_bytes(8, "big")


def cred(i):
    """A 16-byte credential id for rider number i."""
    return (b"cred-%011d" % i)[:16]


class DenyList:
    def __init__(self, built_at=T0, accounts=(), creds=(), version=1):
        self.built_at = built_at
        self.version = version
        self.accounts = set(accounts)
        self.creds = set(creds)
        self.lookups = 0

    def denied_account(self, account, now):
        self.lookups += 1
        return account in self.accounts

    def denied_credential(self, cred_id, now):
        self.lookups += 1
        return bytes(cred_id) in self.creds


class Source:
    """A time source the test moves by hand (the board's RTC or uptime counter)."""

    def __init__(self, t=0):
        self.t = t

    def __call__(self):
        return self.t


def make_config(**settings):
    """Config with a fare table on line 0 (product 0: 200, 1: 100, 2: free) and the defaults."""
    cfg = config.Config()
    cfg.fares = {0: {0: 200, 1: 100, 2: 0}}
    for k in settings:
        setattr(cfg, k, settings[k])
    return cfg


class Rig:
    """A reader's policy on simulated flash (MicroPython only): tap() runs decide, the trip log
    append (a list standing in for validator.triplog) and commit; reboot() restarts the clock,
    counters and policy from the flash image. With rtc=True the time source keeps running across
    reboots (a battery RTC), so the clock stays set."""

    def __init__(self, cfg=None, denylist=None, blocks=48, mount="/p", rtc=True,
                 max_credentials=64, max_accounts=32, journal_slots=32, set_clock=True):
        import flashdev
        self.flashdev = flashdev
        self.dev = flashdev.FlashDev(blocks)
        self.mnt = mount
        flashdev.mount(self.dev, mount)
        self.src = Source(T0)
        self.cfg = cfg if cfg is not None else make_config()
        self.dl = denylist if denylist is not None else DenyList()
        self.rtc = rtc
        self.caps = (max_credentials, max_accounts, journal_slots)
        self.seq = 0
        # the trip log stand-in: a host file beside the flash images, not on the measured flash
        self.log_path = "%s/riglog-%s.bin" % (os.getenv("FV_TMP") or "/tmp",
                                              "".join("%02x" % b for b in os.urandom(6)))
        self.start()
        if set_clock:
            assert self.clock.set(T0) == "OK"

    def start(self):
        gc.collect()
        self.state = riderstate.RiderState(self.mnt, self.caps[0], self.caps[1], self.caps[2])
        self.clock = clock.Clock(self.src, self.mnt, setter=(lambda t: None) if self.rtc else None)
        self.policy = policy.Policy(self.cfg, self.state, self.dl, self.clock)

    def tap(self, token, t=None):
        if t is not None:
            self.src.t = t
        d = self.policy.decide(token, self.clock.now())
        if d.record:
            self.log_append(d)
            self.policy.commit(d, self.seq)
        else:
            self.policy.commit(d)
        return d

    def log_append(self, d):
        # The trip log stand-in keeps what recover() reads: a packed record per accepted tap in
        # a file outside the heap, as the reader's log is on flash (a list in the heap grew with
        # the taps, in the heap the test measures).
        self.seq += 1
        if d.accepted:
            t = d.token
            with open(self.log_path, "ab") as f:
                f.write(struct.pack(LOG_REC, self.seq, t.account, t.counter, d.time, d.fare,
                                    t.cred_id))

    def records(self):
        """The log as validator.policy.recover takes it: (seq, trip record dict)."""
        buf = bytearray(struct.calcsize(LOG_REC))
        try:
            f = open(self.log_path, "rb")
        except OSError:
            return
        with f:
            while f.readinto(buf) == len(buf):
                seq, a, n, t, fare, c = struct.unpack(LOG_REC, buf)
                yield seq, {"decision": 1, "reason": 0, "cred_id": c, "account": a,
                            "counter": n, "time": t, "fare": fare}

    def reboot(self):
        self.state.close()
        self.state = self.clock = self.policy = None  # as after a real reboot: all gone
        gc.collect()
        self.flashdev.umount(self.mnt)
        self.dev = self.dev.revive()
        self.flashdev.mount(self.dev, self.mnt, format_if_needed=False)
        self.start()

    def close(self):
        self.state.close()
        self.flashdev.umount(self.mnt)
        self.dev.close()
        self.state = self.policy = self.clock = None
        try:
            os.remove(self.log_path)
        except OSError:
            pass
        gc.collect()
