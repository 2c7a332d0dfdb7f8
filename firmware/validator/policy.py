# The decision: a verified ride token (validator.tokens.RideToken) and the reader's state in, accept
# or reject with one reason code, the fare and the display message out. docs/decisions.md lists the
# rules in the order they are checked and the setting of each (validator.config).
#
# Two steps, so that nothing charged is lost to a power cut:
#   d = policy.decide(token, clock.now())   # pure: looks, changes nothing
#   seq = log.append(d.trip_record())       # if d.record: durable (the log is the truth)
#   policy.commit(d, seq)                   # counters: RAM + journal on flash
# A cut between append and commit leaves the tap in the log but not in the counters; at boot the
# app passes the log's records after `policy.state.log_seq` to `policy.recover(...)`.
from validator import reasons

RECOVER_KEEP = 3 * 86400   # valid-until assumed for a credential known only from the trip log
REJECT_MEMORY = 4          # rejected codes remembered (RAM) so that a held phone is logged once


class Decision:
    def __init__(self, accepted, reason, fare=0, record=True, token=None, now=None, line=0,
                 stop=0, degraded=False, transfer=False):
        self.accepted = accepted
        self.reason = reason
        self.fare = fare
        self.record = record              # write a trip record (False: repeats, clock unset)
        self.message = reasons.message(reason)  # (Chinese, English)
        self.token = token
        self.time = now
        self.line = line
        self.stop = stop
        self.degraded = degraded          # decided while the reader is in degraded mode
        self.transfer = transfer          # fare waived by the free-transfer window

    def trip_record(self):
        """The dict validator.triplog.TripLog.append takes."""
        t = self.token
        return {"time": self.time, "decision": 1 if self.accepted else 0, "reason": self.reason,
                "kind": t.kind if t else "", "cred_id": t.cred_id if t else b"",
                "account": t.account if t else 0, "counter": t.counter if t else 0,
                "fare": self.fare, "line": self.line, "stop": self.stop,
                "raw": t.raw if (t and self.accepted) else b""}

    def __repr__(self):
        return "<Decision %s %s fare=%d record=%s>" % (
            "accept" if self.accepted else "reject", reasons.name(self.reason), self.fare,
            self.record)


