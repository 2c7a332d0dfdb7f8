# The counters the policy keeps between taps and across reboots:
#   per credential: highest accepted counter, rides and amount accepted offline, last accepted
#                   time, valid-until (for pruning)
#   per account:    last accepted time (pass-back), last paid time (free transfer)
#
# RAM: two validator.ridertable tables (fixed-width records in preallocated bytearrays: 36 bytes a
# credential, 16 an account), so the heap cost is fixed by the caps.
#
# Flash (littlefs): a snapshot `riders.snap` (replaced atomically: temp file + rename) and a
# journal of after-images, one small file per accepted tap in slots `rj00`, `rj01`, ... Each slot
# file is 68 bytes, which littlefs keeps inline in the directory's metadata log: rewriting it
# costs about 150 programmed bytes and rarely an erase, where a flushed append to a growing file
# rewrites a whole 4 KiB block every tap. A slot carries the snapshot generation it continues and
# its index; loading reads the snapshot, then the slots of that generation in order up to the
# first missing, stale or damaged one. When the slots are used up (or earlier, from maintain()
# when the reader is idle) the tables go to a new snapshot, which makes every slot stale at once.
#
# Bounds: entries of expired credentials and accounts past their windows are pruned at each
# snapshot; when a table is full, the quarter used least recently (oldest last accepted time) is
# dropped, deterministically, so replaying the journal rebuilds exactly the same tables.
#
# A tap whose trip record is on flash but whose slot is not (power cut between the two) comes back
# through validator.policy.recover from the trip log; `log_seq` says how far the counters go.
import hashlib
import os
import struct

from validator import ridertable
from validator.ridertable import KEY

U32 = 0xFFFFFFFF
CRED_VAL = "<QQIII"            # counter, amount, last accepted, rides, valid_until
CRED_LAST = 16                 # offset of `last` in the value
ACCT_VAL = "<II"               # last accepted, last paid (0 = never)
ACCT_LAST = 0
J_HEAD = "<BIHI"               # journal slot: kind 1, generation, index, log seq
J_BODY = 64                    # head 11 | ckey 8 | cval 28 | akey 8 | aval 8 | pad 1
J_REC = 68                     # body + sha256(body)[:4]
SNAP_HEAD = "<4sIIIII"         # magic, generation, log_seq, n_creds, n_accounts, evictions
SNAP_MAGIC = b"FRS1"


def cred_key(cred_id):
    # A hash, not a prefix: the issuer may hand out ids with structure (a date, a sequence), and
    # 64 bits of SHA-256 make a collision among a few hundred entries practically impossible.
    return hashlib.sha256(cred_id).digest()[:KEY]


def account_key(account):
    return account.to_bytes(KEY, "big")


