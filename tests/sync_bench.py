"""Shared by the depot-sync tests on CPython: a reader (tests/mp/sync_testreader.py: the real trip
log on a simulated flash, the real clock) served by validator.sync in process, a depot database,
and helpers to talk to the server's message logic directly. (No test functions here.)"""
import hashlib
import os
import sys

import pytest

from mpharness import ROOT

sys.path.insert(0, str(ROOT / "boards" / "unix_sim"))
sys.path.insert(0, str(ROOT / "tests" / "mp"))
import flashdev  # noqa: E402
from host_tools.depot import readersync, depotdb, synclink  # noqa: E402
from host_tools.common import ecsign, signedfile
from sync_loopback import FakeClock, Link, LoopbackPort, ServerUart  # noqa: E402
from sync_testreader import KEY, RID, T0, FakeTime, SyncTestReader  # noqa: E402
from validator import sync  # noqa: E402
from validator import syncproto as P  # noqa: E402

NOW = T0 + 86400


@pytest.fixture(scope="module")
def opkey():
    return ecsign.new_key()


class DetRandom:
    """Deterministic stand-in for os.urandom (nonces, first request id), so that two runs put the
    same bytes on the wire up to the point where a fault makes them differ."""

    def __init__(self, seed):
        self.seed = seed
        self.n = 0

    def __call__(self, k):
        self.n += 1
        return hashlib.sha256(self.seed + self.n.to_bytes(4, "big")).digest()[:k]


class Bench:
    """A reader (SyncTestReader: real trip log and clock) with its SyncServer, and a depot DB."""

    def __init__(self, tmp, opkey, records=0, blocks=40, reader_id=RID, key=KEY, log=None):
        self.dir = tmp / ("r%d" % reader_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dev = flashdev.FlashDev(blocks, path=str(self.dir / "log.img"))
        self.reader = SyncTestReader(str(self.dir), self.dev, reader_id=reader_id, sync_key=key,
                                     operator_keys={1: (ecsign.public_bytes(opkey), 0)},
                                     time_source=FakeTime(T0))
        if log is not None:
            self.reader.log = log(self.reader.log)
        self.reader.add_records(records)
        self.server = sync.SyncServer(ServerUart(), self.reader, random=DetRandom(b"reader"))
        self.host_random = DetRandom(b"host")
        self.db_path = str(tmp / "depot.sqlite")
        self.keys = {reader_id: key}
        self.clock = FakeClock()

    def link(self, keys=None, fault=None, link=None):
        self.wire = link or Link(*(fault or (None, None)))
        port = LoopbackPort(self.server, self.wire, self.clock)
        return synclink.SyncLink(port, (keys or self.keys).get, timeout=0.5, retries=3,
                                 random=self.host_random,
                                 clock=self.clock)

    def sync(self, keys=None, link=None, **kw):
        res = readersync.Result("loop")
        db = depotdb.connect(self.db_path)
        try:
            readersync.ReaderSync(link or self.link(keys), db, res, keys or self.keys,
                             now=lambda: NOW, **kw).run()
            res.status = "ok"
        except (synclink.LinkError, readersync.SyncProblem) as e:
            res.status = e.kind
            res.message = str(e)
        finally:
            db.close()
        return res

    def db(self):
        return depotdb.connect(self.db_path)


def seal(opkey, kind, version, body=None, key_id=1):
    return signedfile.seal(kind, version, body if body is not None else os.urandom(700), opkey,
                           key_id, created=T0)


def req(server, rid, cmd, args, session=None):
    """Send one request to the server's message logic; (status, result, tag-ok or None)."""
    reply = server.handle(P.encode_message(P.REQUEST, [rid, cmd, args], session))
    mtype, body, signed, tag = P.split_message(reply)
    assert mtype == P.REPLY
    item = P.decode_item(body, max_items=4096)
    ok = None if tag is None or session is None else session.check(signed, tag)
    return item[1], item[2], ok


def open_session(server, key=KEY, rid=1):
    hn = os.urandom(16)
    status, info, _ = req(server, rid, P.INFO, {"hn": hn})
    assert status == P.OK
    return P.Session(key, info["id"], info["nonce"], hn), info
