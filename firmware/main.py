# Entry point on the reader: build the board, build the reader from its flash, run the loop.
# A crash is logged and the board resets, which on a device reboots into a recovered reader
# (the trip log and counters recover from flash on the next start).
import gc
import sys

import board
# Every module is loaded now, before the reader allocates its data: on the unix port bytecode
# lives in the heap (a device keeps it frozen in flash), and loading it later, between data
# blocks, would fragment the heap. The heap measured below is then the code's share.
from validator import (app, clock, config, denylist, denylist_update, keyring, policy,  # noqa
                       riderstate, signedfile, sync, syncproto, triplog)
from drivers import feedback, pn532, qrscanner  # noqa: F401

gc.collect()
CODE_HEAP = gc.mem_alloc()  # on the unix port the bytecode lives in the heap; on the ESP32 in flash
if sys.argv[1:] == ["--code-heap"]:  # the simulator sizes its heap from this (host_tools/sim/simreader)
    print(CODE_HEAP)
    sys.exit(0)


def main():
    b = board.Board()
    b.code_heap = CODE_HEAP
    if getattr(b, "service_requested", lambda: False)():
        return  # the technician holds the service button: stay at the REPL, do not run
    try:
        if not app.run(b):
            return  # a clean stop (the simulated board's "stop" command)
        b.report({"ev": "reboot"})  # the depot asked for it
    except KeyboardInterrupt:
        # a technician's ctrl-C (mpremote, make deploy): keep the watchdog from resetting the
        # board under them
        getattr(b, "park_watchdog", lambda: None)()
        raise
    except Exception as e:  # noqa: BLE001 -- anything: log it, reboot
        sys.print_exception(e)
        b.report({"ev": "crash", "error": repr(e)})
    b.reset()  # never returns: the trip log and counters recover from flash at the next start


main()
