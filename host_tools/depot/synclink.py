"""Depot side of the sync protocol (docs/sync-protocol.md): one reader on one serial port.

`SyncLink(port, keys)` sends one request at a time and waits for the answer with the same request
id; a lost request or answer is sent again (every request is idempotent, and the reader answers a
repeated authenticated request from its reply cache). Answers are accepted only with a valid tag
of the session opened by `hello()`, so a device that does not hold the reader's sync secret can
neither feed records into the depot nor fake acknowledgements.

`port` is a pyserial `Serial` (or anything with `read(n)`, `write(b)` and a short `timeout`)."""
import hashlib
import os
import time

from host_tools.common.fw import validator  # noqa: F401
from validator import framing
from validator import signedfile as sf
from validator import syncproto as P

# How long the reader may take to install a pushed file, per MiB, before it answers COMMIT: the
# ESP32 estimate of a full deny list install (docs/performance.md: 112-114 ms for 3.94 MiB on the
# unix port, x175-260, is 5-7.5 s per MiB; rounded up). The depot's wait for COMMIT grows by this.
COMMIT_S_PER_MIB = 8.0


class LinkError(Exception):
    """A sync that cannot go on. `kind`: no_answer, wrong_device, bad_auth, no_key,
    session_lost, refused, protocol, port."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class Refused(LinkError):
    """The reader answered with a status other than OK; `status` and `result` say why."""

    def __init__(self, status, result, what):
        reason = result.get("reason") if isinstance(result, dict) else None
        # the reader's own fault (OUT_OF_MEMORY, FLASH_ERROR, READER_ERROR) says what failed
        error = result.get("error") if isinstance(result, dict) else None
        detail = reason or (error if isinstance(error, str) else None)
        msg = "%s refused by the reader: %s%s" % (what, status, " (%s)" % detail if detail else "")
        super().__init__("refused", msg)
        self.status = status
        self.result = result
        self.reason = reason


def open_serial(path, baud=115200, timeout=0.05):
    """Open a port for exclusive use; LinkError(port) with a plain message if that fails (the
    caller names the port)."""
    import errno
    import serial
    try:
        return serial.Serial(path, baud, timeout=timeout, write_timeout=10, exclusive=True)
    except serial.SerialException as e:
        text = str(e)
        code = getattr(e, "errno", None)
        if code in (errno.EBUSY, errno.EAGAIN) or "exclusive" in text.lower() \
                or "busy" in text.lower() or "resource temporarily" in text.lower():
            raise LinkError("port", "port busy (another program has it open)") from e
        if code == errno.ENOENT or "No such file" in text:
            raise LinkError("port", "cannot open the port: no such device (is the reader's "
                                    "cable plugged in? `fare sync --all` finds USB ports)") from e
        if code == errno.EACCES:
            raise LinkError("port", "cannot open the port: permission denied (is this user in "
                                    "the dialout group?)") from e
        raise LinkError("port", "cannot open the port: %s" % (e.strerror or text)) from e


class SyncLink:
    def __init__(self, port, keys, timeout=2.0, retries=5, clock=time.monotonic, random=os.urandom,
                 first_rid=None):
        """`keys(reader_id) -> 32-byte sync secret or None`; `timeout`: seconds to wait for one
        answer (plus the answer's own time on the wire); `retries`: sends after the first."""
        self.port = port
        self.keys = keys
        self.timeout = timeout
        self.retries = retries
        self.clock = clock
        self.random = random
        # request ids start at a random point, so that answers still on the line from an earlier
        # connection do not match this one's ids
        if first_rid is None:
            first_rid = 1 + int.from_bytes(random(3), "big")
        self.rid = first_rid - 1
        self._hn = None
        self.decoder = framing.FrameDecoder(1 << 16)
        self.session = None
        self.info = None
        self.reader_id = None
        self.max_payload = framing.MAX_PAYLOAD
        self.baud = getattr(port, "baudrate", None) or 115200
        self.stats = {"bytes_out": 0, "bytes_in": 0, "frames_out": 0, "frames_in": 0,
                      "resends": 0, "stale": 0, "bad_tag": 0, "bad_frames": 0, "requests": 0}

    # -- one request -------------------------------------------------------------------------

    def _send(self, frame):
        self.port.write(frame)
        self.stats["bytes_out"] += len(frame)
        self.stats["frames_out"] += 1

    def _read_some(self):
        data = self.port.read(1)
        if data:
            more = getattr(self.port, "in_waiting", 0)
            if more:
                data += self.port.read(more)
            self.stats["bytes_in"] += len(data)
        return data

    def request(self, cmd, args, auth=None, what=None, more=None, wait=0.0):
        """Send one request and return (status, result). `auth` defaults to: commands that change
        the reader are tagged. Raises LinkError when no valid answer comes after all retries.
        `wait`: seconds the reader may need on top of `timeout` before it answers (COMMIT).

        `more(status, result) -> bool`: the request has several answers (a GET_LOGS stream);
        answers are collected while it says True, and the list of (status, result) is returned,
        cut short (not empty) if the stream stops arriving."""
        if auth is None:
            auth = cmd not in P.OPEN_COMMANDS
        if auth and self.session is None:
            raise LinkError("protocol", "no session: hello() first")
        self.rid += 1
        rid = self.rid
        self.stats["requests"] += 1
        frame = framing.encode(P.encode_message(P.REQUEST, [rid, cmd, args],
                                                self.session if auth else None))
        bad_tags = 0
        foreign = 0       # frames (damaged or not) that were no answer of ours
        answered = 0      # tries after which bytes came back
        got = []
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["resends"] += 1
            self._send(frame)
            deadline = self.clock() + self.timeout + wait + self._wire_time(self.max_payload)
            heard = False
            while self.clock() < deadline:
                data = self._read_some()
                if not data:
                    continue
                heard = True
                bad_before = self.decoder.bad
                payloads = self.decoder.feed(data)
                self.stats["bad_frames"] += self.decoder.bad - bad_before
                foreign += self.decoder.bad - bad_before
                for payload in payloads:
                    self.stats["frames_in"] += 1
                    ans = self._accept(payload, rid, cmd)
                    if ans is None:
                        foreign += 1
                    elif ans == "stale":
                        pass
                    elif ans == "bad_tag":
                        bad_tags += 1
                    elif ans == "session_lost":
                        if got:
                            return got
                        raise LinkError("session_lost", "the reader lost the session (did it reboot?)")
                    elif ans is not None:
                        if more is None:
                            return ans
                        got.append(ans)
                        if not more(*ans):
                            return got
                        deadline = self.clock() + self.timeout + self._wire_time(self.max_payload)
            if got:
                return got  # the stream broke off: the caller asks again from where it got to
            answered += heard
        what = what or P.COMMAND_NAMES.get(cmd, str(cmd))
        if bad_tags:
            raise LinkError("bad_auth", "%s: answers carry a wrong tag: the depot's sync secret "
                                        "for reader %s does not match the reader's" % (what, self.reader_id))
        # Whether something other than a reader is on the port: only INFO can tell, as inside a
        # session the reader has shown itself and stray bytes are the line's. Frames that are not
        # our answer (an echo of our request, another protocol, a wrong baud rate), or bytes after
        # more than one try (a REPL's banner and prompt), are a device; half a frame once and
        # then silence is a cable pulled during the answer.
        if cmd == P.INFO and (foreign or answered > 1):
            raise LinkError("wrong_device", "%s: the device on the port answers, but not as a fare "
                                            "reader (%d frame(s) not ours, bytes after %d of %d tries); "
                                            "another device, a REPL, or a wrong baud rate?"
                            % (what, foreign, answered, self.retries + 1))
        raise LinkError("no_answer", "%s: no answer after %d tries" % (what, self.retries + 1))

    def _accept(self, payload, rid, cmd):
        """(status, result) of our answer ((status, result, signed, tag) for INFO), "bad_tag",
        "session_lost", "stale" (a reader's answer to an earlier INFO), or None: not our answer."""
        parts = P.split_message(payload)
        if parts is None or parts[0] != P.REPLY:
            self.stats["stale"] += 1
            return None
        _, body, signed, tag = parts
        item = P.decode_item(body, max_items=4096)
        if item is None or item[0] != rid:
            self.stats["stale"] += 1  # an answer to an earlier try or request
            return None
        status, result = item[1], item[2]
        if cmd == P.INFO:
            if isinstance(result, dict) and result.get("proto") == P.PROTO \
                    and result.get("hn") != self._hn:
                self.stats["stale"] += 1  # an answer to an INFO of an earlier connection
                return "stale"            # (from a reader all the same)
            return status, result, signed, tag  # the tag is checked by hello()
        if tag is None:
            # An untagged answer to our request id inside a session: the reader has no session
            # any more (it rebooted), or someone else answers. Either way this session is over.
            return "session_lost"
        if not self.session.check(signed, tag):
            self.stats["bad_tag"] += 1
            return "bad_tag"
        return status, result

    def _wire_time(self, nbytes):
        return 10.0 * framing.max_wire_size(nbytes) / self.baud

    # -- commands ------------------------------------------------------------------------------

    def hello(self):
        """INFO: open a session. Returns the reader's info dict; raises LinkError(wrong_device,
        no_key, bad_auth) when the answer is not from a reader whose secret the depot holds."""
        hn = self._hn = bytes(self.random(P.NONCE_SIZE))
        self.session = None
        status, info, signed, tag = self.request(P.INFO, {"hn": hn}, auth=False)
        if status != P.OK or not isinstance(info, dict) or info.get("proto") != P.PROTO \
                or not P.is_uint(info.get("id")) or not isinstance(info.get("nonce"), bytes):
            raise LinkError("wrong_device", "the device answers but not as a fare reader "
                                            "(protocol %r, status %s)" % (
                                                info.get("proto") if isinstance(info, dict) else None, status))
        rid = info["id"]
        self.reader_id = rid
        key = self.keys(rid)
        if key is None:
            raise LinkError("no_key", "no sync secret for reader %d in the depot's keys" % rid)
        session = P.Session(key, rid, info["nonce"], hn)
        if tag is None or not session.check(signed, tag):
            raise LinkError("bad_auth", "bad authentication: reader %d does not prove the depot's "
                                        "sync secret (wrong key file, or not that reader)" % rid)
        self.session = session
        self.info = info
        if P.is_uint(info.get("max"), 1 << 16) and info["max"] >= 512:
            self.max_payload = info["max"]
        return info

    def _ok(self, cmd, args, what=None, wait=0.0):
        status, result = self.request(cmd, args, what=what, wait=wait)
        if status != P.OK:
            raise Refused(status, result, what or P.COMMAND_NAMES[cmd])
        return result

    def get_logs(self, from_seq, max_bytes=None, frames=1):
        """Unacknowledged records from `from_seq` on: a list of (first seq, [stored record bytes])
        answers, one per frame, consecutive; [(from_seq or later, [])] when there are none.
        `frames` > 1 asks the reader to stream that many answers for one request (no turnaround
        between frames). A stream that breaks off returns the answers that arrived in order."""
        if max_bytes is None:
            max_bytes = self.max_payload

        def more(status, res):
            if status != P.OK:
                return False
            if not isinstance(res, list) or len(res) != 4 or not P.is_uint(res[0]) \
                    or not isinstance(res[1], list) or not all(isinstance(r, bytes) for r in res[1]) \
                    or not isinstance(res[2], bool) or not P.is_uint(res[3], frames - 1):
                raise LinkError("protocol", "GET_LOGS: malformed answer")
            return res[2]

        for _ in range(self.retries + 1):
            answers = self.request(P.GET_LOGS, {"from": from_seq, "max": max_bytes, "n": frames},
                                   more=more)
            out = []
            for status, res in answers:
                if status != P.OK:
                    if out:
                        break
                    raise Refused(status, res, "GET_LOGS")
                if res[3] < len(out):
                    continue  # a repeated answer (the line doubled a frame)
                if res[3] > len(out):
                    break  # an answer was lost: keep what came in order
                out.append((res[0], res[1]))
            if out:
                return out
            self.stats["resends"] += 1  # the stream's first answer was lost: ask again
        raise LinkError("no_answer", "GET_LOGS: the first answer never arrived")

    def ack(self, seq):
        return self._ok(P.ACK, {"seq": seq})

    def set_time(self, t, allow_backwards=False):
        return self._ok(P.SET_TIME, {"t": int(t), "back": bool(allow_backwards)})

    def reboot(self):
        return self._ok(P.REBOOT, {})

    def push(self, kind, data, progress=None, commit=True):
        """Send a signed envelope (`kind` one of syncproto.KINDS) in chunks and commit it.
        Returns "installed", "already" (the reader has this version) or "newer_installed" (not
        sent: the reader has a newer one). Resumes a half-done upload of the same file.
        `progress(sent, total)` is called after each chunk. `commit=False`: stop before COMMIT
        ("uploaded"; tests)."""
        h = sf.parse_header(bytes(data[:sf.HEADER_SIZE]))
        if h is None:
            raise LinkError("protocol", "%s: not a signed file" % kind)
        if self.info is not None:
            installed = self.info.get(P.VERSION_FIELD[kind], 0)
            if P.is_uint(installed) and installed >= h.version:
                return "already" if installed == h.version else "newer_installed"
        sha = hashlib.sha256(data).digest()
        what = "push of %s version %d" % (kind, h.version)
        res = self._ok(P.PUT, {"kind": kind, "ver": h.version, "size": len(data), "sha": sha}, what)
        have = res["have"]
        room = self.max_payload - 96  # message framing around the chunk bytes
        while have < len(data):
            status, res = self.request(P.CHUNK, {"off": have, "data": bytes(data[have:have + room])},
                                       what=what)
            if status == P.OFFSET and isinstance(res, dict) and P.is_uint(res.get("have")):
                have = res["have"]  # the reader holds less (or more) than we thought: go on from there
                continue
            if status != P.OK:
                raise Refused(status, res, what)
            have = res["have"]
            if progress:
                progress(have, len(data))
        if not commit:
            return "uploaded"
        # the reader installs inside its answer to COMMIT: wait for it in proportion to the file
        res = self._ok(P.COMMIT, {"kind": kind, "ver": h.version, "sha": sha}, what,
                       wait=COMMIT_S_PER_MIB * len(data) / (1 << 20))
        return "already" if res.get("already") else "installed"
