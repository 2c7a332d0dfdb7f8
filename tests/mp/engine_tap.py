# The ESP32 estimate's two halves, taken from the real firmware on the unix port (bench/
# esp32_estimate.py): the native engine's calls are recorded to a file (record), to be replayed on
# a 32-bit Xtensa under qemu for exact instruction counts; then the same work runs with the
# engine replaced by a stub that answers the recorded flags (stub), so what the CPU time then
# measures is everything but the native code: the interpreter and the big integers.
#
# Record file: the workspace before the first call (4-byte length + bytes), then per call:
# u16 program length, program bytes, the 64 io bytes before the call, i32 flags, and the 64 io
# bytes after it (what the call wrote there, e.g. a signature's scalars: the stub writes them back,
# so that the Python around the engine takes the same path).
import struct

from validator import p256_field as F

_real = F.run
_out = None
_flags = None
_outs = None
_i = 0


def _end(prog, pc):
    end = pc
    while prog[end]:
        end += 4
    return end + 4


def _recorder(ws, io, prog, arg):
    global _out
    pc = arg >> 16
    iooff = arg & 0xffff
    if _out[1] is None:
        _out[1] = True
        _out[0].write(struct.pack("<I", len(ws)))
        _out[0].write(ws)
    end = _end(prog, pc)
    window = bytearray(64)
    n = 0
    if io is not ws:
        n = len(io) - iooff
        if n > 64:
            n = 64
        if n > 0:
            window[0:n] = io[iooff:iooff + n]
    flags = _real(ws, io, prog, arg)
    after = bytearray(64)
    if io is not ws:
        after[0:n] = io[iooff:iooff + n]
    f = _out[0]
    f.write(struct.pack("<H", end - pc))
    f.write(prog[pc:end])
    f.write(window)
    f.write(struct.pack("<i", flags))
    f.write(after)
    return flags


def record(path):
    # start recording the engine's calls into `path` (stop() closes it)
    global _out
    _out = [open(path, "wb"), None]
    F.run = _recorder


def _stub(ws, io, prog, arg):
    global _i
    i = _i
    _i = i + 1
    out = _outs.get(i)
    if out is not None:
        o = arg & 0xffff
        io[o:o + 64] = out
    return _flags[i]


# (array of the flags, {call index: the 64 io bytes it wrote}) of a record file
def load_flags(path):
    from array import array
    count = 0
    with open(path, "rb") as f:
        n = struct.unpack("<I", f.read(4))[0]
        pos = 4 + n
        f.seek(pos)
        while True:
            h = f.read(2)
            if len(h) < 2:
                break
            f.seek(struct.unpack("<H", h)[0] + 64 + 4 + 64, 1)
            count += 1
        flags = array("i", bytes(4 * count))
        outs = {}
        f.seek(pos)
        for i in range(count):
            f.seek(struct.unpack("<H", f.read(2))[0], 1)
            before = f.read(64)
            flags[i] = struct.unpack("<i", f.read(4))[0]
            after = f.read(64)
            if after != before:
                outs[i] = after
    return flags, outs


def stub(recorded):
    # from now on the engine answers the recorded flags (and io bytes) in turn and computes
    # nothing (rewind() restarts)
    global _flags, _outs, _i
    _flags, _outs = recorded
    _i = 0
    F.run = _stub


def rewind():
    global _i
    _i = 0


def calls():
    return _i


def stop():
    global _out
    F.run = _real
    if _out is not None:
        _out[0].close()
        _out = None
