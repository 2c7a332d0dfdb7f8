# A reader for the depot-sync tests, on MicroPython and on CPython: the real trip log (on a raw
# FlashDev region), the real clock, and installers that check the operator signature of a pushed
# envelope (validator.signedfile) and swap it in by rename. It stands in for the application's
# reader (validator.app) so the protocol can be tested without the tap path; the interface is the
# "sync -> reader" contract of docs/design.md. (No test functions here.)
import os
import struct

from validator import clock, hmac256
from validator import triplog as tl

RID = 7001
KEY = bytes(range(32))  # the sync secret of the test reader
T0 = 1767225600         # 2026-01-01
_PAT = bytes(range(256)) * 3
_KIND_CODES = {"denylist": 2, "denylist_delta": 3, "keyring": 1, "config": 4}  # signedfile kinds
_FILES = {"denylist": "deny.fvs", "denylist_delta": "deny.fvs", "keyring": "keyring.fvs",
          "config": "config.fvs"}


def gen(seq, rid=RID):
    """A deterministic trip record: accepted QR taps carry a ride code of 0-300 bytes."""
    ok = seq % 4 != 0
    return {"time": T0 + 11 * seq, "decision": 1 if ok else 0, "reason": 0 if ok else 20,
            "kind": "qr" if seq % 3 else "nfc", "cred_id": bytes([seq & 255]) * 16,
            "account": 10 ** 12 + seq % 97, "counter": seq, "fare": 200 if ok else 0,
            "line": 10 + seq % 3, "stop": seq % 17,
            "raw": _PAT[seq & 255:(seq & 255) + (seq * 37) % 301] if ok else b""}


_RAW360 = bytes(range(256)) * 2


def gen_bench(seq, rid=RID):
    """The trip-log benchmark's workload (bench/bench_triplog.py): 4 taps in 5 accepted with a
    360-byte ride code (447-byte record), 1 in 5 rejected without it (87 bytes); mean 375 bytes."""
    ok = seq % 5 != 0
    return {"time": T0 + seq, "decision": 1 if ok else 0, "reason": 0 if ok else 20,
            "kind": "qr", "cred_id": b"C" * 16 if ok else b"", "account": 10 ** 12 + seq,
            "counter": seq, "fare": 200 if ok else 0, "line": 42, "stop": seq % 30,
            "raw": _RAW360[:360] if ok else b""}


def log_key(sync_key):
    """The trip log's chain key (docs/triplog.md): HMAC-SHA256(sync secret, "triplog")."""
    return hmac256.hmac_sha256(sync_key, b"triplog")


class FakeTime:
    """The board's time source, moved only by the test (or by SET_TIME through the clock)."""

    def __init__(self, t=0):
        self.t = t

    def __call__(self):
        return self.t


class SyncTestReader:
    """`root`: a directory (littlefs mount on MicroPython, tmp dir on CPython) for the clock,
    staging and installed files; `logdev`: a block device (FlashDev) holding the trip log."""

    def __init__(self, root, logdev, reader_id=RID, sync_key=KEY, operator_keys=None,
                 time_source=None):
        self.root = root
        self.reader_id = reader_id
        self.sync_key = sync_key
        self.operator_keys = operator_keys or {}
        self.staging_dir = root
        # a keyed chain, its key derived from the sync secret, as the application's reader does
        self.log_key = log_key(sync_key)
        self.log = tl.TripLog(logdev, reader_id, key=self.log_key)
        self.time_source = time_source or FakeTime(0)
        self.clock = clock.Clock(self.time_source, root)
        self.reboots = 0
        self.installs = []

    def add_records(self, n, workload=None):
        g = workload or gen
        for _ in range(n):
            self.log.append(g(self.log.last_seq + 1, self.reader_id))

    def version(self, kind):
        # the envelope's header (validator.signedfile.HEADER: magic, kind, key id, version, ...),
        # read here without importing signedfile, which brings the P-256 code in
        try:
            with open(self.root + "/" + _FILES[kind], "rb") as f:
                head = f.read(11)
        except OSError:
            return 0
        if len(head) < 11 or head[:4] != b"FVS1":
            return 0
        return struct.unpack(">I", head[7:11])[0]

    def info(self):
        return {"firmware": "sync-test", "time": self.clock.now(),
                "deny_version": self.version("denylist"),
                "keyring_version": self.version("keyring"),
                "config_version": self.version("config"),
                "counters": {"installs": len(self.installs), "reboots": self.reboots}}

    def install(self, kind, version, path):
        from validator import signedfile
        reason, h = signedfile.verify_file(path, self.operator_keys, _KIND_CODES[kind],
                                           self.clock.now())
        if reason != signedfile.OK:
            return reason
        if h.version <= self.version(kind):
            return signedfile.OLD_VERSION
        os.rename(path, self.root + "/" + _FILES[kind])
        self.installs.append((kind, version))
        return signedfile.OK

    def set_time(self, t, allow_backwards):
        return self.clock.set(t, allow_backwards)

    def reboot(self):
        self.reboots += 1

    def before_reclaim(self):
        self.reclaims = getattr(self, "reclaims", 0) + 1

    def state(self):
        """Everything a sync command could change, for "nothing changed" checks."""
        log = self.log
        files = sorted(os.listdir(self.root))
        return (log.first_seq, log.last_seq, log.ack_seq, log.free_bytes,
                self.version("denylist"), self.version("keyring"), self.version("config"),
                self.clock.floor, self.clock.synced_at, self.clock.now(), self.reboots,
                tuple(files))


def operator_keys_from(pub_hex, key_id=1):
    return {key_id: (bytes.fromhex(pub_hex), 0)}


def u32(b):
    return struct.unpack(">I", b)[0]
