"""Trip log: flash cost and latency of one tap, raw-region log (validator.triplog) vs a flushed
littlefs append of the same record bytes, on the MicroPython unix port.

Run: .venv/bin/python bench/run.py triplog
Figures go to docs/performance.md, section "Trip log"."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mpharness import run_mp  # noqa: E402

TAPS = 600  # littlefs (a 256 KiB region holds about 650 records)
RAW_TAPS = 2000  # the raw log wraps its ring about three times
BLOCKS = 64  # a 256 KiB region for both variants

# Typical SPI NOR flash on ESP32 modules (e.g. Winbond W25Q32JV datasheet): page program 0.4 ms typ
# (3 ms max) per 256-byte page, 4 KiB sector erase 45 ms typ (400 ms max).
T_PAGE_MS, T_PAGE_MAX_MS = 0.4, 3.0
T_ERASE_MS, T_ERASE_MAX_MS = 45.0, 400.0
CPU_FACTOR = (175, 260)  # interpreter-bound code, unix port on x86 -> ESP32 (MISSION.md)

COMMON = r"""
import time, gc, array, flashdev
from validator import triplog as tl
TAPS = %d
BLOCKS = %d
RAW = bytes(range(256)) * 2

def rec(i):
    ok = i %% 5 != 0   # one tap in five rejected, without the ride code
    return {"time": 1760000000 + i, "decision": 1 if ok else 0, "reason": 0 if ok else 20,
            "kind": "qr", "cred_id": b"C" * 16, "account": 10**12 + i, "counter": i,
            "fare": 200 if ok else 0, "line": 42, "stop": i %% 30, "raw": RAW[:360] if ok else b""}

class RamDev:
    # Flash in RAM with the same interface and bit rules, to time the log's own CPU work.
    def __init__(self, blocks, bs=4096):
        self.bs, self.blocks, self.mem = bs, blocks, bytearray(b"\xff" * (blocks * bs))
    def readblocks(self, b, buf, off=0):
        a = b * self.bs + off
        buf[:] = self.mem[a:a + len(buf)]
    def writeblocks(self, b, buf, off=0):
        a = b * self.bs + off
        self.mem[a:a + len(buf)] = buf   # erased flash: plain copy is what AND would give
    def ioctl(self, op, arg):
        if op == 4: return self.blocks
        if op == 5: return self.bs
        if op == 6:
            a = arg * self.bs
            self.mem[a:a + self.bs] = b"\xff" * self.bs
        return 0

