# MicroPython side of tests/firmware/test_heap_bound.py: a reader (validator.app.Reader on the
# bench board) boots, its free heap is cut into holes (boards/unix_sim/heapfrag.py), and then it
# serves a script of taps and depot sessions (INFO, a push in chunks through the sync server,
# COMMIT) as a day would: every step must run on blocks no larger than a hole. No allocation may
# fail. (No test functions here.)
import gc
import json
import sys

from app_bench import BenchBoard
# every module first, as firmware/main.py does (a device has them frozen in flash: importing one
# later costs no heap there, but here it would load bytecode into the cut heap)
from validator import (app, clock, config, denylist, denylist_update, keyring, p256,  # noqa
                       policy, riderstate, signedfile, sync, syncproto, triplog)
from validator import syncproto as P
import heapfrag

CHUNK = 384   # the script's own chunks: it must live in the cut heap too


class Depot:
    """The depot's side of a session, built here with the protocol's own code (small pieces:
    the script's allocations share the cut heap with the reader's)."""

    def __init__(self, server, key, reader_id):
        self.server = server
        self.key = key
        self.reader_id = reader_id
        self.rid = 0
        self.session = None

    def info(self):
        self.rid += 1
        hn = bytes(range(16))
        reply = self.server.handle(P.encode_message(P.REQUEST, [self.rid, P.INFO, {"hn": hn}]))
        item = P.decode_item(P.split_message(reply)[1], 256)
        assert item[1] == P.OK, item
        self.session = P.Session(self.key, self.reader_id, item[2]["nonce"], hn)
        return item[2]

    def call(self, cmd, args):
        self.rid += 1
        reply = self.server.handle(P.encode_message(P.REQUEST, [self.rid, cmd, args],
                                                    self.session))
        item = P.decode_item(P.split_message(reply)[1], 256)
        return item[1], item[2]

    def push(self, kind, path):
        import hashlib
        with open(path, "rb") as f:
            head = f.read(19)
            ver = int.from_bytes(head[7:11], "big")
            h = hashlib.sha256(head)
            size = 19
            buf = bytearray(CHUNK)
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(memoryview(buf)[:n])
                size += n
        sha = h.digest()
        st, res = self.call(P.PUT, {"kind": kind, "ver": ver, "size": size, "sha": sha})
        assert st == P.OK, (kind, st, res)
        have = res["have"]
        with open(path, "rb") as f:
            f.seek(have)
            buf = bytearray(CHUNK)
            while have < size:
                n = f.readinto(buf)
                st, res = self.call(P.CHUNK, {"off": have, "data": memoryview(buf)[:n]})
                assert st == P.OK, (kind, st, res)
                have = res["have"]
        return self.call(P.COMMIT, {"kind": kind, "ver": ver, "sha": sha})


def main():
    spec = json.loads(open(sys.argv[1]).read())
    hole = int(sys.argv[2])
    b = BenchBoard(spec["flash"], spec["log"], blocks=spec["blocks"], log_blocks=64, t=spec["t"])
    b.provision(spec["prov"])
    r = app.Reader(b)
    assert r.set_time(spec["t"]) == "OK"
    server = sync.SyncServer(None, r, random=lambda n: bytes(n))
    depot = Depot(server, r.sync_key, r.reader_id)
    largest = 0
    free = 1 << 30
    taps = {}
    installs = []
    ballast = None
    with open(spec["script"]) as script:
        for line in script:
            step = json.loads(line)
            if ballast is None:   # (here: the script's own first allocations are made)
                ballast = heapfrag.fragment(hole)
                largest = max(largest, heapfrag.largest_free(4 * hole))
                free = min(free, gc.mem_free())
            if step[0] == "qr":
                res = r.tap_qr(step[1])
                name = P.OK if res.reason == 0 else str(res.reason)
                taps[name] = taps.get(name, 0) + 1
            elif step[0] == "push":
                depot.info()
                st, res = depot.push(step[1], step[2])
                installs.append([step[1], st, res])
            elif step[0] == "info":
                depot.info()
    info = depot.info()
    ballast = None
    gc.collect()
    print(json.dumps({"largest_after_cut": largest, "least_free_after_cut": free, "taps": taps,
                      "installs": installs, "fault": r.fault, "heap": info["heap"],
                      "versions": [info["deny"], info["keyring"], info["config"]],
                      "errors": r.counters["errors"]}))


main()
