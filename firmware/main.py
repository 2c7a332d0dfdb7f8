# Entry point on the reader: build the board, build the reader from its flash, run the loop.
# A crash is logged and the board resets, which on a device reboots into a recovered reader
# (the trip log and counters recover from flash on the next start).
import sys

import board
from validator import app


def main():
    b = board.Board()
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
