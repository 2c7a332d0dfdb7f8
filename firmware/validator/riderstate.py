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
# file is 76 bytes, which littlefs keeps inline in the directory's metadata log: rewriting it
# costs about 150 programmed bytes and rarely an erase, where a flushed append to a growing file
# rewrites a whole 4 KiB block every tap. A slot carries the snapshot generation it continues and
# its index; loading reads the snapshot, then the slots of that generation in order up to the
# first missing, stale or damaged one. When the slots are used up (or earlier, from maintain()
# when the reader is idle) the tables go to a new snapshot, which makes every slot stale at once.
#
# Bounds: an entry is needed until `cred_keep` after the credential's valid_until, or
# `account_keep` after the account's last ride (the policy sets it past every window). Entries
# no longer needed are pruned at each snapshot. A new entry in a full table first drops every
# entry no longer needed; only if there is none, the one used least recently (counted in
# `evicted_live`: the table is too small for the traffic). The choice depends only on the table
# and the ride (its time, and the keep times, which each slot carries), so replaying the journal
# rebuilds exactly the same tables.
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
CRED_UNTIL = 24                # offset of `valid_until`
ACCT_VAL = "<II"               # last accepted, last paid (0 = never)
ACCT_LAST = 0
J_KIND = 2                     # (kind 1: the 68-byte slot without keep times)
J_HEAD = "<BIHI"               # journal slot: kind, generation, index, log seq
J_KEEPS = "<II"                # cred_keep, account_keep in effect when the slot was written
J_BODY = 72                    # head 11 | ckey 8 | cval 28 | akey 8 | aval 8 | keeps 8 | pad 1
J_REC = 76                     # body + sha256(body)[:4]
SNAP_HEAD = "<4sIIIIII"        # magic, generation, log_seq, n_creds, n_accounts, evictions,
SNAP_MAGIC = b"FRS2"           #   evicted_live
SNAP_HEAD_V1 = "<4sIIIII"      # FRS1 (no evicted_live): still read


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
        self.creds = ridertable.Table(CRED_VAL, max_credentials, CRED_LAST, CRED_UNTIL)
        self.accounts = ridertable.Table(ACCT_VAL, max_accounts, ACCT_LAST, ACCT_LAST)
        self.slots = journal_slots
        # How long entries outlive their use (seconds); the policy sets them from its config.
        self.account_keep = 3600      # after the account's last accepted ride
        self.cred_keep = 3600         # after the credential's valid_until
        self.gen = 0
        self.log_seq = 0              # highest trip-log sequence number whose tap is counted here
        self.evictions = 0            # entries dropped to make room in a full table
        self.evicted_live = 0         # of which still needed (an under-sized table)
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
        keeps = (min(self.cred_keep, U32), min(self.account_keep, U32))
        self._put(ck, cval, ak, aval, now, keeps)
        if seq > self.log_seq:
            self.log_seq = seq
        try:
            if self._need_snapshot or self.jcount >= self.slots:
                self.snapshot(now)
            else:
                body = (struct.pack(J_HEAD, J_KIND, self.gen, self.jcount, seq) + ck
                        + struct.pack(CRED_VAL, *cval) + ak + struct.pack(ACCT_VAL, *aval)
                        + struct.pack(J_KEEPS, *keeps) + b"\0")
                with open(self._slot(self.jcount), "wb") as f:
                    f.write(body + hashlib.sha256(body).digest()[:4])
                self.jcount += 1
            return True
        except OSError:
            self.write_errors += 1
            self._need_snapshot = True
            return False

    def _put(self, ck, cval, ak, aval, now, keeps):
        # The same code path for a ride and for its replay from a slot, so both drop the same.
        d = self.creds.put(ck, cval, now - keeps[0])
        self.evictions += d[0]
        self.evicted_live += d[1]
        d = self.accounts.put(ak, aval, now - keeps[1])
        self.evictions += d[0]
        self.evicted_live += d[1]

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
                               self.accounts.n, self.evictions, self.evicted_live)
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
                "evictions": self.evictions, "evicted_live": self.evicted_live,
                "generation": self.gen, "journal": self.jcount,
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
                self.creds.clear()
                self.accounts.clear()
                self.gen = self.log_seq = self.evictions = self.evicted_live = 0
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
            if kind != J_KIND or idx != i:
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
        hs = struct.calcsize(SNAP_HEAD_V1)
        head = f.read(hs)
        if len(head) != hs:
            return False
        magic, gen, log_seq, nc, na, ev = struct.unpack(SNAP_HEAD_V1, head)
        live = 0
        if magic == SNAP_MAGIC:
            more = f.read(4)
            if len(more) != 4:
                return False
            head += more
            live = struct.unpack("<I", more)[0]
        elif magic != b"FRS1":  # FRS1: the previous firmware's, without evicted_live
            return False
        h = hashlib.sha256(head)
        self.evictions = ev
        self.evicted_live = live
        ok = self._read_table(f, self.creds, nc, h) and self._read_table(f, self.accounts, na, h)
        if not ok or f.read(9) != h.digest()[:8]:
            return False
        self.gen = gen
        self.log_seq = log_seq
        self.load_status = "ok"
        return True

    def _read_table(self, f, t, n, h):
        t.clear()
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
        # Without a clock at load, nothing says the dropped entries were no longer needed.
        self.evictions += n - t.n
        self.evicted_live += n - t.n
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
        o += self.accounts.vlen
        keeps = struct.unpack_from(J_KEEPS, rec, o)
        now = struct.unpack_from("<I", aval, ACCT_LAST)[0]  # the account's last ride: this one
        self._put(ck, struct.unpack(CRED_VAL, cval), ak, struct.unpack(ACCT_VAL, aval), now,
                  keeps)
        if seq > self.log_seq:
            self.log_seq = seq
