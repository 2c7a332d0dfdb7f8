# Every rule of the decision and every reason code the policy gives, at its boundaries, on the
# MicroPython binary with the counters on simulated flash.
from validator import reasons as R
from policy_fakes import Token, DenyList, Rig, T0, cred, make_config


def check(d, reason, accepted=None, fare=None, record=None):
    assert d.reason == reason, "%r, expected %s" % (d, R.name(reason))
    if accepted is None:
        accepted = reason in (R.OK, R.ALREADY_VALIDATED)
    assert d.accepted == accepted, d
    if fare is not None:
        assert d.fare == fare, d
    if record is not None:
        assert d.record == record, d
    assert d.message == R.message(reason)


def rig(**settings):
    return Rig(make_config(**settings))


def test_clock_never_set_refuses_with_sync_required():
    r = Rig(set_clock=False)
    d = r.tap(Token())
    check(d, R.SYNC_REQUIRED, record=False)
    assert d.message == ("暂停服务:需同步", "Service: sync required")
    assert r.clock.set(T0) == "OK"
    check(r.tap(Token()), R.OK, fare=200, record=True)
    r.close()


def test_code_age_exactly_at_max_accepted_one_second_past_expired():
    r = rig()
    check(r.tap(Token(counter=1, time=T0 - 61), T0), R.CODE_EXPIRED, fare=0)
    assert r.tap(Token(counter=1, time=T0 - 61), T0).message[1] == "Refresh the code"
    check(r.tap(Token(counter=1, time=T0 - 60), T0), R.OK, fare=200)
    r.close()
    r = rig(max_code_age=30)
    check(r.tap(Token(counter=1, time=T0 - 31), T0), R.CODE_EXPIRED)
    check(r.tap(Token(counter=1, time=T0 - 30), T0), R.OK)
    r.close()


def test_clock_skew_both_ways():
    r = rig(passback_window=0, repeat_window=0)  # one account, many taps in a second
    # code from the future: exactly at the skew accepted, one second beyond refused
    check(r.tap(Token(cred_id=cred(1), time=T0 + 31), T0), R.CODE_FROM_FUTURE)
    check(r.tap(Token(cred_id=cred(1), time=T0 + 30), T0), R.OK)
    # a reader clock behind the phone's: the same code read 31 s later by the reader's clock is
    # still fresh, since its age counts from the code's time
    check(r.tap(Token(cred_id=cred(2), time=T0 + 60), T0 + 100), R.OK)
    # credential valid_from ahead of the reader clock: tolerated up to the skew
    check(r.tap(Token(cred_id=cred(3), time=T0 + 100, valid_from=T0 + 131), T0 + 100),
          R.CRED_NOT_YET_VALID)
    check(r.tap(Token(cred_id=cred(3), time=T0 + 100, valid_from=T0 + 130), T0 + 100), R.OK)
    r.close()
    r = rig(clock_skew=0)
    check(r.tap(Token(time=T0 + 1), T0), R.CODE_FROM_FUTURE)
    check(r.tap(Token(time=T0), T0), R.OK)
    r.close()


def test_credential_expiry_boundary_says_go_online():
    r = rig()
    until = T0 + 1000
    check(r.tap(Token(counter=1, time=until, valid_until=until), until), R.OK)
    d = r.tap(Token(cred_id=cred(2), account=2, time=until + 1, valid_until=until), until + 1)
    check(d, R.CRED_EXPIRED)
    assert d.message[1] == "Go online"
    r.close()


def test_same_tap_read_again_within_window_is_green_without_charge_or_record():
    r = rig()
    tok = Token(counter=5)
    check(r.tap(tok, T0), R.OK, fare=200, record=True)
    for dt in (0, 1, 5):
        check(r.tap(tok, T0 + dt), R.ALREADY_VALIDATED, accepted=True, fare=0, record=False)
    check(r.tap(tok, T0 + 6), R.DUPLICATED, fare=0, record=True)
    assert r.seq == 2  # trip records written
    assert r.state.credential(tok.cred_id)[3] == 1  # one ride counted
    r.close()
    r = rig(repeat_window=0)
    check(r.tap(tok, T0), R.OK)
    check(r.tap(tok, T0), R.DUPLICATED)
    r.close()


