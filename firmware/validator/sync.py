# Reader side of the depot protocol (docs/sync-protocol.md): frames in on the sync UART, one
# command at a time, one reply out. `poll()` is one short non-blocking step for the reader's
# asyncio loop; `handle(payload)` is the pure message logic (no UART), which tests drive directly.
#
# What the reader trusts: INFO and GET_LOGS are open (reading the log changes nothing). Every
# command that changes the reader (ACK, PUT/CHUNK/COMMIT, SET_TIME, REBOOT) must carry an
# HMAC-SHA256 tag under the reader's sync secret over this session's nonces, and a request id
# above the last one accepted in the session; pushed files are also signed by the operator key and
# verified by the installer. A frame that fails any check gets an error reply and changes nothing.
import os

from validator import atomicfile, framing
from validator import syncproto as P

try:
    from micropython import const
except ImportError:  # CPython: the pure-logic tests and host tools
    def const(x):
        return x

MAX_PUT = const(8 * 1024 * 1024)   # largest pushed file (a deny list of about a million entries)
STAGING_NAME = "sync.part"
_REPLY_ROOM = const(128)          # reply bytes besides the records: headers, status, start seq, tag
MAX_STREAM = const(16)            # GET_LOGS answers sent for one request
DEFAULT_MAX_PAYLOAD = const(1280)  # holds the largest trip record (triplog.MAX_RECORD: 1,111 bytes) and more
_MIN_ENVELOPE = const(19 + 64)    # signedfile.HEADER_SIZE + SIG_SIZE: an envelope with an empty body


