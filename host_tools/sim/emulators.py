"""`fare emulate`: the reader's peripherals on ptys, for a simulated reader or a bench test.

    fare emulate pn532 --wallet DIR --link /tmp/nfc     # a phone carrying the wallet's credential
    fare emulate qr --link /tmp/qr CODE...               # a scanner that reads these codes

Each prints the pty path (give it to the firmware, e.g. FV_NFC / FV_QR for boards/unix_sim) and
runs until Ctrl-C or end of input. The Python classes are host_tools.sim.pn532_emu.PN532Emulator and
host_tools.sim.qr_emu.QrEmulator.
"""
import argparse
import importlib
import sys
import time

from host_tools.common.clierrors import UserError, check_output, read_text
from host_tools.sim.pn532_emu import FAULTS, DemoCard, PN532Emulator
from host_tools.sim.qr_emu import SUFFIXES, QrEmulator

_Fmt = argparse.RawDescriptionHelpFormatter

PN532_HELP = """Interactive commands on stdin (one per line):
  remove            the card or phone leaves the field
  present           it comes back
  fault SPEC        inject a fault: NAME[:ARG][@CMD], e.g. bad_checksum@0x40, remove_card:2
  stats             what the emulator has seen
Faults: drop, nack, garbage, bad_checksum, bad_lcs, silent, split, error_frame,
extended, remove_card, delay (see host_tools/sim/pn532_emu.py)."""


def parse_fault(spec):
    """NAME[:ARG][@CMD] -> (name, arg, cmd)."""
    cmd = None
    if "@" in spec:
        spec, c = spec.split("@", 1)
        cmd = int(c, 0)
    arg = None
    if ":" in spec:
        spec, arg = spec.split(":", 1)
    if spec not in FAULTS:
        raise ValueError("unknown fault %r (known: %s)" % (spec, ", ".join(FAULTS)))
    return spec, arg, cmd


def load_card(args):
    if args.no_card:
        return None
    if args.wallet:
        from host_tools.sim import wallet
        return wallet.load_wallet(args.wallet).card()  # without a credential it answers 6A82
    if args.card:
        mod, _, name = args.card.partition(":")
        if not name:
            raise SystemExit("--card wants MODULE:CALLABLE")
        return getattr(importlib.import_module(mod), name)(*args.card_arg)
    return DemoCard()


def _stats(emu):
    return ("commands=%d apdus=%d nacks_received=%d aborts=%d bad_frames=%d wakeups=%d "
            "syntax_errors=%d" % (len(emu.commands), len(emu.apdus), emu.nacks_received,
                                  emu.acks_received, emu.bad_frames, emu.wakeups,
                                  emu.syntax_errors))


def _cmd_pn532(args):
    card = load_card(args)
    try:
        faults = [parse_fault(spec) for spec in args.fault]
    except ValueError as e:
        raise UserError("--fault: %s" % e) from None
    if args.link:
        check_output(args.link, "--link")
    trace = (lambda m: print("pn532 " + m, file=sys.stderr)) if args.trace else None
    emu = PN532Emulator(card, asleep=not args.awake, link=args.link, log=trace)
    for name, arg, cmd in faults:
        emu.inject(name, cmd=cmd, arg=arg)
    emu.start()
    print("PN532 emulator on %s%s" % (emu.path, " (link %s)" % args.link if args.link else ""),
          flush=True)
    try:
        if args.no_stdin:
            while True:
                time.sleep(3600)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            try:
                if words[0] == "remove":
                    emu.remove()
                elif words[0] == "present":
                    emu.present(card if card is not None else DemoCard())
                elif words[0] == "fault" and len(words) == 2:
                    name, arg, cmd = parse_fault(words[1])
                    emu.inject(name, cmd=cmd, arg=arg)
                elif words[0] == "stats":
                    pass
                else:
                    print(PN532_HELP, flush=True)
                    continue
            except ValueError as e:
                print("error: %s" % e, flush=True)
                continue
            print(_stats(emu), flush=True)
    finally:
        emu.stop()
    return 0


