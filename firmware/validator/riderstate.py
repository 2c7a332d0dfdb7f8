# The counters the policy keeps between taps and across reboots:
#   per credential: highest accepted counter, rides and amount accepted offline, last accepted
#                   time, valid-until (for pruning)
#   per account:    last accepted time (pass-back), last paid time (free transfer)
#
# In RAM each table is one preallocated bytearray of fixed-width records sorted by key (binary
# search, no per-entry objects: 36 bytes a credential, 16 an account), so the heap cost is fixed by
# the caps. On flash: a snapshot (`riders.snap`, replaced atomically) plus an append-only journal
# (`riders.jnl`) of 64-byte after-images, one per accepted tap, flushed before record_ride returns.
# Every `snapshot_every` taps the tables go to a new snapshot and the journal restarts. Loading
# reads the snapshot and replays the journal; a journal left from an older snapshot generation is
# ignored (its taps are in the snapshot), a torn last record is dropped (validator.policy.recover
# takes that tap back from the trip log, which is written first).
#
# Bounds: entries of expired credentials and accounts past their windows are pruned at each
# snapshot; when a table is full, the quarter used least recently (oldest last accepted time) is
# dropped, deterministically, so a replay of the journal rebuilds exactly the same tables.
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
J_REC = 64                     # journal record: kind 1 | seq 4 | ckey 8 | cval 28 | akey 8 | aval 8
J_BODY = 60                    #                 | pad 3 | sha256[:4]
SNAP_HEAD = "<4sIIIII"         # magic, generation, log_seq, n_creds, n_accounts, evictions
SNAP_MAGIC = b"FRS1"


def cred_key(cred_id):
    # A hash, not a prefix: the issuer may hand out ids with structure (a date, a sequence), and
    # 64 bits of SHA-256 make a collision among a few hundred entries practically impossible.
    return hashlib.sha256(cred_id).digest()[:KEY]


def account_key(account):
    return account.to_bytes(KEY, "big")


class RiderState:
    def __init__(self, directory, max_credentials=400, max_accounts=200, snapshot_every=64):
        self.dir = directory
        self.snap_path = directory + "/riders.snap"
        self.jnl_path = directory + "/riders.jnl"
        self.creds = ridertable.Table(CRED_VAL, max_credentials, CRED_LAST)
        self.accounts = ridertable.Table(ACCT_VAL, max_accounts, ACCT_LAST)
        self.snapshot_every = snapshot_every
        # How long entries outlive their use (seconds); the policy sets them from its config.
        self.account_keep = 3600      # after the account's last accepted ride
        self.cred_keep = 3600         # after the credential's valid_until
        self.gen = 0
        self.log_seq = 0              # highest trip-log sequence number whose tap is counted here
        self.evictions = 0
        self.jcount = 0               # records in the current journal
        self.load_status = "empty"    # "empty", "ok", "corrupt" (snapshot unreadable: started empty)
        self.write_errors = 0
        self._jf = None
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
        """Count one accepted ride and journal it. Returns True when it is durable on flash,
        False if the flash write failed (the RAM tables are updated anyway)."""
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
        body = (b"\x01" + struct.pack("<I", seq) + ck + struct.pack(CRED_VAL, *cval) + ak
                + struct.pack(ACCT_VAL, *aval) + b"\0\0\0")
        try:
            self._append(body)
            self.jcount += 1
            if self.jcount >= self.snapshot_every:
                self.snapshot(now)
            return True
        except OSError:
            self.write_errors += 1
            return False

    def snapshot(self, now=None):
        """Prune (if `now` is given), write all tables to a new snapshot, restart the journal."""
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
            f.flush()
        os.rename(tmp, self.snap_path)
        self.gen = gen
        self._new_journal()

    def close(self):
        if self._jf is not None:
            try:
                self._jf.close()
            except OSError:
                pass
            self._jf = None

    def stats(self):
        return {"credentials": self.creds.n, "accounts": self.accounts.n,
                "evictions": self.evictions, "generation": self.gen, "journal": self.jcount,
                "log_seq": self.log_seq, "load": self.load_status,
                "write_errors": self.write_errors}

    # --- flash ---

    def _append(self, body):
        if self._jf is None:
            self._jf = open(self.jnl_path, "ab")
        self._jf.write(body + hashlib.sha256(body).digest()[:4])
        self._jf.flush()

    def _new_journal(self):
        self.close()
        self._jf = open(self.jnl_path, "wb")
        body = b"\x02" + struct.pack("<I", self.gen) + bytes(J_BODY - 5)
        self._jf.write(body + hashlib.sha256(body).digest()[:4])
        self._jf.flush()
        self.jcount = 0

    def _load(self):
        try:
            f = open(self.snap_path, "rb")
        except OSError:
            f = None
        if f is not None:
            try:
                if not self._read_snapshot(f):
                    self.load_status = "corrupt"
                    self.creds.n = self.accounts.n = 0
                    self.gen = self.log_seq = self.evictions = 0
            finally:
                f.close()
        # The journal continues the snapshot only if it carries the snapshot's generation.
        good_head = False
        torn = False
        try:
            with open(self.jnl_path, "rb") as f:
                rec = bytearray(J_REC)
                while True:
                    n = f.readinto(rec)
                    if n == 0:
                        break
                    if n != J_REC or hashlib.sha256(rec[:J_BODY]).digest()[:4] != rec[J_BODY:]:
                        torn = True
                        break
                    if not good_head:
                        if rec[0] != 2 or struct.unpack_from("<I", rec, 1)[0] != self.gen:
                            break
                        good_head = True
                        continue
                    if rec[0] != 1:
                        torn = True
                        break
                    self._replay(rec)
        except OSError:
            pass
        if self.load_status == "empty" and self.jcount:
            self.load_status = "ok"
        try:
            if torn and good_head:
                self.snapshot()       # keep what was read; never append after a torn record
            elif not good_head:
                self._new_journal()   # journal missing or from an older generation
        except OSError:
            self.write_errors += 1

    def _read_snapshot(self, f):
        head = f.read(struct.calcsize(SNAP_HEAD))
        if len(head) != struct.calcsize(SNAP_HEAD):
            return False
        magic, gen, log_seq, nc, na, ev = struct.unpack(SNAP_HEAD, head)
        if magic != SNAP_MAGIC:
            return False
        h = hashlib.sha256(head)
        ok = self._read_table(f, self.creds, nc, h) and self._read_table(f, self.accounts, na, h)
        if not ok or f.read(9) != h.digest()[:8]:
            return False
        self.gen = gen
        self.log_seq = log_seq
        self.evictions = ev
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
        # More entries than this build's cap (the cap was lowered): insert one by one, evicting.
        rec = bytearray(t.r)
        for _ in range(n):
            if f.readinto(rec) != t.r:
                return False
            h.update(rec)
            self.evictions += t.put_raw(bytes(rec[:KEY]), bytes(rec[KEY:]))
        return True

    def _replay(self, rec):
        seq = struct.unpack_from("<I", rec, 1)[0]
        o = 5
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
        self.jcount += 1