def stats(us):
    gc.collect()
    us = sorted(us)
    return "%%d %%d %%d %%d" %% (sum(us) // len(us), us[len(us) // 2], us[len(us) * 99 // 100], us[-1])
""" % (TAPS, BLOCKS)

RAW_LOG = COMMON + r"""
US = array.array("I", [0] * TAPS)  # preallocated: growing it would fail in a fragmented heap

def run(mode):
    # "ack": the ack erases what it frees; "idle": the reader's loop erases one block ahead of
    # need between taps (housekeeping, as app.py does); "demand": nobody erases ahead, the tap
    # that opens a segment erases it
    dev = flashdev.FlashDev(BLOCKS)
    log = tl.TripLog(dev, 7)
    dev.reset_counters()
    us = US
    tap_erases = worst = size = 0
    for i in range(1, TAPS + 1):
        if mode == "idle":
            log.housekeeping(1)
        e = dev.erases
        t = time.ticks_us()
        log.append(rec(i))
        us[i - 1] = time.ticks_diff(time.ticks_us(), t)
        tap_erases += dev.erases - e
        worst = max(worst, dev.erases - e)
        size += len(tl.encode(rec(i), i, 7, bytes(16)))
        if i % 200 == 0:  # the depot acknowledges
            log.ack(i - 20, erase=(mode == "ack"))
    print(mode, TAPS, dev.erases, tap_erases, worst, dev.programs,
          dev.bytes_programmed, size // TAPS, stats(us))
    dev.close()

run("ack")
run("idle")
run("demand")
# boot with a log filled to the warning level; read it all in 2 KiB pages; acknowledge it all
dev = flashdev.FlashDev(BLOCKS)
log = tl.TripLog(dev, 7)
i = 0
while log.state == "ok":
    i += 1
    log.append(rec(i))
log = None
gc.collect()
dev.reset_counters()
t = time.ticks_us()
log = tl.TripLog(dev, 7)
boot = time.ticks_diff(time.ticks_us(), t)
reads = dev.reads
t = time.ticks_us()
n = frm = 0
while True:
    page = log.read(frm, 2048)
    if not page:
        break
    n += len(page)
    frm = tl.decode(page[-1])["seq"] + 1
rd = time.ticks_diff(time.ticks_us(), t)
print("boot", log.pending, boot, reads, n, rd)
e = dev.erases
t = time.ticks_us()
log.ack(log.last_seq)
dt = time.ticks_diff(time.ticks_us(), t)
ack_erases = dev.erases - e
rounds = 0
while log.housekeeping(1):
    rounds += 1
print("ackall", dt, ack_erases, rounds + 1)
dev.close()
"""

RAM_CPU = COMMON + r"""
dev = RamDev(16)
log = tl.TripLog(dev, 7)
us = array.array("I")
for i in range(1, TAPS + 1):
    t = time.ticks_us()
    log.append(rec(i))
    us.append(time.ticks_diff(time.ticks_us(), t))
    if i % 50 == 0:
        log.ack(i - 5)
print("cpu", stats(us))
"""

LFS = COMMON + r"""
import vfs
dev = flashdev.FlashDev(BLOCKS)
flashdev.mount(dev, "/lfs")
prev = tl.genesis(7)
f = open("/lfs/trips.bin", "ab")
dev.reset_counters()
us = array.array("I")
worst = 0
for i in range(1, TAPS + 1):
    data = tl.encode(rec(i), i, 7, prev)
    prev = tl.link(data)
    e = dev.erases
    t = time.ticks_us()
    f.write(data)
    f.flush()
    us.append(time.ticks_diff(time.ticks_us(), t))
    worst = max(worst, dev.erases - e)
f.close()
flashdev.umount("/lfs")
dev.close()
print("lfs", TAPS, dev.erases, dev.erases, worst, dev.programs, dev.bytes_programmed, 0, stats(us))
"""


def esp32_ms(erases, programs, nbytes, taps, erase_ms, page_ms):
    pages = nbytes / 256 + programs  # each program also touches one partial page, roughly
    return (erases * erase_ms + pages * page_ms) / taps


def main():
    raw = run_mp(RAW_LOG.replace("TAPS = %d" % TAPS, "TAPS = %d" % RAW_TAPS), heap="4m").split("\n")
    cpu = run_mp(RAM_CPU, heap="4m").split()
    lfs = run_mp(LFS, heap="4m").split()
    r, idle, lazy, boot, ackall = (line.split() for line in raw[:5])
    print("workload: 4 in 5 taps accepted with a 360-byte ride code (mean record %s bytes); "
          "%d-block (%d KiB) region; raw log: %s taps, ack every 200; littlefs: %s taps"
          % (r[7], BLOCKS, BLOCKS * 4, r[1], lfs[1]))
    print()
    print("%-30s %7s %7s %6s %8s %9s %10s %10s %24s" % (
        "per tap", "erases", "in tap", "worst", "programs", "bytes", "ESP32 avg", "ESP32 worst",
        "unix us mean/p50/p99/max"))
    for name, row in (("raw region, erase at ack", r), ("raw, erased while idle", idle),
                      ("raw region, erase on demand", lazy),
                      ("littlefs file, flush per tap", lfs)):
        taps, er, tap_er, worst, pr, nb = (int(x) for x in row[1:7])
        avg = esp32_ms(tap_er, pr, nb, taps, T_ERASE_MS, T_PAGE_MS)
        # worst tap: its erases at the datasheet maximum, plus a record's pages at their maximum
        wmax = worst * T_ERASE_MAX_MS + (nb / taps / 256 + 2) * T_PAGE_MAX_MS
        print("%-30s %7.3f %7.3f %6d %8.2f %9.0f %7.1f ms %7.0f ms %24s" % (
            name, er / taps, tap_er / taps, worst, pr / taps, nb / taps, avg, wmax, "/".join(row[8:])))
    print()
    print("ESP32 columns: flash time a tap waits for, from typical datasheet figures (4 KiB erase "
          "%.0f ms typ / %.0f ms max, 256-byte page %.1f ms typ / %.0f ms max); 'worst' = most erases "
          "in one tap. Unix latency includes the simulated flash (Python file I/O)."
          % (T_ERASE_MS, T_ERASE_MAX_MS, T_PAGE_MS, T_PAGE_MAX_MS))
    print("littlefs / raw (erase at ack): %.1fx the erases (wear), %.1fx the bytes programmed" % (
        (int(lfs[2]) / int(lfs[1])) / (int(r[2]) / int(r[1])), (int(lfs[6]) / int(lfs[1])) / (int(r[6]) / int(r[1]))))
    mean, p50, p99, mx = (int(x) for x in cpu[1:])
    print("log CPU work per append (RAM block device, unix): mean %d us, p50 %d, p99 %d, max %d "
          "-> ESP32 estimate %.0f-%.0f ms (x%d-%d)" % (mean, p50, p99, mx, mean * CPU_FACTOR[0] / 1000,
                                                     mean * CPU_FACTOR[1] / 1000, *CPU_FACTOR))
    print("boot with %s pending records (log at its warning level): recovery %s us, %s block reads; "
          "reading them all in 2 KiB pages: %s us" % (boot[1], boot[2], boot[3], boot[5]))
    print("acknowledging all of them: %s us, %s erases in the ack; then %s idle rounds of one "
          "erase each free the segments (TripLog.housekeeping)" % (ackall[1], ackall[2], ackall[3]))


if __name__ == "__main__":
    main()
