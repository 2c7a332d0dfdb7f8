# Entry point on the reader: build the board, build the reader from its flash, run the loop.
# A crash is logged and the board resets, which on a device reboots into a recovered reader
# (the trip log and counters recover from flash on the next start).
import gc
import sys

import board
from validator import app, sync, denylist_update  # noqa: F401 -- loaded now, so the heap
                                                  # measured below is the code (frozen on a device)

gc.collect()
CODE_HEAP = gc.mem_alloc()  # on the unix port the bytecode lives in the heap; on the ESP32 in flash


def main():
    b = board.Board()
    b.code_heap = CODE_HEAP
    while True:
        try:
            if not app.run(b):
                return  # a clean stop (the simulated board's "stop" command)
            b.report({"ev": "reboot"})
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 -- anything: log it, reboot
            sys.print_exception(e)
            b.report({"ev": "crash", "error": repr(e)})
            b.reset()


main()
