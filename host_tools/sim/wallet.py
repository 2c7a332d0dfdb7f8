"""The rider's phone, emulated: its own key pair, a credential from the issuer, ride codes (QR text
and PNG) and answers to the reader's NFC APDUs.

Python API (tests and the simulator):
    w = Wallet()                                   # new rider key (or Wallet(key=...))
    w.credential = issuer.issue(account, w.public_key, ...)
    text = w.ride_code(now)                        # "FV1:..." (counter goes up by one)
    w.qr_png("code.png", now)                      # same, as a QR image (alphanumeric, EC M)
    card = w.card(clock=lambda: now)               # card.apdu(cmd) -> response (data + SW)

`Wallet.load(dir)` / `w.save(dir)` keep a wallet on disk for the CLI (`fare wallet --help`):
rider.pem (mode 0600), credential.cbor, state.json (the counter, saved before a code is shown).
"""
import json
import os
import struct
import time
from pathlib import Path

import segno

from host_tools.common import ecsign, tokenformat
from host_tools.common.clierrors import UserError, check_folder, check_output, read_bytes
from host_tools.common.fw import validator  # noqa: F401
from host_tools.issuing.issuer import (RIDER_KEY_FILE, IssuerStore, add_credential_options,
                                       issue_from_store, read_private_key, write_private_key)
from validator import tokens as fw

QR_ERROR = "m"


def qr_symbol(text):
    """The segno QR symbol of a ride code: alphanumeric mode, error correction M (not boosted)."""
    return segno.make_qr(text, error=QR_ERROR, mode="alphanumeric", boost_error=False)


class Wallet:
    def __init__(self, key=None, credential=None, counter=0):
        self.key = ecsign.new_key() if key is None else key
        self.public_key = ecsign.public_bytes(self.key)
        self.credential = credential   # blob: CBOR [credential bytes, issuer signature]
        self.counter = counter         # last counter used
        self.path = None               # directory when loaded from / saved to disk

    # --- persistence ---
    @classmethod
    def load(cls, directory):
        d = Path(directory)
        cred = d / "credential.cbor"
        state = json.loads((d / "state.json").read_text()) if (d / "state.json").exists() else {}
        w = cls(read_private_key(d / RIDER_KEY_FILE),
                cred.read_bytes() if cred.exists() else None, state.get("counter", 0))
        w.path = d
        return w

    def save(self, directory=None):
        d = Path(directory or self.path)
        d.mkdir(parents=True, exist_ok=True)
        if not (d / RIDER_KEY_FILE).exists():
            write_private_key(d / RIDER_KEY_FILE, self.key)
        if self.credential is not None:
            (d / "credential.cbor").write_bytes(self.credential)
        self.path = d
        self._save_state()

    def _save_state(self):
        if self.path is None:
            return
        tmp = self.path / "state.json.tmp"
        tmp.write_text(json.dumps({"counter": self.counter}))
        os.replace(tmp, self.path / "state.json")

    # --- ride codes ---
    def _parts(self):
        if self.credential is None:
            raise RuntimeError("wallet has no credential yet")
        return tokenformat.split_blob(self.credential)

    def next_counter(self):
        """The next counter value, persisted before use (it must never repeat)."""
        self.counter += 1
        self._save_state()
        return self.counter

    def ride_code_bytes(self, now, counter=None):
        cred, isig = self._parts()
        counter = self.next_counter() if counter is None else counter
        return tokenformat.ride_code_bytes(self.key, cred, isig, now, counter)

    def ride_code(self, now, counter=None):
        """QR text of a fresh ride code made at `now` (Unix seconds)."""
        return tokenformat.qr_text(self.ride_code_bytes(now, counter))

    def qr_png(self, path, now, counter=None, scale=4):
        """Write a ride code as a PNG QR image; returns its text. The file is opened first, so
        that a path that cannot be written uses up no counter value."""
        with open(path, "wb") as f:
            text = self.ride_code(now, counter)
            qr_symbol(text).save(f, kind="png", scale=scale, border=4)
        return text

    def answer_challenge(self, challenge, now, counter=None):
        """Data of the answer to an NFC challenge: [dynamic bytes, rider signature, recid]."""
        cred, isig = self._parts()
        counter = self.next_counter() if counter is None else counter
        return tokenformat.nfc_answer(self.key, cred, isig, challenge, now, counter)

    def card(self, clock=None, chunk=fw.READ_CHUNK):
        """An ISO 14443-4 application answering the reader's APDUs (the PN532 emulator carries
        it). `clock() -> Unix seconds` is the phone's clock; `chunk` the most data bytes it
        returns per READ."""
        return Card(self, clock or (lambda: int(time.time())), chunk)


