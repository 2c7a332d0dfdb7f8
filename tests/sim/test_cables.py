"""The serial cables of the simulator (host_tools/sim/nullmodem.py) and of the sync tests
(tests/ptyrelay.py): an end that stops reading does not stop the cable. A pty takes about 14 KB;
a cable that blocked on a write once held a test for ever (the host had closed its port while the
reader still answered)."""
import os
import select
import time

import serial

from host_tools.sim.nullmodem import NullModem
from ptyrelay import PtyRelay

LOT = bytes(range(256)) * 400   # 100 KB, far more than a pty holds


def _read(port, n, seconds=10):
    got = bytearray()
    deadline = time.monotonic() + seconds
    while len(got) < n and time.monotonic() < deadline:
        got += port.read(n - len(got))
    return bytes(got)


def _write_nonblocking(path, data):
    """Write what the end takes within a moment; returns how much."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    sent, deadline = 0, time.monotonic() + 5
    try:
        while sent < len(data) and time.monotonic() < deadline:
            select.select([], [fd], [], 0.05)
            try:
                sent += os.write(fd, data[sent:sent + 4096])
            except BlockingIOError:
                pass
    finally:
        os.close(fd)
    return sent


def test_a_relay_whose_host_stopped_reading_still_connects_and_closes():
    relay = PtyRelay()
    try:
        relay.connect()                       # a host side nobody reads
        assert _write_nonblocking(relay.reader_path, LOT) == len(LOT)
        t0 = time.monotonic()
        host = relay.connect()                # a new cable: the old one's bytes are gone
        with serial.Serial(host, timeout=0.2) as port:
            assert _write_nonblocking(relay.reader_path, b"hello") == 5
            got, deadline = bytearray(), time.monotonic() + 10
            while not got.endswith(b"hello") and time.monotonic() < deadline:
                got += port.read(4096)   # (the end of the 100 KB the reader sent may come first)
            assert got.endswith(b"hello")
        assert time.monotonic() - t0 < 5
    finally:
        t0 = time.monotonic()
        relay.close()
        assert time.monotonic() - t0 < 5


def test_a_null_modem_carries_both_ways_while_one_end_does_not_read():
    with NullModem() as cable:
        with serial.Serial(cable.a, timeout=0.2, write_timeout=5) as a, \
                serial.Serial(cable.b, timeout=0.2) as b:
            a.write(LOT)                      # b does not read yet: the bytes wait in the cable
            b.write(b"ping")                  # and b -> a still goes through
            assert _read(a, 4) == b"ping"
            assert _read(b, len(LOT)) == LOT
        assert cable.bytes == {"ab": len(LOT), "ba": 4}