def test_a_fresh_code_of_the_same_account_within_seconds_is_the_same_tap():
    for kind in ("nfc", "qr"):
        r = rig()
        check(r.tap(Token(kind=kind, counter=7), T0), R.OK, fare=200, record=True)
        # the held phone refreshed its code (QR) or signed a new challenge (NFC)
        check(r.tap(Token(kind=kind, counter=8, time=T0 + 5), T0 + 5), R.ALREADY_VALIDATED,
              accepted=True, fare=0, record=False)
        # the refreshed code was not counted: shown again later it is still not a duplicate...
        c = r.state.credential(Token().cred_id)
        assert c[0] == 7 and c[3] == 1
        # ...but one second past the window it is a pass-back
        check(r.tap(Token(kind=kind, counter=8, time=T0 + 6), T0 + 6), R.PASSBACK)
        r.close()
    r = rig()
    check(r.tap(Token(cred_id=cred(1), account=9), T0), R.OK)
    # another credential of the same account, within the window: the same tap
    check(r.tap(Token(cred_id=cred(2), account=9, time=T0 + 3), T0 + 3), R.ALREADY_VALIDATED)
    # measured from the acceptance, not extended by the repeats
    check(r.tap(Token(cred_id=cred(1), account=9, counter=3, time=T0 + 6), T0 + 6), R.PASSBACK)
    r.close()


def test_a_fresh_code_within_the_window_still_has_to_be_fresh_and_new():
    r = rig()
    check(r.tap(Token(counter=7), T0), R.OK)
    check(r.tap(Token(counter=6, time=T0 + 2), T0 + 2), R.COUNTER_ROLLBACK)
    check(r.tap(Token(counter=8, time=T0 - 120), T0 + 2), R.CODE_EXPIRED)
    check(r.tap(Token(counter=8, time=T0 + 100), T0 + 2), R.CODE_FROM_FUTURE)
    r.close()
    r = rig(repeat_window=0, passback_window=600)  # the same tap disabled: fresh codes pass back
    check(r.tap(Token(counter=7), T0), R.OK)
    check(r.tap(Token(counter=8, time=T0 + 1), T0 + 1), R.PASSBACK)
    r.close()


def test_replay_and_rollback():
    r = rig(passback_window=0)
    check(r.tap(Token(counter=10), T0), R.OK)
    check(r.tap(Token(counter=10, time=T0 + 30), T0 + 30), R.DUPLICATED)
    check(r.tap(Token(counter=9, time=T0 + 30), T0 + 30), R.COUNTER_ROLLBACK)
    check(r.tap(Token(counter=0, time=T0 + 30), T0 + 30), R.COUNTER_ROLLBACK)
    check(r.tap(Token(counter=11, time=T0 + 30), T0 + 30), R.OK)
    check(r.tap(Token(counter=1 << 63, time=T0 + 40), T0 + 40), R.OK)  # u64 counters
    check(r.tap(Token(counter=(1 << 63) - 1, time=T0 + 50), T0 + 50), R.COUNTER_ROLLBACK)
    r.close()


