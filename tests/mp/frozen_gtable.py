# The generator's comb table as a frozen build has it (the constant of validator.p256_gtable, in
# flash: the Xtensa engine reads its entries itself), instead of the table file next to the
# modules that a file-system install reads by offset. For benchmarks of the frozen reader: the
# same bytes, from the module or else from that file.
from validator import p256


def use():
    try:
        from validator import p256_gtable
        data = p256_gtable.DATA
    except ImportError:
        with open(p256.__file__.rsplit("/", 1)[0] + "/p256_gtable.bin", "rb") as f:
            data = f.read()
    p256._gbase = p256.FixedBase(p256.encode_uncompressed(p256.GX, p256.GY), data)
