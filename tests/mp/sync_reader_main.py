# A reader serving the depot protocol on a pty, for tests and benchmarks that drive it from the host
# with pyserial (tests/depot/test_sync_e2e.py, bench/bench_sync.py). The firmware parts are real
# (validator.sync, the trip log on a simulated flash, the clock); the reader around them is
# tests/mp/sync_testreader.py, until the application's own reader serves sync on the simulated board.
#
#   micropython sync_reader_main.py PTY WORKDIR READER_ID KEY_HEX OPERATOR_PUB_HEX [LOG_BLOCKS
#                                   [MAX_PAYLOAD]]
#
# The flash images live in WORKDIR (log.img: the trip log region, fs.img: littlefs at /r), so a
# new process over the same WORKDIR is the same reader after a reboot. Control on stdin, one
# command per line, answers on stdout: "add N" (append N trip records;
# "add N bench": the trip-log benchmark's records) -> "added LAST",
# "state" -> one JSON line, "quit". A REBOOT command from the depot prints "reboot" and exits 0.
import gc
import json
import select
import sys

import flashdev
from uart import PtyUart
from validator import sync
from sync_testreader import SyncTestReader, FakeTime, T0, gen_bench


def open_reader(workdir, reader_id, key, op_pub, log_blocks=64):
    logdev = flashdev.FlashDev(log_blocks, path=workdir + "/log.img")
    fsdev = flashdev.FlashDev(32, path=workdir + "/fs.img")
    flashdev.mount(fsdev, "/r")
    ops = {1: (op_pub, 0)} if op_pub else {}
    return SyncTestReader("/r", logdev, reader_id=reader_id, sync_key=key, operator_keys=ops,
                          time_source=FakeTime(T0))


def state(r, server=None, code=0):
    log = r.log
    out = {"first": log.first_seq, "last": log.last_seq, "ack": log.ack_seq,
           "free": log.free_bytes, "deny": r.version("denylist"), "keyring": r.version("keyring"),
           "config": r.version("config"), "time": r.clock.now(), "floor": r.clock.floor,
           "installs": [list(i) for i in r.installs], "reboots": r.reboots}
    if server is not None:
        out["sync"] = server.counters
        out["frames_good"] = server.decoder.good
        out["frames_bad"] = server.decoder.bad
        out["fault"] = repr(server.last_fault) if server.last_fault else None
    gc.collect()
    out["heap"] = {"code": code, "work": gc.mem_alloc() - code, "free": gc.mem_free()}
    return out


def main():
    # On the unix port the bytecode sits in the heap (a device keeps it frozen in flash): what is
    # allocated once everything is imported is the code's share, reported apart from the work.
    gc.collect()
    code = gc.mem_alloc()
    a = sys.argv
    blocks = int(a[6]) if len(a) > 6 else 64
    r = open_reader(a[2], int(a[3]), bytes.fromhex(a[4]), bytes.fromhex(a[5]) if a[5] != "-" else None,
                    blocks)
    kw = {"max_payload": int(a[7])} if len(a) > 7 else {}
    server = sync.SyncServer(PtyUart(a[1]), r, **kw)
    stdin = open(0, "rb")
    ctl = select.poll()
    ctl.register(stdin, select.POLLIN)
    print("ready", json.dumps(state(r)))
    idle = 0
    while not server.rebooted:
        if server.poll():
            idle = 0
            continue
        idle += 1
        # idle: look at the control channel, then nap until the UART or stdin has something
        if ctl.poll(0):
            line = stdin.readline()
            if not line:
                break
            cmd = line.split()
            if cmd[0] == b"add":
                r.add_records(int(cmd[1]), gen_bench if cmd[2:] == [b"bench"] else None)
                print("added", r.log.last_seq)
            elif cmd[0] == b"state":
                print(json.dumps(state(r, server, code)))
            elif cmd[0] == b"quit":
                break
        if idle > 50:
            ctl.poll(1)
    if server.rebooted:
        print("reboot")


if __name__ == "__main__":
    main()
