"""What the PN532 and QR scanner emulators share: a pty whose slave side the firmware opens as
its UART (optionally also reachable at a fixed symlink), and a thread that plays the device on
the master side. Subclasses set THREAD_NAME and implement _run(), looping until _stop is set."""
import os
import threading
import tty


class PtyDevice:
    THREAD_NAME = "pty-device"

    def __init__(self, link=None, log=None):
        self.link = link            # optional symlink to the slave, a stable name for the CLI
        self.log = log              # optional callable(str): a trace of the bytes
        self.path = None
        self._master = self._slave = None
        self._thread = None
        self._stop = threading.Event()

    def start(self):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        if self.link:
            if os.path.lexists(self.link):
                os.unlink(self.link)
            os.symlink(self.path, self.link)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.THREAD_NAME, daemon=True)
        self._thread.start()
        return self.path

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        if self.link and os.path.islink(self.link):
            os.unlink(self.link)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _trace(self, msg):
        if self.log:
            self.log(msg)

    def _run(self):
        raise NotImplementedError