def test_passback_window_edges_and_disabled():
    r = rig()
    a, b = cred(1), cred(2)  # two credentials of one account
    check(r.tap(Token(cred_id=a, account=9), T0), R.OK)
    check(r.tap(Token(cred_id=b, account=9, time=T0 + 600), T0 + 600), R.PASSBACK)
    assert r.tap(Token(cred_id=b, account=9, time=T0 + 600), T0 + 600).message[1] \
        == "One code, one rider"
    check(r.tap(Token(cred_id=a, account=9, counter=2, time=T0 + 600), T0 + 600), R.PASSBACK)
    check(r.tap(Token(cred_id=b, account=9, time=T0 + 601), T0 + 601), R.OK)
    check(r.tap(Token(cred_id=cred(3), account=10, time=T0 + 601), T0 + 601), R.OK)  # other rider
    r.close()
    r = rig(passback_window=0)
    check(r.tap(Token(cred_id=a, account=9), T0), R.OK)
    check(r.tap(Token(cred_id=b, account=9, time=T0 + 6), T0 + 6), R.OK)
    r.close()
    r = rig(passback_window=120)
    check(r.tap(Token(cred_id=a, account=9), T0), R.OK)
    check(r.tap(Token(cred_id=b, account=9, time=T0 + 120), T0 + 120), R.PASSBACK)
    check(r.tap(Token(cred_id=b, account=9, time=T0 + 121), T0 + 121), R.OK)
    r.close()


def test_deny_list_account_and_credential():
    dl = DenyList(accounts=[66], creds=[cred(7)])
    r = Rig(make_config(), denylist=dl)
    check(r.tap(Token(cred_id=cred(1), account=66)), R.DENIED_ACCOUNT)
    assert r.tap(Token(cred_id=cred(1), account=66)).message[1] == "Account blocked"
    check(r.tap(Token(cred_id=cred(7), account=67)), R.DENIED_CREDENTIAL)
    check(r.tap(Token(cred_id=cred(7), account=66)), R.DENIED_ACCOUNT)
    check(r.tap(Token(cred_id=cred(8), account=67)), R.OK)
    r.close()


def test_fare_table_products_lines_and_unknown_product():
    cfg = make_config(passback_window=0, repeat_window=0)
    cfg.fares = {0: {0: 200, 1: 100, 2: 0}, 12: {0: 250, 1: 120}}
    r = Rig(cfg)
    check(r.tap(Token(cred_id=cred(1), product=0)), R.OK, fare=200)
    check(r.tap(Token(cred_id=cred(2), product=1)), R.OK, fare=100)
    check(r.tap(Token(cred_id=cred(3), product=2)), R.OK, fare=0)
    check(r.tap(Token(cred_id=cred(4), product=3)), R.NO_FARE)
    cfg.line = 12
    check(r.tap(Token(cred_id=cred(5), product=0)), R.OK, fare=250)
    check(r.tap(Token(cred_id=cred(6), product=2)), R.NO_FARE)
    cfg.line = 13  # a line without a table: nothing can be charged
    check(r.tap(Token(cred_id=cred(7), product=0)), R.NO_FARE)
    r.close()


def test_free_transfer_window_edges():
    r = rig(passback_window=0, transfer_window=1800, repeat_window=0)
    a, b, c = cred(1), cred(2), cred(3)
    check(r.tap(Token(cred_id=a, account=5), T0), R.OK, fare=200)             # paid
    d = r.tap(Token(cred_id=b, account=5, time=T0 + 1800), T0 + 1800)         # at the edge: free
    check(d, R.OK, fare=0)
    assert d.transfer
    # the free ride does not restart the window: one second past the paid ride pays in full
    check(r.tap(Token(cred_id=c, account=5, time=T0 + 1801), T0 + 1801), R.OK, fare=200)
    # a ride with a free product is not a paid ride: no transfer after it
    check(r.tap(Token(cred_id=cred(9), account=6, product=2, time=T0 + 1802), T0 + 1802), R.OK,
          fare=0)
    d = r.tap(Token(cred_id=cred(10), account=6, time=T0 + 1810), T0 + 1810)
    check(d, R.OK, fare=200)
    assert not d.transfer
    r.close()
    r = rig(passback_window=0, transfer_window=0, repeat_window=0)  # disabled
    check(r.tap(Token(cred_id=a, account=5), T0), R.OK, fare=200)
    check(r.tap(Token(cred_id=b, account=5, time=T0 + 1), T0 + 1), R.OK, fare=200)
    r.close()