class SyncServer:
    """`max_payload` bounds every frame both ways (INFO tells the host); it must hold the largest
    trip record plus about 100 bytes. Two buffers are allocated once, here, while the heap is
    still whole: one frame (received frames are decoded in it, replies are framed into it: the
    protocol is half-duplex) and one reply payload."""

    def __init__(self, uart, reader, max_payload=DEFAULT_MAX_PAYLOAD, read_chunk=256,
                 write_chunk=512, random=None):
        self.uart = uart
        self.reader = reader
        self.max_payload = max_payload
        self.read_chunk = read_chunk
        self.write_chunk = write_chunk
        self.random = random or os.urandom
        self._frame = bytearray(framing.max_wire_size(max_payload))
        self._pbuf = bytearray(max_payload + framing.CRC_SIZE)
        self.decoder = framing.FrameDecoder(max_payload, self._frame)
        self._pbuf_view = None  # the reply when it was built in place in _pbuf
        self._stream = None     # (rid, from, max, frames left) of a GET_LOGS stream
        self._stream_rid = 0
        self._out_n = 0      # length of the framed reply waiting in _frame
        self._out_off = 0    # how much of it went out
        self._reboot = False
        self.rebooted = False
        self._session = None
        self._hn = self._rn = None
        self._last_rid = 0
        self._last_tag = None
        self._last_reply = None
        self._upload = None  # [kind, version, size, sha, have] of the staged upload
        self.staging = reader.staging_dir + "/" + STAGING_NAME
        self.counters = {"requests": 0, "errors": 0, "auth_fail": 0, "faults": 0}
        self.last_fault = None

    # -- the UART side -----------------------------------------------------------------------

    def poll(self):
        """One bounded step: send a piece of the pending reply, or take in what arrived and
        answer one request. Returns True while there is more to do right away."""
        if self._out_n:
            end = min(self._out_off + self.write_chunk, self._out_n)
            n = self.uart.write(memoryview(self._frame)[self._out_off:end])
            self._out_off += n or 0
            if self._out_off >= self._out_n:
                self._out_n = 0
                if self._reboot:
                    self._reboot = False
                    self.rebooted = True
                    self.reader.reboot()
            return True
        payload = self.decoder.next()
        if payload is None:
            data = self.uart.read(self.read_chunk)
            if data:
                self.decoder.push(data)
                payload = self.decoder.next()
                if payload is None:
                    return True
            elif self._stream is None:
                return False
        if payload is None and (self.decoder.n or self.decoder.skipping):
            # Part of a new request is held in _frame, where the next answer would be framed:
            # the request ends the stream (the depot asks again from where the stream stopped).
            self._stream = None
            return False
        if payload is not None:
            self._stream = None  # a new request ends a GET_LOGS stream
            reply = self.handle(payload)
        else:
            reply = self._stream_frame()  # the next answer of a GET_LOGS stream
        if reply is not None:
            if reply is not self._pbuf_view:
                self._pbuf[:len(reply)] = reply
            self._out_n = framing.encode_into(self._pbuf, len(reply), self._frame)
            self._out_off = 0
        return True

    def serve_forever(self, stop=None, idle_ms=20):
        """Serve until the reader reboots or `stop()` says so (tests, the simulated board)."""
        wait = getattr(self.uart, "wait", None)
        while not self.rebooted and not (stop and stop()):
            if not self.poll():
                if wait is not None:
                    wait(idle_ms)
                else:
                    import time
                    time.sleep_ms(1)

    # -- the message logic --------------------------------------------------------------------

    def handle(self, payload):
        """The reply payload for one request payload (None: not a request, no answer)."""
        self.counters["requests"] += 1
        parts = P.split_message(payload)
        if parts is None or parts[0] != P.REQUEST:
            if parts is not None and parts[0] == P.REPLY:
                return None  # our own echo or a confused peer: never answer a reply
            return self._error(0, P.MALFORMED)
        _, body, signed, tag = parts
        # byte strings stay in the frame buffer (a pushed chunk is about 1.2 KB): nothing past a
        # command's own handling may keep them without a copy
        item = P.decode_item(body, views=True)
        if item is None or not P.is_uint(item[0]) or not P.is_uint(item[1], 255) \
                or not isinstance(item[2], dict):
            return self._error(0, P.MALFORMED)
        rid, cmd, args = item
        if cmd not in P.COMMAND_NAMES:
            return self._error(rid, P.UNKNOWN_CMD)
        try:
            if cmd == P.INFO:
                return self._info(rid, args)
            if cmd == P.GET_LOGS:
                return self._get_logs(rid, args)
        except Exception as e:  # noqa: BLE001 -- a fault of the log or flash, not of the request
            return self._fault(rid, e)
        # authenticated commands
        s = self._session
        if s is None:
            self.counters["auth_fail"] += 1
            return self._error(rid, P.NO_SESSION)
        if tag is None or not s.check(signed, tag):
            self.counters["auth_fail"] += 1
            return self._error(rid, P.BAD_MAC)
        if rid <= self._last_rid:
            if rid == self._last_rid and tag == self._last_tag:
                return self._last_reply  # a retry after a lost answer: same answer, no new effect
            self.counters["auth_fail"] += 1
            return self._error(rid, P.REPLAY)
        try:
            status, result = self._command(cmd, args)
        except Exception as e:  # noqa: BLE001
            self._note(e)
            status, result = P.fault_status(e), {"error": _why(e)}
        reply = self._reply(rid, status, result)
        self._last_rid, self._last_tag, self._last_reply = rid, tag, reply
        return reply

    def _command(self, cmd, args):
        if cmd == P.ACK:
            return self._ack(args)
        if cmd == P.PUT:
            return self._put(args)
        if cmd == P.CHUNK:
            return self._chunk(args)
        if cmd == P.COMMIT:
            return self._commit(args)
        if cmd == P.SET_TIME:
            return self._set_time(args)
        if not _fields(args, ()):  # REBOOT
            return P.MALFORMED, None
        self._reboot = True
        return P.OK, None

    def _reply(self, rid, status, result):
        if status != P.OK:
            self.counters["errors"] += 1
        return P.encode_message(P.REPLY, [rid, status, result], self._session)

    def _error(self, rid, status):
        return self._reply(rid, status, None)

    def _fault(self, rid, e):
        # The reader's own fault (flash error, log unreadable, no heap): answer, keep serving,
        # remember it for INFO and the tests. The request's bounds were checked before anything
        # ran.
        self._note(e)
        return self._reply(rid, P.fault_status(e), {"error": _why(e)})

    def _note(self, e):
        self.counters["faults"] += 1
        self.last_fault = e

    # -- open commands --

    def _info(self, rid, args):
        hn = args.get("hn")
        if not _fields(args, ("hn",)) or not P.is_bytes(hn, P.NONCE_SIZE):
            return self._error(rid, P.MALFORMED)
        hn = bytes(hn)
        r = self.reader
        if self._session is None or hn != self._hn:
            rn = bytes(self.random(P.NONCE_SIZE))
            self._session = P.Session(r.sync_key, r.reader_id, rn, hn)
            self._hn, self._rn = hn, rn
            self._last_rid, self._last_tag, self._last_reply = 0, None, None
        # else: the same INFO again (a retry, or a copy that the line delayed): the same session,
        # or the host would hold a nonce that the reader has already dropped
        rn = self._rn
        info = r.info()
        log = r.log
        res = {
            "proto": P.PROTO, "id": r.reader_id, "nonce": rn, "hn": hn, "max": self.max_payload,
            "fw": info.get("firmware", ""), "time": info.get("time"),
            "first": log.first_seq, "last": log.last_seq, "ack": log.ack_seq,
            # the chain link after record `ack`, which the depot anchors an accepted gap on (None
            # from a log that could not be opened: app.UnavailableLog)
            "alink": getattr(log, "ack_link", None),
            "free": log.free_bytes, "log_state": log.state,
            "deny": info.get("deny_version", 0), "keyring": info.get("keyring_version", 0),
            "config": info.get("config_version", 0),
            "counters": info.get("counters", {}), "sync": self._sync_counters(),
            "heap": info.get("heap"), "fault": info.get("fault"),
        }
        if info.get("file_errors"):  # a key ring or configuration the reader could not load
            res["file_errors"] = info["file_errors"]
        return self._reply(rid, P.OK, res)

    def _sync_counters(self):
        c = dict(self.counters)
        c["frames_good"] = self.decoder.good
        c["frames_bad"] = self.decoder.bad
        return c

    def _get_logs(self, rid, args):
        start, want, n = args.get("from"), args.get("max"), args.get("n", 1)
        if not _fields(args, ("from", "max", "n")) or not P.is_uint(start) or not P.is_uint(want) \
                or not P.is_uint(n, MAX_STREAM) or not n:
            return self._error(rid, P.MALFORMED)
        return self._logs_answer(rid, start, want, n)

    def _stream_frame(self):
        try:
            return self._logs_answer(*self._stream)
        except Exception as e:  # noqa: BLE001
            self._stream = None
            return self._fault(self._stream_rid, e)

    def _logs_answer(self, rid, start, want, frames, index=0):
        """Answer `index` [rid, "OK", [first, [record, ...], more, index]] of GET_LOGS, written
        straight into the payload buffer (no copy of the records beyond the one the log hands
        out). With frames > 1 the next answers follow without further requests (`more`), so the
        reader prepares one while the UART sends the one before."""
        self._stream = None
        self._stream_rid = rid
        log = self.reader.log
        recs = log.read(start, min(want, self.max_payload - _REPLY_ROOM))
        # The records say where they are: the log skips a record it cannot read (or the rest of
        # its segment, when the damage hides where the next record starts), so `first` comes
        # from the first record's own header, and an answer ends before a jump in sequence; the
        # depot sees the jump as a gap.
        first = _seq_of(recs[0]) if recs else max(start, log.first_seq)
        buf = self._pbuf
        s = self._session
        buf[0] = P.REPLY | (P.TAGGED if s is not None else 0)
        buf[1] = 0x83
        pos = P.put_head(buf, 2, 0, rid)
        buf[pos:pos + 3] = b"\x62OK"
        buf[pos + 3] = 0x84
        pos = P.put_head(buf, pos + 4, 0, first)
        room = self.max_payload - P.TAG_SIZE - 2  # the tag, `more` and `index` after the records
        total = pos + 3  # the count's head: at most 3 bytes
        n = 0
        for r in recs:
            if total + 3 + len(r) > room or _seq_of(r) != first + n:
                break
            total += 3 + len(r)
            n += 1
        if recs and not n:
            raise ValueError("trip record larger than a frame")  # max_payload set too small
        pos = P.put_head(buf, pos, 4, n)
        for k in range(n):
            r = recs[k]
            pos = P.put_head(buf, pos, 2, len(r))
            buf[pos:pos + len(r)] = r
            pos += len(r)
        recs = None
        nxt = first + n
        more = frames > 1 and n > 0 and nxt <= log.last_seq
        buf[pos] = 0xF5 if more else 0xF4
        buf[pos + 1] = index  # < MAX_STREAM: one byte
        pos += 2
        if more:
            self._stream = (rid, nxt, want, frames - 1, index + 1)
        if s is not None:
            buf[pos:pos + P.TAG_SIZE] = s.tag(memoryview(buf)[:pos])
            pos += P.TAG_SIZE
        self._pbuf_view = memoryview(buf)[:pos]
        return self._pbuf_view

    # -- authenticated commands --

    def _ack(self, args):
        seq = args.get("seq")
        if not _fields(args, ("seq",)) or not P.is_uint(seq):
            return P.MALFORMED, None
        log = self.reader.log
        if seq > log.last_seq:
            return P.BAD_ARG, {"last": log.last_seq}
        if seq > log.ack_seq:
            # the reader's counters must not need the records about to be freed
            self.reader.before_reclaim()
            log.ack(seq)
        return P.OK, {"ack": log.ack_seq, "free": log.free_bytes}

    def _put(self, args):
        kind, ver, size, sha = args.get("kind"), args.get("ver"), args.get("size"), args.get("sha")
        if not _fields(args, ("kind", "ver", "size", "sha")) or kind not in P.KINDS \
                or not P.is_uint(ver) or not P.is_uint(size) or not P.is_bytes(sha, 32):
            return P.MALFORMED, None
        sha = bytes(sha)
        if size > MAX_PUT or size < _MIN_ENVELOPE:
            return P.BAD_ARG, None
        up = self._upload
        if up is not None and up[:4] == [kind, ver, size, sha]:
            return P.OK, {"have": up[4]}  # the same upload again (a retry or a reconnect): resume
        self._upload = None
        _remove(self.staging)
        if size > _free_bytes(self.reader.staging_dir):
            return P.NO_SPACE, None
        with open(self.staging, "wb"):
            pass
        self._upload = [kind, ver, size, sha, 0]
        return P.OK, {"have": 0}

    def _chunk(self, args):
        off, data = args.get("off"), args.get("data")
        if not _fields(args, ("off", "data")) or not P.is_uint(off) or not P.is_bytes(data):
            return P.MALFORMED, None
        up = self._upload
        if up is None:
            return P.NO_UPLOAD, None
        have = up[4]
        if off > have:
            return P.OFFSET, {"have": have}
        end = off + len(data)
        if end > up[2]:
            return P.BAD_ARG, {"have": have}
        if end > have:  # bytes already held are not written again: a duplicate chunk is a no-op
            with open(self.staging, "ab") as f:
                f.write(memoryview(data)[have - off:])
            up[4] = end
        return P.OK, {"have": up[4]}

    def _commit(self, args):
        kind, ver, sha = args.get("kind"), args.get("ver"), args.get("sha")
        if not _fields(args, ("kind", "ver", "sha")) or kind not in P.KINDS \
                or not P.is_uint(ver) or not P.is_bytes(sha, 32):
            return P.MALFORMED, None
        sha = bytes(sha)
        up = self._upload
        if up is None or up[0] != kind or up[1] != ver or up[3] != sha:
            if self._installed(kind) == ver:
                return P.OK, {"already": True}  # committed in an earlier session
            return P.NO_UPLOAD, None
        if up[4] != up[2]:
            return P.INCOMPLETE, {"have": up[4]}
        if atomicfile.sha256(self.staging) != sha:
            self._drop_upload()
            return P.DIGEST, None
        from validator import signedfile  # here: it brings P-256 in, which only installs need
        with open(self.staging, "rb") as f:
            h = signedfile.parse_header(f.read(signedfile.HEADER_SIZE))
        if h is None or signedfile.KIND_NAMES[h.kind] != kind or h.version != ver:
            self._drop_upload()
            return P.MISMATCH, None
        try:
            reason = self.reader.install(kind, ver, self.staging)
        except BaseException:
            self._keep_or_drop_upload()
            raise
        if reason in (P.OUT_OF_MEMORY, P.FLASH_ERROR):
            # The reader's own trouble, not the file's: the installed state is unchanged and the
            # staged file kept, so the depot's next PUT of it resumes at its end and commits again.
            self._keep_or_drop_upload()
            fault = getattr(self.reader, "fault", None)
            return reason, {"error": fault["error"] if fault else reason}
        self._drop_upload()
        if reason == P.NO_SPACE:
            return P.NO_SPACE, None
        if reason != "OK":
            return P.REFUSED, {"reason": reason}
        return P.OK, {"already": False}

    def _keep_or_drop_upload(self):
        """After an install that failed on the reader's side: keep the staged upload if its file
        is still whole where it was staged, else forget it (a PUT then starts afresh)."""
        up = self._upload
        try:
            if up is not None and os.stat(self.staging)[6] == up[2]:
                return
        except OSError:
            pass
        self._drop_upload()

    def _drop_upload(self):
        self._upload = None
        _remove(self.staging)

    def _installed(self, kind):
        info = self.reader.info()
        return info.get(P.VERSION_FIELD[kind] + "_version")

    def _set_time(self, args):
        t, back = args.get("t"), args.get("back", False)
        if not _fields(args, ("t", "back")) or not P.is_uint(t) or not isinstance(back, bool):
            return P.MALFORMED, None
        reason = self.reader.set_time(t, back)
        if reason != "OK":
            return P.REFUSED, {"reason": reason}
        return P.OK, {"time": self.reader.info().get("time")}


def _seq_of(rec):
    """The sequence number in a stored trip record's header (validator.triplog: bytes 4-7)."""
    return (rec[4] << 24) | (rec[5] << 16) | (rec[6] << 8) | rec[7]


def _why(e):
    """What failed, for the depot (the reply's result["error"]): short."""
    return repr(e)[:100]


def _fields(args, allowed):
    """True when `args` has no key besides `allowed` (unknown fields are refused, not ignored)."""
    for k in args:
        if k not in allowed:
            return False
    return True


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _free_bytes(directory):
    try:
        st = os.statvfs(directory)
        return st[0] * st[3]
    except (OSError, AttributeError):
        return MAX_PUT


