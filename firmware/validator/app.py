# The reader: QR lines and NFC taps -> tokens (verify) -> policy (decide) -> trip log (durable)
# -> policy commit (counters) -> feedback. One asyncio loop serves the QR scanner, the NFC front
# end, the depot sync UART, the watchdog and whatever the board adds.
#
# The order of one tap is the money rule: the trip record is written and flushed before the
# rider sees green; counters are committed after the record, and a record that cannot be written
# turns the tap red (LOG_FULL / READER_ERROR) with nothing charged.
import os
import time

from validator import atomicfile, cbor, heapwatch, hmac256, iobuf, reasons, tokens

FIRMWARE_VERSION = "0.1.0"

# install outcomes that are the reader's own trouble, not the file's (validator.syncproto has the
# same strings as sync statuses); WRITE_FAILED is the deny list's flash write error
OUT_OF_MEMORY = "OUT_OF_MEMORY"
FLASH_ERROR = "FLASH_ERROR"
WRITE_FAILED = "WRITE_FAILED"

KIND_QR = "qr"
KIND_NFC = "nfc"
REJECT_REPEAT_S = 3      # a rejected code held at the scanner is logged once, not per read
NFC_POLL_MS = 150        # how often the NFC front end looks for a phone or card
NFC_RETRY_MS = 5000      # how often a front end that failed to start is tried again
QR_POLL_MS = 5
SYNC_POLL_MS = 5


class Result:
    """What one tap came to: the decision, the record it wrote and how long deciding took."""

    def __init__(self, kind, accepted, reason, fare=0, seq=None, us=0, account=None):
        self.kind = kind
        self.accepted = accepted
        self.reason = reason
        self.fare = fare
        self.seq = seq
        self.us = us
        self.account = account

    def event(self):
        zh, en = reasons.message(self.reason)
        return {"ev": "tap", "kind": self.kind, "accepted": self.accepted,
                "reason": self.reason, "name": reasons.name(self.reason), "fare": self.fare,
                "seq": self.seq, "us": self.us, "account": self.account, "zh": zh, "en": en}


class SetupError(Exception):
    """The board is not set up to be a reader (not provisioned, no trip log partition): a
    reboot would not help, so it stays out of service until a technician fixes it."""


def load_identity(path):
    """The reader's identity written once by provisioning (docs/design.md)."""
    try:
        with open(path, "rb") as f:
            ident = cbor.decode(f.read(), max_depth=3, max_items=64, max_len=2048)
    except OSError:
        raise SetupError("not provisioned: no %s (fare provision, then make deploy)" % path)
    except cbor.CBORError:
        raise SetupError("identity unreadable: %s (provision the reader again)" % path)
    try:
        ops = {}
        for kid, pub, until in ident[2]:
            ops[kid] = (pub, until)
        return ident[1], ops, ident[3]
    except (TypeError, ValueError, IndexError, KeyError):
        raise SetupError("identity malformed: %s (provision the reader again)" % path)


def _mkdir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass


class UnavailableLog:
    """Stands in for a trip log that cannot be opened: no record can be written, so every tap
    is refused (READER_ERROR) and the reader shows out of service; INFO carries `error`."""
    state = "error"
    first_seq = 1
    last_seq = 0
    ack_seq = 0
    free_bytes = 0

    def __init__(self, error):
        self.error = error

    def read(self, from_seq, max_bytes):
        return []

    def append(self, record):
        raise OSError(5)  # EIO

    def ack(self, upto_seq, erase=False):
        raise OSError(5)

    def housekeeping(self, max_erases=1):
        return 0

    ack_link = None