def _sw(code):
    return struct.pack(">H", code)


SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_NOT_SELECTED = 0x6985
SW_WRONG_DATA = 0x6A80
SW_NOT_FOUND = 0x6A82
SW_WRONG_P1P2 = 0x6B00
SW_INS = 0x6D00
SW_CLA = 0x6E00


class Card:
    """Our application on the phone: SELECT (by AID), READ CREDENTIAL (offset chunks),
    CHALLENGE. `apdu(cmd: bytes) -> bytes` returns response data + status word."""

    def __init__(self, wallet, clock, chunk=fw.READ_CHUNK):
        self.wallet = wallet
        self.clock = clock
        self.chunk = chunk
        self.selected = False
        self.blob = wallet.credential
        self.log = []   # (command, response) pairs, for tests that record an exchange

    def apdu(self, cmd):
        resp = self._apdu(bytes(cmd))
        self.log.append((bytes(cmd), resp))
        return resp

    def _apdu(self, cmd):
        if len(cmd) < 4:
            return _sw(SW_WRONG_LENGTH)
        cla, ins, p1, p2 = cmd[:4]
        body = cmd[4:]
        if cla == 0x00 and ins == fw.INS_SELECT:
            if p1 != 0x04 or not body or len(body) < 1 + body[0]:
                return _sw(SW_WRONG_P1P2 if p1 != 0x04 else SW_WRONG_LENGTH)
            aid = body[1:1 + body[0]]
            if aid != fw.AID or self.blob is None:
                self.selected = False
                return _sw(SW_NOT_FOUND)
            self.selected = True
            info = tokenformat.encode({1: fw.NFC_PROTOCOL, 2: len(self.blob)})
            return info + _sw(SW_OK)
        if cla != fw.CLA_PROP:
            return _sw(SW_CLA)
        if not self.selected:
            return _sw(SW_NOT_SELECTED)
        if ins == fw.INS_READ:
            if len(body) != 1:
                return _sw(SW_WRONG_LENGTH)
            off = p1 << 8 | p2
            want = body[0] or 256
            if off > len(self.blob):
                return _sw(SW_WRONG_P1P2)
            return self.blob[off:off + min(want, self.chunk)] + _sw(SW_OK)
        if ins == fw.INS_CHALLENGE:
            if len(body) < 1 or body[0] != fw.CHALLENGE_LEN or len(body) not in (
                    1 + fw.CHALLENGE_LEN, 2 + fw.CHALLENGE_LEN):
                return _sw(SW_WRONG_LENGTH)
            challenge = body[1:1 + fw.CHALLENGE_LEN]
            return self.wallet.answer_challenge(challenge, self.clock()) + _sw(SW_OK)
        return _sw(SW_INS)


# --- CLI ---

def load_wallet(directory, need_credential=False):
    """The wallet in `directory`, or UserError saying what is missing."""
    d = Path(directory)
    if not (d / RIDER_KEY_FILE).is_file():
        raise UserError("no wallet in %s (no %s): `fare wallet --dir %s new` makes one"
                        % (d, RIDER_KEY_FILE, d))
    try:
        w = Wallet.load(d)
    except (ValueError, IndexError, KeyError, TypeError):
        raise UserError("the wallet in %s is damaged (%s or state.json unreadable)"
                        % (d, RIDER_KEY_FILE)) from None
    if need_credential and w.credential is None:
        raise UserError("the wallet in %s has no credential yet: `fare wallet enroll` or "
                        "`fare wallet import-credential`" % d)
    return w


def check_credential(blob, what):
    """The credential blob of a file given to the wallet, checked for its form (the reader
    checks its signature); UserError for a file that is not one."""
    try:
        cred, isig = tokenformat.split_blob(blob)
        fields = tokenformat.decode_credential(cred)
        if not isinstance(isig, bytes) or len(isig) != 64:
            raise ValueError("issuer signature")
    except Exception:  # noqa: BLE001 -- cbor2 raises many kinds for a file that is not CBOR
        raise UserError("%s is not a credential (the file `fare issuer issue` writes)" % what
                        ) from None
    return fields


