"""Writes the generated parts of the reader's P-256 verifier from their generators:
firmware/validator/p256_native.py (the viper engine, host_tools/fleet/p256codegen.py),
p256_xtensa.py (the same engine in Xtensa assembly, p256asm.py) and p256_progs.py (the field
programs, p256programs.py).

    python -m host_tools.fleet.p256gen

tests/firmware/test_p256_xtensa.py fails if a committed file is not what this writes."""
import sys
from pathlib import Path

from host_tools.fleet import p256asm, p256codegen, p256programs

OUT = Path(__file__).resolve().parents[2] / "firmware" / "validator"


def main(argv=None):
    files = {"p256_native.py": p256codegen.generate(), "p256_xtensa.py": p256asm.generate(),
             "p256_progs.py": p256programs.module_text()}
    for name, text in files.items():
        (OUT / name).write_text(text)
    print("wrote %s" % ", ".join(str(OUT / n) for n in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