def test_offline_rides_limit_last_inside_first_outside():
    r = rig(passback_window=0)
    for i in range(1, 4):
        check(r.tap(Token(counter=i, max_rides=3, time=T0 + 10 * i), T0 + 10 * i), R.OK)
    d = r.tap(Token(counter=4, max_rides=3, time=T0 + 40), T0 + 40)
    check(d, R.QUOTA_RIDES)
    assert d.message[1] == "Offline rides used up"
    r.close()


def test_offline_amount_limit_last_inside_first_outside():
    r = rig(passback_window=0)
    check(r.tap(Token(counter=1, max_amount=500), T0), R.OK, fare=200)
    check(r.tap(Token(counter=2, max_amount=500, time=T0 + 10), T0 + 10), R.OK, fare=200)
    check(r.tap(Token(counter=3, max_amount=500, time=T0 + 20), T0 + 20), R.QUOTA_AMOUNT)
    check(r.tap(Token(counter=3, max_amount=500, product=1, time=T0 + 20), T0 + 20), R.OK,
          fare=100)  # exactly at the limit: 500
    check(r.tap(Token(counter=4, max_amount=500, product=2, time=T0 + 30), T0 + 30), R.OK, fare=0)
    check(r.tap(Token(counter=5, max_amount=500, product=1, time=T0 + 40), T0 + 40),
          R.QUOTA_AMOUNT)
    r.close()


def test_degraded_sync_window_edge_reject_mode():
    r = rig(degraded="reject")
    edge = T0 + 72 * 3600
    check(r.tap(Token(cred_id=cred(1), account=1, time=edge), edge), R.OK)
    d = r.tap(Token(cred_id=cred(2), account=2, time=edge + 1), edge + 1)
    check(d, R.SYNC_REQUIRED, record=True)
    assert d.degraded
    assert r.policy.reader_status(edge + 1) == (R.SYNC_REQUIRED, True)
    assert r.clock.set(edge + 1) == "OK"  # the depot syncs: back in service
    check(r.tap(Token(cred_id=cred(2), account=2, time=edge + 1), edge + 1), R.OK)
    r.close()


def test_degraded_limit_mode_lower_per_rider_limit():
    r = rig(degraded="limit", degraded_max_rides=2, degraded_max_amount=300,
            passback_window=0, repeat_window=0, sync_window=3600)
    t = T0 + 3601
    assert r.policy.reader_status(t) == (R.OK, True)
    d = r.tap(Token(counter=1, time=t), t)
    check(d, R.OK, fare=200)
    assert d.degraded
    check(r.tap(Token(counter=2, time=t + 1), t + 1), R.SYNC_REQUIRED)   # 400 > 300
    check(r.tap(Token(counter=2, product=1, time=t + 1), t + 1), R.OK)   # 300: at the cap
    check(r.tap(Token(counter=3, product=2, time=t + 2), t + 2), R.SYNC_REQUIRED)  # 3rd ride
    # the credential's own limit comes first and gives its own reason
    check(r.tap(Token(cred_id=cred(9), account=2, max_rides=0, time=t), t), R.QUOTA_RIDES)
    r.close()


def test_deny_list_age_and_missing_list_degrade_the_reader():
    r = Rig(make_config(degraded="reject"), denylist=DenyList(built_at=T0 - 96 * 3600))
    check(r.tap(Token(cred_id=cred(1), account=1)), R.OK)
    check(r.tap(Token(cred_id=cred(2), account=2, time=T0 + 1), T0 + 1), R.SYNC_REQUIRED)
    r.policy.denylist = None
    check(r.tap(Token(cred_id=cred(3), account=3, time=T0 + 1), T0 + 1), R.SYNC_REQUIRED)
    r.cfg.deny_max_age = 0  # 0 disables the check
    check(r.tap(Token(cred_id=cred(4), account=4, time=T0 + 1), T0 + 1), R.OK)
    r.close()


