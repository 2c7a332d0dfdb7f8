# Stand-ins for the policy tests (MicroPython and CPython): a verified token with the attributes of
# tokens.RideToken (docs/design.md, "tokens -> policy"), a deny list with the DenyList lookup API,
# a settable time source, and a reader built from flash state.
T0 = 1750000000            # a Unix time in 2025: the tests' epoch


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
