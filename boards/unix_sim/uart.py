# A pty standing in for a machine.UART on the unix port: the same read/readinto/write/any
# methods, never blocking on reads. The emulators (host_tools/sim/pn532_emu.py, qr_emu.py) hold the
# pty's master side; the firmware opens the slave path given by the board.
import termios

# Linux termios values (MicroPython's termios module has only a few constants)
_VTIME = 5   # indexes into the control characters
_VMIN = 6
_IFLAG_OFF = 0x1 | 0x2 | 0x8 | 0x20 | 0x40 | 0x80 | 0x100 | 0x400 | 0x1000
#            IGNBRK BRKINT PARMRK ISTRIP INLCR IGNCR ICRNL IXON IXOFF
_OPOST = 0x1
_LFLAG_OFF = 0x1 | 0x2 | 0x8 | 0x40 | 0x8000   # ISIG ICANON ECHO ECHONL IEXTEN
_CSIZE = 0x30
_PARENB = 0x100
_CS8 = 0x30


class PtyUart:
    def __init__(self, path, baudrate=115200, rxbuf=256):
        self.path = path
        self.baudrate = baudrate        # a pty has no line speed; kept for the board's records
        self._f = open(path, "r+b", buffering=0)
        fd = self._f.fileno()
        # raw bytes (no echo, no CR/LF translation, no line buffering); VMIN=0 VTIME=0: a read
        # returns at once with what is there, so read(n) never waits for n bytes. Not
        # termios.setraw(): it flushes input, and the peer may have written already.
        attrs = termios.tcgetattr(fd)
        attrs[0] &= ~_IFLAG_OFF
        attrs[1] &= ~_OPOST
        attrs[2] = (attrs[2] & ~(_CSIZE | _PARENB)) | _CS8
        attrs[3] &= ~_LFLAG_OFF
        attrs[6][_VMIN] = 0
        attrs[6][_VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self._rx = bytearray(rxbuf)     # bytes read ahead by any()
        self._n = 0

    def _pull(self):
        if self._n == 0:
            n = self._f.readinto(self._rx)
            self._n = n or 0
        return self._n

    def any(self):
        """Bytes waiting (at least those read ahead; more may be in the pty)."""
        return self._pull()

    def readinto(self, buf, nbytes=None):
        want = len(buf) if nbytes is None else min(nbytes, len(buf))
        got = 0
        mv = memoryview(buf)
        while got < want:
            if not self._pull():
                break
            k = min(self._n, want - got)
            mv[got:got + k] = memoryview(self._rx)[:k]
            if k < self._n:
                self._rx[0:self._n - k] = self._rx[k:self._n]
            self._n -= k
            got += k
        return got if got else None

    def read(self, nbytes=None):
        buf = bytearray(nbytes if nbytes is not None else 256)
        n = self.readinto(buf)
        if not n:
            return None
        return bytes(buf[:n])

    def write(self, data):
        mv = memoryview(data)
        off = 0
        while off < len(mv):
            n = self._f.write(mv[off:])
            if not n:
                break
            off += n
        return off

    def close(self):
        self._f.close()