class RiderState:
    def __init__(self, directory, max_credentials=400, max_accounts=200, journal_slots=32):
        self.dir = directory
        self.snap_path = directory + "/riders.snap"
        self.creds = ridertable.Table(CRED_VAL, max_credentials, CRED_LAST)
        self.accounts = ridertable.Table(ACCT_VAL, max_accounts, ACCT_LAST)
        self.slots = journal_slots
        # How long entries outlive their use (seconds); the policy sets them from its config.
        self.account_keep = 3600      # after the account's last accepted ride
        self.cred_keep = 3600         # after the credential's valid_until
        self.gen = 0
        self.log_seq = 0              # highest trip-log sequence number whose tap is counted here
        self.evictions = 0
        self.jcount = 0               # slots used in the current generation
        self.load_status = "empty"    # "empty", "ok", "corrupt" (unreadable snapshot: empty)
        self.write_errors = 0
        self.snapshots = 0
        self._need_snapshot = False   # a slot write failed: RAM is ahead of flash
        self._load()

    # --- lookups ---

    def credential(self, cred_id):
        """(counter, amount, last, rides, valid_until) or None."""
        return self.creds.get(cred_key(cred_id))

    def account(self, account):
        """(last accepted, last paid or 0) or None."""
        return self.accounts.get(account_key(account))

    # --- updates ---

    def record_ride(self, cred_id, account, counter, now, fare, valid_until, seq=0):
        """Count one accepted ride and write it to flash. Returns True when it is durable, False
        if the flash write failed (the RAM tables are updated anyway; the next write is a full
        snapshot)."""
        ck = cred_key(cred_id)
        ak = account_key(account)
        c = self.creds.get(ck)
        if c is None:
            cval = (counter, fare, now, 1, min(valid_until, U32))
        else:
            cval = (max(counter, c[0]), c[1] + fare, now, min(c[3] + 1, U32), min(valid_until, U32))
        a = self.accounts.get(ak)
        aval = (now, now if fare > 0 else (a[1] if a else 0))
        self.evictions += self.creds.put(ck, cval) + self.accounts.put(ak, aval)
        if seq > self.log_seq:
            self.log_seq = seq
        try:
            if self._need_snapshot or self.jcount >= self.slots:
                self.snapshot(now)
            else:
                body = (struct.pack(J_HEAD, 1, self.gen, self.jcount, seq) + ck
                        + struct.pack(CRED_VAL, *cval) + ak + struct.pack(ACCT_VAL, *aval) + b"\0")
                with open(self._slot(self.jcount), "wb") as f:
                    f.write(body + hashlib.sha256(body).digest()[:4])
                self.jcount += 1
            return True
        except OSError:
            self.write_errors += 1
            self._need_snapshot = True
            return False

    def maintain(self, now):
        """Idle-time work: write a snapshot once half the journal slots are used, so that taps
        rarely pay for one. Returns True if it wrote."""
        if self.jcount < self.slots // 2 and not self._need_snapshot:
            return False
        try:
            self.snapshot(now)
            return True
        except OSError:
            self.write_errors += 1
            self._need_snapshot = True
            return False

    def snapshot(self, now=None):
        """Prune (if `now` is given) and write all tables to a new snapshot generation, which
        makes every journal slot stale. Raises OSError if the flash fails."""
        if now is not None:
            ck = self.cred_keep
            ak = self.account_keep
            self.creds.prune(lambda v: v[4] + ck >= now)
            self.accounts.prune(lambda v: now - v[0] <= ak)
        gen = self.gen + 1
        h = hashlib.sha256()
        tmp = self.snap_path + ".tmp"
        with open(tmp, "wb") as f:
            head = struct.pack(SNAP_HEAD, SNAP_MAGIC, gen, self.log_seq, self.creds.n,
                               self.accounts.n, self.evictions)
            for part in (head, self.creds.mv[:self.creds.n * self.creds.r],
                         self.accounts.mv[:self.accounts.n * self.accounts.r]):
                f.write(part)
                h.update(part)
            f.write(h.digest()[:8])
        os.rename(tmp, self.snap_path)
        self.gen = gen
        self.jcount = 0
        self.snapshots += 1
        self._need_snapshot = False

    def close(self):
        pass  # every write is complete when it returns; nothing is held open

    def stats(self):
        return {"credentials": self.creds.n, "accounts": self.accounts.n,
                "evictions": self.evictions, "generation": self.gen, "journal": self.jcount,
                "log_seq": self.log_seq, "load": self.load_status,
                "write_errors": self.write_errors, "snapshots": self.snapshots}

    # --- flash ---

    def _slot(self, i):
        return "%s/rj%02d" % (self.dir, i)

    def _load(self):
        try:
            f = open(self.snap_path, "rb")
        except OSError:
            f = None
        if f is not None:
            try:
                ok = self._read_snapshot(f)
            except OSError:
                ok = False
            finally:
                f.close()
            if not ok:
                self.load_status = "corrupt"
                self.creds.n = self.accounts.n = 0
                self.gen = self.log_seq = self.evictions = 0
                # Continue above every generation a slot still carries, so no old slot replays.
                self.gen = self._max_slot_gen()
                self._need_snapshot = True
        rec = bytearray(J_REC)
        for i in range(self.slots):
            if self._need_snapshot:
                break
            try:
                with open(self._slot(i), "rb") as f:
                    n = f.readinto(rec)
            except OSError:
                break
            if n != J_REC or hashlib.sha256(rec[:J_BODY]).digest()[:4] != rec[J_BODY:]:
                # Damaged: a later slot may still hold this generation, so the next write
                # starts a new generation rather than continue after the damage.
                self._need_snapshot = True
                break
            kind, gen, idx, seq = struct.unpack_from(J_HEAD, rec, 0)
            if gen != self.gen:
                break  # the end of the journal: slots of older generations are stale
            if kind != 1 or idx != i:
                self._need_snapshot = True
                break
            self._replay(rec, seq)
            self.jcount = i + 1
        if self.load_status == "empty" and self.jcount:
            self.load_status = "ok"

    def _max_slot_gen(self):
        top = 0
        for i in range(self.slots):
            try:
                with open(self._slot(i), "rb") as f:
                    head = f.read(7)
            except OSError:
                continue
            if len(head) == 7:
                top = max(top, struct.unpack_from("<I", head, 1)[0])
        return top

    def _read_snapshot(self, f):
        hs = struct.calcsize(SNAP_HEAD)
        head = f.read(hs)
        if len(head) != hs:
            return False
        magic, gen, log_seq, nc, na, ev = struct.unpack(SNAP_HEAD, head)
        if magic != SNAP_MAGIC:
            return False
        h = hashlib.sha256(head)
        self.evictions = ev
        ok = self._read_table(f, self.creds, nc, h) and self._read_table(f, self.accounts, na, h)
        if not ok or f.read(9) != h.digest()[:8]:
            return False
        self.gen = gen
        self.log_seq = log_seq
        self.load_status = "ok"
        return True

    def _read_table(self, f, t, n, h):
        t.n = 0
        if n <= t.cap:
            mv = t.mv[:n * t.r]
            if f.readinto(mv) != n * t.r:
                return False
            h.update(mv)
            t.n = n
            return True
        # More entries than this build's cap (the cap was lowered): keep the `cap` used most
        # recently. First pass: hash and collect the last-used times; second: insert those.
        start = f.tell()
        rec = bytearray(t.r)
        lasts = []
        for _ in range(n):
            if f.readinto(rec) != t.r:
                return False
            h.update(rec)
            lasts.append(struct.unpack_from("<I", rec, t.last_off)[0])
        lasts.sort()
        cut = lasts[n - t.cap]
        ties = sum(1 for x in lasts[n - t.cap:] if x == cut)  # entries at `cut` we may keep
        lasts = None
        end = f.tell()
        f.seek(start)
        for _ in range(n):
            f.readinto(rec)
            last = struct.unpack_from("<I", rec, t.last_off)[0]
            if last < cut or (last == cut and ties == 0):
                continue
            if last == cut:
                ties -= 1
            t.put_raw(bytes(rec[:KEY]), bytes(rec[KEY:]))
        self.evictions += n - t.n
        f.seek(end)
        return True

    def _replay(self, rec, seq):
        o = struct.calcsize(J_HEAD)
        ck = bytes(rec[o:o + KEY])
        o += KEY
        cval = bytes(rec[o:o + self.creds.vlen])
        o += self.creds.vlen
        ak = bytes(rec[o:o + KEY])
        o += KEY
        aval = bytes(rec[o:o + self.accounts.vlen])
        self.evictions += self.creds.put_raw(ck, cval) + self.accounts.put_raw(ak, aval)
        if seq > self.log_seq:
            self.log_seq = seq