class Policy:
    def __init__(self, config, state, denylist, clock):
        self.state = state          # validator.riderstate.RiderState
        self.denylist = denylist    # validator.denylist.DenyList or None (none installed)
        self.clock = clock          # validator.clock.Clock (its synced_at is the last depot sync)
        self._rejects = []          # [(cred_id, counter, reason, time)], newest last
        self.set_config(config)

    def set_config(self, config):
        self.config = config
        # Keep account entries as long as a window may still look at them (plus a clock margin).
        self.state.account_keep = max(config.passback_window, config.transfer_window,
                                      config.repeat_window) + 600

    # --- the reader's own state ---

    def reader_status(self, now):
        """reasons.OK, or SYNC_REQUIRED; and whether the reader is in degraded mode. For the idle
        display and the depot's INFO."""
        if now is None:
            return reasons.SYNC_REQUIRED, True
        if self._stale(now):
            return (reasons.SYNC_REQUIRED if self.config.degraded == "reject" else reasons.OK), True
        return reasons.OK, False

    def _stale(self, now):
        cfg = self.config
        synced = self.clock.synced_at if self.clock is not None else 0
        if cfg.sync_window and (not synced or now - synced > cfg.sync_window):
            return True
        dl = self.denylist
        built = dl.built_at if dl is not None else 0
        if cfg.deny_max_age and (not built or now - built > cfg.deny_max_age):
            return True
        return False

    # --- the decision ---

    def decide(self, token, now):
        cfg = self.config
        if now is None:
            return Decision(False, reasons.SYNC_REQUIRED, record=False, token=token,
                            line=cfg.line, stop=cfg.stop)
        cred = self.state.credential(token.cred_id)
        # The same code read again: green, no charge, no second record. (A fresh code of the same
        # account within the window is the same tap too; _rules finds it after the time checks.)
        if cred is not None and cfg.repeat_window and 0 <= now - cred[2] <= cfg.repeat_window \
                and token.counter == cred[0]:
            return self._already(token, now)
        degraded = self._stale(now)
        reason, fare, transfer = self._rules(token, now, cred, degraded)
        if reason == reasons.ALREADY_VALIDATED:
            return self._already(token, now)
        if reason != reasons.OK:
            record = True
            for c, n, r, t in self._rejects:
                if c == token.cred_id and n == token.counter and r == reason \
                        and 0 <= now - t <= cfg.repeat_window:
                    record = False
            return Decision(False, reason, record=record, token=token, now=now, line=cfg.line,
                            stop=cfg.stop, degraded=degraded)
        return Decision(True, reasons.OK, fare, True, token, now, cfg.line, cfg.stop, degraded,
                        transfer)

    def _already(self, token, now):
        cfg = self.config
        return Decision(True, reasons.ALREADY_VALIDATED, record=False, token=token, now=now,
                        line=cfg.line, stop=cfg.stop)

    def _rules(self, token, now, cred, degraded):
        """(reason, fare, transfer) for a tap that is not a repeat."""
        cfg = self.config
        if degraded and cfg.degraded == "reject":
            return reasons.SYNC_REQUIRED, 0, False
        if now + cfg.clock_skew < token.valid_from:
            return reasons.CRED_NOT_YET_VALID, 0, False
        if now > token.valid_until:
            return reasons.CRED_EXPIRED, 0, False
        if now - token.time > cfg.max_code_age:
            return reasons.CODE_EXPIRED, 0, False
        if token.time - now > cfg.clock_skew:
            return reasons.CODE_FROM_FUTURE, 0, False
        if cred is not None:
            if token.counter == cred[0]:
                return reasons.DUPLICATED, 0, False
            if token.counter < cred[0]:
                return reasons.COUNTER_ROLLBACK, 0, False
        acct = self.state.account(token.account)
        # A phone held in front of the scanner refreshes its code (and NFC answers each challenge
        # with a new counter): the same account within seconds is the same tap, not a pass-back.
        if acct is not None and cfg.repeat_window and 0 <= now - acct[0] <= cfg.repeat_window:
            return reasons.ALREADY_VALIDATED, 0, False
        # (0 <= : after an authorised clock step back, rides "in the future" are not pass-backs)
        if acct is not None and cfg.passback_window and 0 <= now - acct[0] <= cfg.passback_window:
            return reasons.PASSBACK, 0, False
        dl = self.denylist
        if dl is not None:
            if dl.denied_account(token.account, now):
                return reasons.DENIED_ACCOUNT, 0, False
            if dl.denied_credential(token.cred_id, now):
                return reasons.DENIED_CREDENTIAL, 0, False
        fare = cfg.fare(token.product)
        if fare is None:
            return reasons.NO_FARE, 0, False
        transfer = False
        if fare and acct is not None and acct[1] and cfg.transfer_window \
                and 0 <= now - acct[1] <= cfg.transfer_window:
            fare = 0
            transfer = True
        rides = cred[3] if cred is not None else 0
        amount = cred[1] if cred is not None else 0
        if rides + 1 > token.max_rides:
            return reasons.QUOTA_RIDES, 0, False
        if amount + fare > token.max_amount:
            return reasons.QUOTA_AMOUNT, 0, False
        if degraded and (rides + 1 > cfg.degraded_max_rides or (
                cfg.degraded_max_amount and amount + fare > cfg.degraded_max_amount)):
            return reasons.SYNC_REQUIRED, 0, False
        return reasons.OK, fare, transfer

    def commit(self, decision, seq=0):
        """After the trip record is durable (or at once if decision.record is False): count an
        accepted ride (RAM + flash journal), remember a rejected code so that the phone held in
        front of the scanner is logged once. Returns False if the counters could not be written
        to flash (they are in RAM; the trip log still has the ride for recover())."""
        t = decision.token
        if not decision.record or t is None:
            return True
        if not decision.accepted:
            self._rejects.append((t.cred_id, t.counter, decision.reason, decision.time))
            if len(self._rejects) > REJECT_MEMORY:
                self._rejects.pop(0)
            return True
        ok = self.state.record_ride(t.cred_id, t.account, t.counter, decision.time,
                                    decision.fare, t.valid_until, seq)
        if self.clock is not None:
            try:
                self.clock.checkpoint()
            except OSError:
                ok = False
        return ok

    def maintain(self, now):
        """Call when the reader is idle: writes the counters' snapshot when it is due, so that taps
        rarely wait for one."""
        return self.state.maintain(now)

    def checkpoint(self, now=None):
        """Write every counter to the snapshot now. The app calls it before the trip log frees
        acknowledged records, since recover() can only replay records the log still has."""
        self.state.snapshot(now)

    def recover(self, records):
        """Count accepted rides from the trip log that the counters do not have yet (a power cut
        between the log append and commit). `records`: iterable of (seq, record dict as in
        Decision.trip_record). Returns how many rides were added."""
        added = 0
        for seq, rec in records:
            if seq <= self.state.log_seq or not rec.get("decision") \
                    or rec.get("reason") != reasons.OK:
                continue
            cred = self.state.credential(rec["cred_id"])
            until = cred[4] if cred is not None else rec["time"] + RECOVER_KEEP
            self.state.record_ride(rec["cred_id"], rec["account"], rec["counter"], rec["time"],
                                   rec["fare"], until, seq)
            added += 1
        return added
