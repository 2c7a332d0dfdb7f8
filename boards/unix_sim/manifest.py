# Frozen unix-port build of the simulated reader (optional: the simulator normally runs the
# sources through MICROPYPATH). Build from a MicroPython v1.29.0 checkout:
#   make -C ports/unix FROZEN_MANIFEST=<repo>/boards/unix_sim/manifest.py
# Paths are relative to this file. `fare deploy --board unix_sim` reads the same lines to know
# what to copy to a unix port served on a pty.
include("$(MPY_DIR)/ports/unix/variants/standard/manifest.py")

package("validator", base_path="../../firmware")
package("drivers", base_path="../../firmware")
module("board.py")
module("flashdev.py")
module("uart.py")
module("heapfrag.py")