class Reader:
    """Everything the reader knows, built from its flash: identity, clock, key ring,
    configuration, deny list, rider counters and trip log. `board` gives the hardware
    (docs/boards.md)."""

    def __init__(self, board):
        from validator import clock, config, denylist, keyring, policy, riderstate, triplog
        self.board = board
        root = board.root
        self.root = root
        self.reader_id, self.operator_keys, self.sync_key = load_identity(root + "/identity.cbor")
        for d in ("/state", "/staging", "/tables"):
            _mkdir(root + d)
        self.staging_dir = root + "/staging"
        self.fault = None        # the reader's last own fault (INFO: "fault")
        # Big and long-lived blocks first, while the heap is whole: the rider tables (18 KB),
        # the I/O buffer, the deny list's index and every buffer its installs need (7.5 KB in
        # all), the credential cache (6 KB). After boot no code path needs a free block over 1 KiB
        # (docs/performance.md, "Heap").
        import gc
        gc.collect()
        self.state = riderstate.RiderState(root + "/state")
        iobuf.get()    # the one I/O buffer of every file check and copy (1 KiB)
        self.denylist = denylist.DenyList(root + "/deny")
        self.cache = tokens.CredCache()
        self.clock = clock.Clock(board.time_source(), root + "/state",
                                 setter=board.time_setter())
        # A keyed chain: whoever edits the flash without the sync secret cannot re-chain records.
        try:
            log_device = board.log_device()
        except OSError as e:  # no trip log partition: the board was not flashed for a reader
            raise SetupError(str(e.args[0]) if e.args else "no trip log device")
        try:
            self.log = triplog.TripLog(log_device, self.reader_id,
                                       key=hmac256.hmac_sha256(self.sync_key, b"triplog"))
        except triplog.LogError as e:
            # Another reader's log (re-provisioned under a new id) or a region too small:
            # rebooting would not help. Stay up, out of service, and tell the depot why.
            self.log = UnavailableLog(e.args[0] if e.args else "trip log unavailable")
        # files given to the reader that do not load: {"config" | "keyring": reason}, shown as
        # a service warning and reported by INFO until a good one is installed
        self.file_errors = {}
        self.config = self._load_config()
        self.keyring = self._load_keyring()
        # The generator's fixed-base table (a file handle and its buffer, made by the first
        # verify) is made now, among the long-lived blocks, not in the middle of a day's heap.
        from validator import p256
        getattr(p256, "_generator", lambda: None)()
        self.policy = policy.Policy(self.config, self.state, self.denylist, self.clock)
        self.counters = {"taps": 0, "accepted": 0, "rejected": 0, "repeats": 0, "errors": 0}
        self._last_reject = None  # (raw, time) of the last rejected unreadable code
        self._last_accepted = None  # (QR text, time, account) of the last accepted code
        self.crash = None         # an exception that stopped one of the loop's tasks
        self.warning_reported = None  # the last service warning reported (LOG_NEARLY_FULL, ...)
        self.resting_shown = None   # (pattern, lines) the display was last told to rest on
        self.shown_at = None        # ticks_ms of the decision on show, None when none is
        self.recovered = self._recover_counters()
        self.heapwatch = heapwatch.HeapWatch(getattr(board, "code_heap", 0))

    # -- loading what the depot pushed -------------------------------------------------------

    def _load_config(self):
        from validator import config
        path = self.root + "/config.fvs"
        if atomicfile.exists(path):
            try:
                return config.Config.load(path, self.operator_keys, self._not_before())
            except config.ConfigError as e:
                # another kind of file, damaged, another operator's, an expired operator key:
                # the defaults have no fare table, so say so (service warning, INFO)
                self.file_errors["config"] = e.reason
            except OSError:   # the flash fails reading it: the same, and the reason says so
                self.file_errors["config"] = FLASH_ERROR
        return config.Config()

    def _load_keyring(self):
        from validator import keyring
        path = self.root + "/keyring.fvs"
        if atomicfile.exists(path):
            try:
                return keyring.KeyRing.load(path, self.operator_keys, self._not_before(),
                                            tables=self.root + "/tables")
            except keyring.KeyRingError as e:
                self.file_errors["keyring"] = e.args[0] if e.args else "MALFORMED"
            except OSError:
                self.file_errors["keyring"] = FLASH_ERROR
        return keyring.KeyRing()

    def _not_before(self):
        """The time to check operator key expiry against: the clock, or when it is not set
        since power-up, the last time it persisted (the real time is not earlier)."""
        now = self.clock.now()
        return now if now is not None else self.clock.floor

    def _recover_counters(self):
        """Count rides the log has but the counters missed (a cut between append and commit)."""
        from validator import triplog
        start = max(self.state.log_seq + 1, self.log.first_seq)
        added = 0
        while start <= self.log.last_seq:
            raws = self.log.read(start, 4096)
            if not raws:
                break
            recs = []
            for raw in raws:
                r = triplog.decode(raw)
                recs.append((r["seq"], r))
            added += self.policy.recover(recs)
            start = recs[-1][0] + 1
        return added

    # -- one tap ----------------------------------------------------------------------------

    def tap_qr(self, text):
        t0 = time.ticks_us()
        now = self.clock.now()
        if now is None:
            return self._finish(KIND_QR, reasons.SYNC_REQUIRED, None, now, t0, text)
        last = self._last_accepted
        if last is not None and last[0] == text and 0 <= now - last[1] <= self.config.repeat_window:
            # The scanner reads the held phone again: the very code accepted seconds ago, so no
            # second signature check (most of a tap's time), no charge, no record.
            self.counters["taps"] += 1
            self.counters["repeats"] += 1
            return Result(KIND_QR, True, reasons.ALREADY_VALIDATED, 0, None,
                          time.ticks_diff(time.ticks_us(), t0), last[2])
        reason, token = tokens.verify_qr(text, self.keyring, now, self.cache)
        result = self._finish(KIND_QR, reason, token, now, t0, text)
        if result.reason == reasons.OK:
            self._last_accepted = (text, now, result.account)
        return result

    def tap_nfc(self, exchange, uid=b""):
        """One NFC tap through `exchange(apdu) -> response`; `uid`: the card's or phone's
        anticollision id (a refusal of the same one within seconds is logged once)."""
        t0 = time.ticks_us()
        now = self.clock.now()
        key = b"nfc:" + uid
        if now is None:
            return self._finish(KIND_NFC, reasons.SYNC_REQUIRED, None, now, t0, key)
        reason, token = tokens.read_nfc(exchange, self.keyring, self.reader_id, now,
                                        self.board.random(16), self.cache)
        if reason == reasons.NFC_FAILED:  # the phone left: nothing to decide, nothing to log
            return Result(KIND_NFC, False, reason, us=time.ticks_diff(time.ticks_us(), t0))
        return self._finish(KIND_NFC, reason, token, now, t0, key)

    def tap_unsupported(self, uid):
        """A card in the NFC field that cannot be ours (no ISO-DEP): refused, logged once."""
        t0 = time.ticks_us()
        return self._finish(KIND_NFC, reasons.UNSUPPORTED, None, self.clock.now(), t0,
                            b"nfc:" + uid)

    def _finish(self, kind, reason, token, now, t0, raw):
        from validator import policy, triplog
        cfg = self.config
        if reason == reasons.READER_ERROR and tokens.last_error is not None:
            self.note_fault("tap " + kind, tokens.last_error)   # (no heap, flash: say which)
            tokens.last_error = None
        if token is not None:
            try:
                d = self.policy.decide(token, now)
            except OSError:  # the deny list's flash could not be read: refuse, log, go on
                self.counters["errors"] += 1
                d = policy.Decision(False, reasons.READER_ERROR, record=True, token=token,
                                    now=now, line=cfg.line, stop=cfg.stop)
        else:
            # Unreadable or unverifiable: logged once (a held phone is read many times a second).
            again = self._last_reject is not None and self._last_reject[0] == raw \
                and now is not None and 0 <= now - self._last_reject[1] <= REJECT_REPEAT_S
            d = policy.Decision(False, reason, record=now is not None and not again,
                                now=now, line=cfg.line, stop=cfg.stop)
            if d.record:
                self._last_reject = (raw, now)
        seq = None
        if d.record:
            state = self.log.state
            if state == "full":
                if d.accepted:
                    d = policy.Decision(False, reasons.LOG_FULL, record=False, token=token,
                                        now=now, line=cfg.line, stop=cfg.stop)
            else:
                rec = d.trip_record()
                if token is None:
                    rec["kind"] = kind
                try:
                    seq = self.log.append(rec)  # durable before anyone sees green
                except triplog.LogFull:
                    d = policy.Decision(False, reasons.LOG_FULL, record=False, token=token,
                                        now=now, line=cfg.line, stop=cfg.stop)
                except (OSError, ValueError, triplog.LogError, MemoryError) as e:
                    self.note_fault("trip log", e)   # nothing written: nothing charged
                    d = policy.Decision(False, reasons.READER_ERROR, record=False, token=token,
                                        now=now, line=cfg.line, stop=cfg.stop)
        if seq is not None or not d.record:
            self.policy.commit(d, seq or 0)
        us = time.ticks_diff(time.ticks_us(), t0)
        self.counters["taps"] += 1
        if d.reason == reasons.ALREADY_VALIDATED:
            self.counters["repeats"] += 1
        elif d.accepted:
            self.counters["accepted"] += 1
        else:
            self.counters["rejected"] += 1
        return Result(kind, d.accepted, d.reason, d.fare if d.accepted else 0, seq, us,
                      token.account if token is not None else None)

    # -- what the depot sees and changes (validator.sync) -----------------------------------

    def info(self):
        log = self.log
        dl = self.denylist
        status, degraded = self.policy.reader_status(self.clock.now())
        try:
            st = os.statvfs(self.root)
            fs_free = st[0] * st[3]
        except OSError:
            fs_free = 0
        return {"reader_id": self.reader_id, "firmware": FIRMWARE_VERSION,
                "board": self.board.name, "time": self.clock.now(),
                "synced_at": self.clock.synced_at, "log_first": log.first_seq,
                "log_last": log.last_seq, "ack": log.ack_seq, "log_free": log.free_bytes,
                "log_state": log.state, "log_error": getattr(log, "error", None),
                "fs_free": fs_free,
                "deny_version": dl.version, "deny_count": dl.count, "deny_built": dl.built_at,
                "keyring_version": self.keyring.version,
                "config_version": self.config.version, "file_errors": dict(self.file_errors),
                "status": reasons.name(status), "degraded": degraded,
                "counters": self.counters, "riders": self.state.stats(), "heap": self.heap(),
                "fault": self.fault}

    def heap(self):
        """Heap health (validator/heapwatch.py): the reader's live data, free total, largest free
        block, lowest free seen since boot."""
        return self.heapwatch.status()

    def note_fault(self, where, e):
        """Remember the reader's own fault (no heap, flash error) for INFO and the depot, and
        report it on the board's console."""
        self.counters["errors"] += 1
        self.fault = {"where": where, "error": repr(e)[:120], "time": self.clock.now()}
        self.board.report({"ev": "fault", "where": where, "error": self.fault["error"]})

    def install(self, kind, version, path):
        """Install a pushed signed file (verified here, swapped atomically). Returns a
        validator.signedfile reason string, or OUT_OF_MEMORY / FLASH_ERROR when the reader's
        own heap or flash failed it: then everything is as before (flash and RAM), the file at
        `path` is untouched, and the same install can be tried again."""
        try:
            reason = self._install(kind, path)
        except MemoryError as e:
            self.note_fault("install " + kind, e)
            return OUT_OF_MEMORY
        except OSError as e:
            self.note_fault("install " + kind, e)
            return FLASH_ERROR
        finally:
            self.heapwatch.sample()
        if reason == WRITE_FAILED:   # the deny list's flash write failed (its list is intact)
            self.note_fault("install " + kind, OSError(reason))
            return FLASH_ERROR
        return reason

    def _install(self, kind, path):
        from validator import config, keyring, signedfile
        now = self.clock.now()
        when = self._not_before()  # operator keys are checked for expiry even if now is None
        if kind in ("denylist", "denylist_delta"):
            return self.denylist.install(path, self.operator_keys, when)
        if kind == "config":
            try:
                cfg = config.Config.load(path, self.operator_keys, when)
            except config.ConfigError as e:
                return e.reason
            if cfg.version <= self.config.version:
                return signedfile.OLD_VERSION
            os.rename(path, self.root + "/config.fvs")   # the commit point: RAM follows
            self.config = cfg
            self.policy.set_config(cfg)
            self.file_errors.pop("config", None)
            return signedfile.OK
        if kind == "keyring":
            tables = self.root + "/tables"
            try:
                # existing table files are reused when the signed ring names the same digest
                ring = keyring.KeyRing.load(path, self.operator_keys, when, tables=tables,
                                            prepare=False)
            except keyring.KeyRingError as e:
                return e.args[0]
            if ring.version <= self.keyring.version:
                return signedfile.OLD_VERSION
            # The new keys' tables first (new files, which a retry reuses), then the rename that
            # commits; the old ring serves until then, on flash and in RAM.
            ring.build_tables(tables, now)
            self.keyring.close()
            os.rename(path, self.root + "/keyring.fvs")
            ring.moved(self.root + "/keyring.fvs")
            self.keyring = ring
            self.cache.clear()  # credentials verified under the old ring are checked again
            self.file_errors.pop("keyring", None)
            # Past the commit point the ring is installed: tidying the tables and opening the
            # first keys' are best effort (noted if they fail; the next install or boot redoes
            # them), and the install is OK.
            try:
                ring.remove_stale_tables(tables)
                if now is not None:
                    ring.prepare(now)
            except (MemoryError, OSError) as e:
                self.note_fault("install keyring (after it was committed)", e)
            return signedfile.OK
        return signedfile.WRONG_KIND

    def set_time(self, t, allow_backwards=False):
        r = self.clock.set(t, allow_backwards)
        if r == "OK" and len(self.keyring):
            self.keyring.prepare(t)
        return r

    def reboot(self):
        self.board.reset_requested = True

    def before_reclaim(self):
        """The trip log is about to free acknowledged records: counters must not need them."""
        self.policy.checkpoint(self.clock.now())


