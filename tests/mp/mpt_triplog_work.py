# Shared by the trip log tests on MicroPython: a deterministic tap workload and the checks made after
# every power cut. (No test functions here.)
# (the trip log first: compiling it from source needs the largest blocks of a 110 KB heap)
from validator import triplog as tl

import os

import flashdev

RID = 4242
BLOCKS = 8  # 2 ack blocks + 6 segments of 4 KiB: the workload wraps the ring about three times
TAPS = 300
REOPEN_AT = 150  # a clean reboot in the middle of the workload


_PAT = bytes(range(256)) * 3


def gen(seq):
    """The record of tap `seq`: accepted QR taps carry a ride code of 0-420 bytes, rejected ones none."""
    ok = seq % 3 != 0
    return {"time": 1760000000 + 7 * seq, "decision": 1 if ok else 0, "reason": 0 if ok else 20,
            "kind": "qr" if seq % 4 else "nfc", "cred_id": bytes([seq & 255]) * 16 if seq % 5 else b"",
            "account": 10 ** 12 + seq, "counter": seq * 3, "fare": 200 if ok else 0, "line": 42,
            "stop": seq % 17, "raw": _PAT[seq & 255:(seq & 255) + (seq * 53) % 421] if ok else b""}


KEY = b"per-reader log key 32 bytes long"  # a keyed chain, as the reader app keeps it


class Links:
    """links[s] = the chain value after record s of the workload (links[0] = genesis), kept in one
    bytearray: a list of small bytes objects would fragment the 110 KB heap. `key` is the log's
    chain key (None: a plain hash chain); the checks take it from here."""

    def __init__(self, n, key=None):
        self.key = key
        self.t = bytearray(16 * (n + 1))
        self.t[0:16] = tl.genesis(RID)
        for s in range(1, n + 1):
            self.t[16 * s:16 * s + 16] = tl.link(tl.encode(gen(s), s, RID, self[s - 1], key), key)

    def __getitem__(self, s):
        return bytes(self.t[16 * s:16 * s + 16])


def chain_table(n, key=None):
    return Links(n, key)


def fresh(path, blocks=BLOCKS):
    try:
        os.remove(path)
    except OSError:
        pass
    return flashdev.FlashDev(blocks, path=path)


def workload(dev, progress, taps=TAPS, reopen_at=REOPEN_AT, ack_every=37, key=None):
    """Taps with an ack now and then and one reboot. After every other ack, housekeeping erases
    the reclaimed segments two at a time; after the others, the appends erase them on demand.
    progress = [last seq whose append returned, last ack that returned, ack in flight,
    1 while housekeeping runs]."""
    log = tl.TripLog(dev, RID, key=key)
    for i in range(taps):
        if i == reopen_at:
            log = tl.TripLog(dev, RID, key=key)
        seq = log.append(gen(log.last_seq + 1))
        assert seq == progress[0] + 1
        progress[0] = seq
        if i % ack_every == ack_every - 1 and seq > 12:
            progress[2] = seq - 12
            log.ack(seq - 12)
            progress[1] = seq - 12
            if i % (2 * ack_every) == ack_every - 1:
                progress[3] = 1
                while log.housekeeping(2):
                    pass
                progress[3] = 0
    return log


def check_recovered(dev, progress, links, extra_rec):
    """After a cut: everything that returned is there, byte for byte; the chain holds; the next record
    takes the next number and survives another reboot."""
    appended, acked, in_flight = progress[:3]
    key = links.key
    log = tl.TripLog(dev, RID, key=key)
    assert acked <= log.ack_seq <= max(acked, in_flight), (log.ack_seq, progress)
    assert appended <= log.last_seq <= appended + 1, (log.last_seq, progress)
    check_contents(log, links)
    before = log.last_seq
    new = log.append(extra_rec)
    assert new == before + 1 and new > appended and new > log.ack_seq
    if log.pending > 1:
        log.ack(log.ack_seq + 1)  # the first watermark entry after the boot
    if hasattr(dev, "settle"):
        dev.settle()  # cells left weak by the cut flip now: nothing written since may change
    log2 = tl.TripLog(dev, RID, key=key)
    # (an ack entry whose write was cut may show up whole once its cells flip: that ack is done)
    assert log2.last_seq == new and log2.ack_seq in (log.ack_seq, max(log.ack_seq, in_flight)), (
        log2.last_seq, log2.ack_seq, new, log.ack_seq, progress)
    last = check_contents(log2, links, upto=new - 1)
    d = tl.decode(last, key)
    assert d["seq"] == new and d["raw"] == extra_rec["raw"] and d["prev_link"] == links[new - 1]
    return log2


