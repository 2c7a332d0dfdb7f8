# The ESP32 estimate's two halves, taken from the real firmware on the unix port (bench/
# esp32_estimate.py): the native engine's calls are recorded to a file (record), to be replayed on
# a 32-bit Xtensa under qemu for exact instruction counts; then the same work runs with the
# engine replaced by a stub that answers the recorded flags (stub), so what the CPU time then
# measures is everything but the native code: the interpreter and the big integers.
#
# Both halves run as on an ESP32: p256_field.vrun is one engine call (VRUN, which the unix port's
# viper engine has not: while recording, its steps run on the real engine unrecorded).
#
# Record file: the workspace before the first call (4-byte length + bytes), then per call:
# u16 program length, the program bytes (a VRUN: all of PROGS, whose sub-programs it calls),
# u16 pc, u16 io length, the io bytes the call can reach before it, i32 flags, and the same io
# bytes after it (what the call wrote there, e.g. a signature's scalars: the stub writes them
# back, so that the Python around the engine takes the same path).
import struct

from validator import p256_field as F
from validator import p256_progs as G

_real = F.run
_real_vrun = F.VRUN
_out = None
_flags = None
_outs = None
_i = 0
_LOAD = 8
_STORE = 9
_PTR = 18
_BIG = 4096         # io windows larger than this are tables


def _reach(prog, pc, left):
    # (end of the program, io bytes its LOADs and STOREs reach from iooff; for a PTR, all that
    # is left of io: the table VRUN reads later)
    reach = 0
    while prog[pc]:
        if prog[pc] == _PTR:
            reach = left
        if prog[pc] == _LOAD or prog[pc] == _STORE:
            r = 32 * (prog[pc + 3] + 1)
            if r > reach:
                reach = r
        pc += 4
    return pc + 4, reach


def _write(f, prog, pc, io_before, flags, io_after):
    f.write(struct.pack("<H", len(prog)))
    f.write(prog)
    f.write(struct.pack("<HH", pc, len(io_before)))
    f.write(io_before)
    f.write(struct.pack("<i", flags))
    f.write(io_after)


def _recorder(ws, io, prog, arg):
    pc = arg >> 16
    iooff = arg & 0xffff
    f = _out[0]
    if _out[1] is None:
        _out[1] = True
        f.write(struct.pack("<I", len(ws)))
        f.write(ws)
    if prog is F.PROGS and pc == G.VRUN_PROG:
        before = bytes(io)
        F.run = _real
        F.VRUN = False
        try:
            flags = F.vrun(io)
        finally:
            F.run = _recorder
            F.VRUN = True
        _write(f, prog, pc, before, flags, bytes(io))
        return flags
    end, n = _reach(prog, pc, len(io) - iooff if io is not ws else 0)
    if prog[pc] == _PTR:    # a table: written from where it is (no copies in the heap)
        flags = _real(ws, io, prog, arg)
        view = memoryview(io)[iooff:]
        _write(f, prog[pc:end], 0, view, flags, view)
        return flags
    window = bytearray(n)
    if io is not ws:
        window[:] = io[iooff:iooff + n]
    flags = _real(ws, io, prog, arg)
    after = bytearray(n)
    if io is not ws:
        after[:] = io[iooff:iooff + n]
    _write(f, prog[pc:end], 0, window, flags, after)
    return flags


def record(path):
    # start recording the engine's calls into `path` (stop() closes it)
    global _out
    _out = [open(path, "wb"), None]
    F.run = _recorder
    F.VRUN = True


def _stub(ws, io, prog, arg):
    global _i
    i = _i
    _i = i + 1
    out = _outs.get(i)
    if out is not None:
        o = arg & 0xffff
        io[o:o + len(out)] = out
    return _flags[i]


# (array of the flags, {call index: the io bytes it wrote}) of a record file
def load_flags(path):
    from array import array
    flags = array("i")
    outs = {}
    with open(path, "rb") as f:
        n = struct.unpack("<I", f.read(4))[0]
        f.seek(4 + n)
        i = 0
        while True:
            h = f.read(2)
            if len(h) < 2:
                break
            f.seek(struct.unpack("<H", h)[0], 1)
            m = struct.unpack("<HH", f.read(4))[1]
            if m > _BIG:    # a table (PTR): read, never written
                f.seek(m, 1)
                flags.append(struct.unpack("<i", f.read(4))[0])
                f.seek(m, 1)
                i += 1
                continue
            before = f.read(m)
            flags.append(struct.unpack("<i", f.read(4))[0])
            after = f.read(m)
            if after != before:
                outs[i] = after
            i += 1
    return flags, outs


def stub(recorded):
    # from now on the engine answers the recorded flags (and io bytes) in turn and computes
    # nothing, VRUN included (rewind() restarts)
    global _flags, _outs, _i
    _flags, _outs = recorded
    _i = 0
    F.run = _stub
    F.VRUN = True


def rewind():
    global _i
    _i = 0


def calls():
    return _i


def stop():
    global _out
    F.run = _real
    F.VRUN = _real_vrun
    if _out is not None:
        _out[0].close()
        _out = None