# -- the loop -----------------------------------------------------------------------------------

def show(board, result):
    """Beep, light and display for a decision (the board renders the pattern)."""
    pattern = "accept" if result.accepted else "reject"
    if result.reason == reasons.ALREADY_VALIDATED:
        pattern = "already"   # green, but a different beep: nothing was charged
    elif result.reason in (reasons.SYNC_REQUIRED, reasons.LOG_FULL, reasons.READER_ERROR):
        pattern = "service"
    zh, en = reasons.message(result.reason)
    lines = [zh, en]
    if result.accepted and result.fare:
        lines.append("%d.%02d" % (result.fare // 100, result.fare % 100))
    board.display.show(pattern, lines)


def _done(reader, result):
    show(reader.board, result)
    reader.board.report(result.event())
    reader.shown_at = time.ticks_ms()
    if result.reason in (reasons.SYNC_REQUIRED, reasons.LOG_FULL, reasons.READER_ERROR):
        reader.resting_shown = None  # the board now rests on "service": say again what is true
    _watch_status(reader)  # a log warning is reported at once; the display waits for the hold


async def _qr_task(reader, scanner):
    import asyncio
    while True:
        line = scanner.poll()
        if line is None:
            await asyncio.sleep_ms(QR_POLL_MS)
            continue
        _done(reader, reader.tap_qr(line))
        await asyncio.sleep_ms(0)


async def _nfc_task(reader, nfc):
    import asyncio
    present = None  # the target we already answered: wait until it leaves the field
    # a front end that failed to start (drivers/links.py: the driver's `ready` is False, its
    # `error` says why) is retried every NFC_RETRY_MS and reported once
    down = not getattr(nfc, "ready", True)
    if down:
        reader.counters["errors"] += 1
        reader.board.report({"ev": "fault", "where": "nfc", "error": repr(nfc.error)})
    failed = None   # the target whose exchange broke off last: "tap again" is shown once
    while True:
        await asyncio.sleep_ms(NFC_RETRY_MS if down else NFC_POLL_MS)
        try:
            if down:
                nfc.begin()
                down = False
                reader.board.report({"ev": "nfc", "state": "ready"})
            target = nfc.poll()
        except Exception as e:  # noqa: BLE001 -- a confused front end: start it again at once
            if not down:
                try:
                    nfc.begin()
                    continue
                except Exception as e2:  # noqa: BLE001 -- dead or unplugged: retried later,
                    e = e2               # while QR taps and the depot sync go on without it
                reader.counters["errors"] += 1
                reader.board.report({"ev": "fault", "where": "nfc", "error": repr(e)})
            down = True
            continue
        if target is None:
            present = None
            continue
        if present is not None and target.uid == present:
            continue
        present = target.uid
        if not target.iso14443_4:
            # a card without ISO-DEP (a MIFARE Classic transit card, a tag): not one of ours
            result = reader.tap_unsupported(target.uid)
        else:
            result = reader.tap_nfc(nfc.exchange, target.uid)
            if result.reason == reasons.NFC_FAILED:
                present = None  # moved away before the end: try again if it comes back
                if failed == target.uid:  # hovering at the edge of the field: no beep storm
                    reader.board.report(result.event())
                    continue
                failed = target.uid
            else:
                failed = None
        _done(reader, result)


async def _sync_task(reader, server):
    import asyncio
    while True:
        busy = server.poll()
        if server.last_fault is not None:  # the reader's own fault while serving: report it
            e, server.last_fault = server.last_fault, None
            reader.note_fault("sync", e)
        await asyncio.sleep_ms(0 if busy else SYNC_POLL_MS)


LOG_WARNINGS = {"nearly_full": ("LOG_NEARLY_FULL", ("记录将满,请同步", "Service: log nearly full")),
                "full": ("LOG_FULL", reasons.message(reasons.LOG_FULL))}
# A key ring or configuration that was given to the reader but does not load: without it every
# credential is refused (no issuer keys) or every tap has no fare, so the reader says why
FILE_WARNINGS = (
    ("keyring", "KEYRING_NOT_LOADED", ("暂停服务:密钥文件无效", "Service: key ring not loaded")),
    ("config", "CONFIG_NOT_LOADED", ("暂停服务:配置文件无效", "Service: config not loaded")))


READY_LINES = ("请扫码或刷卡", "Scan code or tap")
DECISION_HOLD_MS = 1500  # a decision stays on show this long before a new state replaces it


def _resting(reader):
    """What the reader shows between taps: (pattern, lines, warning or None). A nearly full log
    is a warning for the driver, not out of service: the idle light, the warning as text."""
    log_state = reader.log.state
    if log_state == "full":
        return "service", LOG_WARNINGS["full"][1], LOG_WARNINGS["full"][0]
    if log_state == "error":
        return "service", reasons.message(reasons.READER_ERROR), "LOG_ERROR"
    for kind, warning, lines in FILE_WARNINGS:
        if kind in reader.file_errors:
            return "service", lines, warning
    status, _ = reader.policy.reader_status(reader.clock.now())
    if status != reasons.OK:
        return "service", reasons.message(status), None
    if log_state == "nearly_full":
        return "idle", LOG_WARNINGS["nearly_full"][1], LOG_WARNINGS["nearly_full"][0]
    return "idle", READY_LINES, None


def _watch_status(reader, force=False):
    """Report a log warning as soon as it arises (so the bus goes to the depot before rides are
    refused), and show the resting state when it changes: back to idle once the depot synced
    or freed the log, never over a decision still on show."""
    pattern, lines, warning = _resting(reader)
    if warning != reader.warning_reported:
        reader.warning_reported = warning
        if warning is not None:
            event = {"ev": "service", "warning": warning}
            for kind, name, _ in FILE_WARNINGS:
                if name == warning:
                    event["error"] = reader.file_errors[kind]  # why it did not load
            reader.board.report(event)
    if not force:
        if (pattern, lines) == reader.resting_shown:
            return
        if reader.shown_at is not None:
            if time.ticks_diff(time.ticks_ms(), reader.shown_at) < DECISION_HOLD_MS:
                return
            reader.shown_at = None  # (ticks wrap after days: compare only while it is recent)
    reader.resting_shown = (pattern, lines)
    reader.board.display.show(pattern, lines)


async def _housekeeping(reader):
    import asyncio
    while True:
        reader.board.feed_watchdog()
        # erase a freed or next trip log segment (45 ms typical, 400 ms worst) while idle, so
        # that neither a tap nor the depot's ACK has to
        try:
            reader.log.housekeeping(1)
        except OSError:
            pass  # a failing log flash: the taps refuse with READER_ERROR and say so
        now = reader.clock.now()
        if now is not None:
            reader.policy.maintain(now)
        _watch_status(reader)
        reader.heapwatch.sample()   # the low-water mark of the free heap (a collection: ~ms)
        await asyncio.sleep_ms(500)


async def _guarded(reader, coro):
    """Run one of the loop's tasks; an exception in it stops the whole reader, which the entry
    point then restarts from flash (a task that died quietly would leave a reader that looks
    alive but no longer reads codes)."""
    try:
        await coro
    except Exception as e:  # noqa: BLE001
        if reader.crash is None:
            reader.crash = e


async def _main(reader, board):
    import asyncio
    from validator import sync
    coros = []
    qr = board.qr_scanner()
    if qr is not None:
        coros.append(_qr_task(reader, qr))
    try:
        nfc = board.nfc_reader()
    except Exception as e:  # noqa: BLE001 -- no NFC link at all: serve QR and the depot
        reader.counters["errors"] += 1
        board.report({"ev": "fault", "where": "nfc", "error": repr(e)})
        nfc = None
    if nfc is not None:
        coros.append(_nfc_task(reader, nfc))
    uart = board.uart("sync")
    if uart is not None:
        coros.append(_sync_task(reader, sync.SyncServer(uart, reader)))
    coros.append(_housekeeping(reader))
    coros.extend(board.tasks(reader))
    tasks = [asyncio.create_task(_guarded(reader, c)) for c in coros]
    board.report({"ev": "ready", "reader_id": reader.reader_id, "firmware": FIRMWARE_VERSION,
                  "log_last": reader.log.last_seq, "recovered": reader.recovered})
    _watch_status(reader, force=True)
    while not board.stopping and not board.reset_requested and reader.crash is None:
        await asyncio.sleep_ms(20)
    for t in tasks:
        t.cancel()


class NotSetUp:
    """Runs in place of a reader on a board that is not set up to be one: answers the bench's
    info, keeps the watchdog fed and the REPL reachable for the technician."""

    def __init__(self, board, why):
        self.board = board
        self.why = why
        self.crash = None

    def info(self):
        return {"reader_id": None, "firmware": FIRMWARE_VERSION, "board": self.board.name,
                "status": "NOT_SET_UP", "error": self.why}


NOT_SET_UP_LINES = ("暂停服务:未设置", "Service: not set up")


async def _out_of_service(stub, board):
    import asyncio
    tasks = [asyncio.create_task(_guarded(stub, c)) for c in board.tasks(stub)]
    board.report({"ev": "service", "warning": "NOT_SET_UP", "error": stub.why})
    board.display.show("service", NOT_SET_UP_LINES)
    while not board.stopping and not board.reset_requested and stub.crash is None:
        board.feed_watchdog()
        await asyncio.sleep_ms(100)
    for t in tasks:
        t.cancel()


def run(board):
    """Build the reader from flash and serve until the board stops. Returns True when the depot
    asked for a reboot."""
    import asyncio
    from validator import watchdog
    board.reset_requested = False
    watchdog.feed = board.feed_watchdog  # fed through long installs too (validator/watchdog.py)
    try:
        reader = Reader(board)
    except SetupError as e:
        asyncio.run(_out_of_service(NotSetUp(board, e.args[0]), board))
        return board.reset_requested
    asyncio.run(_main(reader, board))
    if reader.crash is not None:
        raise reader.crash
    return board.reset_requested
