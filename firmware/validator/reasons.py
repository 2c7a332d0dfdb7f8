# Decision and reason codes: one small integer per outcome, stored in trip records and shown on the
# display in Chinese and English. Codes never change meaning once shipped; add new ones at the end
# of their group.

OK = 0                 # accepted, fare charged
ALREADY_VALIDATED = 1  # same tap read again within seconds: green, no second charge, no record

# The token itself (validator.tokens)
MALFORMED = 10            # cannot parse: bad prefix, base45, CBOR, field types or sizes
UNSUPPORTED = 11          # unknown format version or token kind ("card type unsupported")
UNKNOWN_KEY = 12          # issuer key id not in the key ring
KEY_RETIRED = 13          # issuer key retired or outside its validity
BAD_ISSUER_SIG = 14       # credential signature does not verify
BAD_RIDER_SIG = 15        # ride code / NFC answer signature does not verify
NFC_FAILED = 16           # the NFC exchange broke off (phone moved away, protocol error)

# The decision (validator.policy)
CODE_EXPIRED = 20         # ride code older than the maximum age: "refresh the code"
CODE_FROM_FUTURE = 21     # ride code time ahead of the reader clock beyond the allowed skew
CRED_EXPIRED = 22         # credential past valid-until: "go online"
CRED_NOT_YET_VALID = 23
DUPLICATED = 24           # the same ride code (credential + counter) seen before
COUNTER_ROLLBACK = 25     # a counter lower than one already seen for this credential
PASSBACK = 26             # same account again within the pass-back window
QUOTA_RIDES = 27          # offline rides limit of the credential reached
QUOTA_AMOUNT = 28         # offline amount limit of the credential reached
DENIED_ACCOUNT = 29
DENIED_CREDENTIAL = 30
NO_FARE = 31              # fare product/class not in this reader's fare table

# The reader's own state
SYNC_REQUIRED = 40        # clock never set, last sync or deny list too old
LOG_FULL = 41             # trip log full of unacknowledged records
READER_ERROR = 42         # internal fault; the tap is rejected, nothing charged

ACCEPTED = (OK, ALREADY_VALIDATED)

# code: (name, Chinese, English) -- the display text
MESSAGES = {
    OK: ("OK", "请上车", "Welcome aboard"),
    ALREADY_VALIDATED: ("ALREADY_VALIDATED", "已验票", "Already validated"),
    MALFORMED: ("MALFORMED", "无效码", "Invalid code"),
    UNSUPPORTED: ("UNSUPPORTED", "不支持的卡类型", "Card type not supported"),
    UNKNOWN_KEY: ("UNKNOWN_KEY", "发行密钥未知", "Unknown issuer key"),
    KEY_RETIRED: ("KEY_RETIRED", "发行密钥已停用", "Issuer key retired"),
    BAD_ISSUER_SIG: ("BAD_ISSUER_SIG", "证书签名错误", "Bad credential signature"),
    BAD_RIDER_SIG: ("BAD_RIDER_SIG", "乘车码签名错误", "Bad ride code signature"),
    NFC_FAILED: ("NFC_FAILED", "请重新刷卡", "Tap again"),
    CODE_EXPIRED: ("CODE_EXPIRED", "请刷新乘车码", "Refresh the code"),
    CODE_FROM_FUTURE: ("CODE_FROM_FUTURE", "手机时间错误", "Check phone clock"),
    CRED_EXPIRED: ("CRED_EXPIRED", "请联网更新", "Go online"),
    CRED_NOT_YET_VALID: ("CRED_NOT_YET_VALID", "乘车码未生效", "Code not yet valid"),
    DUPLICATED: ("DUPLICATED", "重复使用的码", "Code already used"),
    COUNTER_ROLLBACK: ("COUNTER_ROLLBACK", "重复使用的码", "Code already used"),
    PASSBACK: ("PASSBACK", "一码一人", "One code, one rider"),
    QUOTA_RIDES: ("QUOTA_RIDES", "离线次数已用完", "Offline rides used up"),
    QUOTA_AMOUNT: ("QUOTA_AMOUNT", "超过离线额度", "Over offline amount"),
    DENIED_ACCOUNT: ("DENIED_ACCOUNT", "账户已停用", "Account blocked"),
    DENIED_CREDENTIAL: ("DENIED_CREDENTIAL", "乘车码已停用", "Code blocked"),
    NO_FARE: ("NO_FARE", "票种不适用", "Fare class not valid here"),
    SYNC_REQUIRED: ("SYNC_REQUIRED", "暂停服务:需同步", "Service: sync required"),
    LOG_FULL: ("LOG_FULL", "暂停服务:记录已满", "Service: log full"),
    READER_ERROR: ("READER_ERROR", "设备故障", "Reader error"),
}


def name(code):
    m = MESSAGES.get(code)
    return m[0] if m else "R%d" % code


def message(code):
    """(Chinese, English) display lines for a reason code."""
    m = MESSAGES.get(code)
    return (m[1], m[2]) if m else ("错误 %d" % code, "Error %d" % code)