def records(log, from_seq, chunk=2048):
    """Every record the log returns from `from_seq` on, read in depot-sized pieces."""
    while True:
        got = log.read(from_seq, chunk)
        if not got:
            return
        total = 0
        for r in got:
            total += len(r)
            yield r
        assert len(got) == 1 or total <= chunk
        from_seq = tl.decode(got[-1])["seq"] + 1


def check_contents(log, links, upto=None):
    """Every unacknowledged record is present, byte-identical to what was appended (up to seq
    `upto`; later ones only need to chain), in order, chained. Returns the last record."""
    if upto is None:
        upto = log.last_seq
    key = links.key
    expect = log.ack_seq + 1
    assert log._ack_link == links[log.ack_seq]  # what the watermark stored, or genesis
    prev = links[log.ack_seq]
    r = None
    for r in records(log, 0):
        if expect <= upto:
            assert r == tl.encode(gen(expect), expect, RID, links[expect - 1], key), "record %d differs" % expect
        prev, seq = tl.verify_chain(prev, [r], key, prev_seq=expect - 1)
        expect += 1
    assert expect == log.last_seq + 1, (expect, log.last_seq)
    return r


class WeakCellDev(flashdev.FlashDev):
    """Flash whose operation cut by the power leaves weak cells: an interrupted program reads as
    if nothing landed (0xFF), an interrupted erase as if it completed (0xFF), until settle() makes
    them flip: the program's bytes appear, the erased block's old 0 bits come back. An erase of
    the block in between makes the cells good again."""

    def __init__(self, blocks, block_size=flashdev.BLOCK_SIZE, path=None):
        flashdev.FlashDev.__init__(self, blocks, block_size, path)
        self.weak = []  # (block, offset, bytes) of each cut program; (block, None, None) of an erase

    def _cut_now(self):
        return not self.dead and self.cut_after >= 0 and self.ops >= self.cut_after

    def writeblocks(self, block, buf, offset=None):
        if self._cut_now():
            self.dead = True
            self.weak.append((block, offset or 0, bytes(buf)))
            raise flashdev.PowerCut(5)
        flashdev.FlashDev.writeblocks(self, block, buf, offset)

    def ioctl(self, op, arg):
        if op == 6 and self._cut_now():
            # keep the old contents aside (outside the heap), read back 0xFF for now
            buf = bytearray(256)
            with open("%s.weak%d" % (self.path, arg), "wb") as f:
                for off in range(0, self.block_size, 256):
                    self.readblocks(arg, buf, off)
                    f.write(buf)
            self._file.seek(arg * self.block_size)
            flashdev._fill_ff(self._file, self.block_size)
            self.dead = True
            self.weak.append((arg, None, None))
            raise flashdev.PowerCut(5)
        if op == 6:  # a complete erase: the block's weak cells are gone
            self.weak = [c for c in self.weak if c[0] != arg]
        return flashdev.FlashDev.ioctl(self, op, arg)

    def settle(self):
        """The weak cells flip (later, after some boots)."""
        buf = bytearray(256)
        for block, off, data in self.weak:
            if data is not None:
                self._program(block * self.block_size + off, data)
                continue
            with open("%s.weak%d" % (self.path, block), "rb") as f:
                for off in range(0, self.block_size, 256):
                    f.readinto(buf)
                    self._program(block * self.block_size + off, buf)
        self.weak = []

    def revive(self):
        self._file.close()
        dev = WeakCellDev(self.blocks, self.block_size, path=self.path)
        dev.temporary = self.temporary
        dev.weak = self.weak
        return dev

    def close(self, delete=None):
        flashdev.FlashDev.close(self, delete)
        for b in range(self.blocks):
            try:
                os.remove("%s.weak%d" % (self.path, b))
            except OSError:
                pass