def test_a_rejected_code_held_in_front_of_the_scanner_is_logged_once_per_window():
    r = rig()
    stale = Token(counter=1, time=T0 - 100)
    check(r.tap(stale, T0), R.CODE_EXPIRED, record=True)
    check(r.tap(stale, T0 + 5), R.CODE_EXPIRED, record=False)
    check(r.tap(stale, T0 + 6), R.CODE_EXPIRED, record=True)
    assert r.seq == 2  # trip records written
    r.close()


def test_every_policy_reason_code_is_reachable():
    dl = DenyList(accounts=[66], creds=[cred(7)])
    r = Rig(make_config(passback_window=0), denylist=dl)
    seen = set()
    for tok, t in ((Token(counter=1), T0), (Token(counter=1), T0 + 1), (Token(counter=1), T0 + 9),
                   (Token(counter=0, time=T0 + 9), T0 + 9),
                   (Token(counter=2, time=T0 - 100), T0), (Token(counter=2, time=T0 + 100), T0),
                   (Token(cred_id=cred(2), valid_until=T0 - 1), T0),
                   (Token(cred_id=cred(2), valid_from=T0 + 100), T0),
                   (Token(cred_id=cred(3), account=66), T0),
                   (Token(cred_id=cred(7), account=67), T0),
                   (Token(cred_id=cred(4), product=99), T0),
                   (Token(cred_id=cred(5), max_rides=0), T0),
                   (Token(cred_id=cred(6), max_amount=0), T0)):
        seen.add(r.tap(tok, t).reason)
    r.cfg.passback_window = 600
    seen.add(r.tap(Token(cred_id=cred(11), account=1, counter=3), T0 + 20).reason)
    r.close()
    seen.add(Rig(set_clock=False).tap(Token()).reason)
    policy_reasons = {R.OK, R.ALREADY_VALIDATED, R.CODE_EXPIRED, R.CODE_FROM_FUTURE,
                      R.CRED_EXPIRED, R.CRED_NOT_YET_VALID, R.DUPLICATED, R.COUNTER_ROLLBACK,
                      R.PASSBACK, R.QUOTA_RIDES, R.QUOTA_AMOUNT, R.DENIED_ACCOUNT,
                      R.DENIED_CREDENTIAL, R.NO_FARE, R.SYNC_REQUIRED}
    assert seen == policy_reasons, sorted(R.name(x) for x in policy_reasons - seen)


def test_rule_order_first_failing_rule_wins():
    # a code that breaks every rule at once reports the earliest rule of docs/decisions.md
    dl = DenyList(accounts=[1], creds=[cred(1)])
    r = Rig(make_config(), denylist=dl)
    bad = Token(cred_id=cred(1), account=1, valid_from=T0 + 100, valid_until=T0 - 1,
                time=T0 - 1000, product=99, max_rides=0, max_amount=0)
    check(r.tap(bad), R.CRED_NOT_YET_VALID)
    bad.valid_from = T0 - 100
    check(r.tap(bad), R.CRED_EXPIRED)
    bad.valid_until = T0 + 100
    check(r.tap(bad), R.CODE_EXPIRED)
    bad.time = T0
    check(r.tap(bad), R.DENIED_ACCOUNT)
    bad.account = 2
    check(r.tap(bad), R.DENIED_CREDENTIAL)
    bad.cred_id = cred(2)
    check(r.tap(bad), R.NO_FARE)
    bad.product = 0
    check(r.tap(bad), R.QUOTA_RIDES)
    bad.max_rides = 1
    check(r.tap(bad), R.QUOTA_AMOUNT)
    bad.max_amount = 200
    check(r.tap(bad), R.OK)
    r.close()