def _cmd_new(args):
    d = Path(args.dir)
    if (d / RIDER_KEY_FILE).exists():
        raise UserError("wallet %s already exists" % d)
    check_folder(d, "wallet folder")
    w = Wallet()
    w.save(d)
    print("wallet %s: rider key %s" % (d, w.public_key.hex()))


def _cmd_enroll(args):
    w = load_wallet(args.dir)
    iss, w.credential = issue_from_store(IssuerStore(args.issuer), args, w.public_key)
    w.save()
    print("credential for account %d (issuer key %d) stored in %s"
          % (args.account, iss.key_id, args.dir))


def _cmd_import(args):
    w = load_wallet(args.dir)
    blob = read_bytes(args.file, "credential file")
    fields = check_credential(blob, args.file)
    if fields["rider_key"] != w.public_key.hex():
        raise UserError("%s is a credential for another rider key, not this wallet's (%s)"
                        % (args.file, args.dir))
    w.credential = blob
    w.save()
    print("credential stored in %s" % args.dir)


def _cmd_code(args):
    w = load_wallet(args.dir, need_credential=True)
    now = int(time.time()) if args.time is None else args.time
    if args.png:
        # the output is checked before the code is made: a counter value is used up only for a
        # code that is shown
        check_output(args.png, "PNG file")
        text = w.qr_png(args.png, now, scale=args.scale)
        print("QR version %s-M, %d characters, written to %s"
              % (qr_symbol(text).version, len(text), args.png), flush=True)
    else:
        text = w.ride_code(now)
    print(text)


def _cmd_show(args):
    w = load_wallet(args.dir)
    cred = None
    if w.credential:
        cred = tokenformat.decode_credential(tokenformat.split_blob(w.credential)[0])
        for k in ("valid_from", "valid_until"):  # for people, next to the Unix seconds
            cred[k + "_utc"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cred[k]))
    print(json.dumps({"rider_key": w.public_key.hex(), "counter": w.counter,
                      "credential": cred}, indent=1))


def add_commands(sub):
    p = sub.add_parser("wallet", help="emulated rider phone: key, credential, ride codes",
                       description="The rider's phone, emulated: its key pair, its credential "
                       "from the issuer, and ride codes as QR text or PNG images.")
    p.add_argument("--dir", default=os.environ.get("FARE_WALLET_DIR", "wallet"),
                   help="wallet directory (default $FARE_WALLET_DIR or ./wallet)")
    s = p.add_subparsers(dest="wallet_command", metavar="ACTION")
    s.required = True

    q = s.add_parser("new", help="create a wallet with a new rider key pair",
                     description="Create a wallet: a new rider key pair (rider.pem, mode 0600).")
    q.set_defaults(func=_cmd_new)

    q = s.add_parser("enroll", help="get a credential from an issuer directory",
                     description="Go online: the issuer signs a credential for this wallet's "
                     "key (the issuer directory stands in for the back office).")
    q.add_argument("--issuer", default=os.environ.get("FARE_ISSUER_DIR", "issuer"),
                   help="issuer directory (default $FARE_ISSUER_DIR or ./issuer)")
    add_credential_options(q)
    q.set_defaults(func=_cmd_enroll)

    q = s.add_parser("import-credential", help="store a credential file made by `issuer issue`",
                     description="Store a credential file made by `fare issuer issue`.")
    q.add_argument("--file", required=True, help="the credential file (credential.cbor)")
    q.set_defaults(func=_cmd_import)

    q = s.add_parser("code", help="make a ride code (text, or PNG with --png)",
                     description="Make a fresh ride code (the counter goes up by one) and print "
                     "its QR text; with --png also write it as a QR image (alphanumeric, EC M).")
    q.add_argument("--png", help="write the QR image to this PNG file")
    q.add_argument("--scale", type=int, default=4, help="PNG pixels per module (default 4)")
    q.add_argument("--time", type=int, help="creation time, Unix seconds (default: now)")
    q.set_defaults(func=_cmd_code)

    q = s.add_parser("show", help="show the rider key, counter and credential",
                     description="Show the wallet's rider key, counter and credential fields.")
    q.set_defaults(func=_cmd_show)