def _cmd_qr(args):
    codes = list(args.codes)
    if args.file:  # read before the pty opens: a wrong file ends the command at once
        codes += [ln.strip() for ln in read_text(args.file, "codes file").splitlines()
                  if ln.strip()]
    if args.link:
        check_output(args.link, "--link")
    trace = (lambda m: print("qr " + m, file=sys.stderr)) if args.trace else None
    emu = QrEmulator(suffix=SUFFIXES[args.suffix], chunk=args.chunk, pause_s=args.pause,
                     require_trigger=args.trigger, link=args.link, log=trace)
    emu.start()
    print("QR scanner emulator on %s%s" % (emu.path, " (link %s)" % args.link if args.link
                                           else ""), flush=True)
    try:
        if args.wait_open:
            time.sleep(args.wait_open)

        def one(code):
            if args.garbage:
                emu.send_raw(b"\x00\xff\x13" + SUFFIXES[args.suffix])
            emu.scan(code)
            emu.wait_sent()
            print("scanned %d chars" % len(code), flush=True)
            if args.interval:
                time.sleep(args.interval)

        if args.oversize:
            emu.oversize(args.oversize)
        for c in codes:
            one(c)
        if not codes and not args.oversize:
            for line in sys.stdin:      # interactive: each line typed is one scan
                if line.strip():
                    one(line.strip())
        emu.wait_sent()
        if args.hold:
            while True:
                time.sleep(3600)
    finally:
        emu.stop()
    return 0


def add_commands(sub):
    p = sub.add_parser("emulate", help="PN532 and QR scanner emulators on ptys",
                       description=__doc__, formatter_class=_Fmt)
    s = p.add_subparsers(dest="emulate_command", metavar="DEVICE")
    s.required = True

    q = s.add_parser("pn532", help="a PN532 NFC module carrying a phone or card",
                     description="A PN532 speaking its host-controller frame protocol (HSU) on\n"
                     "a pty, carrying a virtual card: a wallet's phone (--wallet), any Python\n"
                     "object with apdu(bytes) -> bytes (--card), or a demo card.\n\n" + PN532_HELP,
                     formatter_class=_Fmt)
    q.add_argument("--link", help="also make this symlink to the pty")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--wallet", metavar="DIR", help="carry the phone of this wallet directory")
    g.add_argument("--card", metavar="MODULE:CALLABLE",
                   help="carry the card returned by this callable (args from --card-arg)")
    g.add_argument("--no-card", action="store_true", help="start with the field empty")
    q.add_argument("--card-arg", action="append", default=[], help="argument for --card")
    q.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="inject a fault at start: NAME[:ARG][@CMD] (repeatable)")
    q.add_argument("--awake", action="store_true",
                   help="answer without the HSU wake-up (default: asleep until the 5th rising "
                        "edge on its RX line: a 0x55, or five 0x00)")
    q.add_argument("--no-stdin", action="store_true", help="ignore stdin; run until Ctrl-C")
    q.add_argument("--trace", action="store_true", help="hex trace of the traffic on stderr")
    q.set_defaults(func=_cmd_pn532)

    q = s.add_parser("qr", help="a UART QR scanner module (GM65 class) reading codes",
                     description="A GM65-class QR scanner on a pty: each code (arguments, --file\n"
                     "lines, else stdin lines) is typed as one line with the module's suffix.\n"
                     "It answers the module's serial configuration commands (7E 00 ...).",
                     formatter_class=_Fmt)
    q.add_argument("codes", nargs="*", metavar="CODE", help="codes to scan, in order")
    q.add_argument("--file", help="a file with one code per line")
    q.add_argument("--link", help="also make this symlink to the pty")
    q.add_argument("--suffix", choices=sorted(SUFFIXES), default="cr",
                   help="line suffix (default cr, as the GM65 ships)")
    q.add_argument("--chunk", type=int, help="write each line in pieces of this many bytes")
    q.add_argument("--pause", type=float, default=0.002, help="seconds between pieces")
    q.add_argument("--interval", type=float, default=0.0, help="seconds between codes")
    q.add_argument("--wait-open", type=float, default=0.0,
                   help="seconds to wait before the first code (time to start the reader)")
    q.add_argument("--garbage", action="store_true", help="a noise line before each code")
    q.add_argument("--oversize", type=int, metavar="N", help="first send a line of N bytes")
    q.add_argument("--trigger", action="store_true",
                   help="command-trigger mode: each code waits for the host's trigger command")
    q.add_argument("--hold", action="store_true",
                   help="keep the pty open after the last code, until Ctrl-C")
    q.add_argument("--trace", action="store_true", help="trace of the traffic on stderr")
    q.set_defaults(func=_cmd_qr)
