# Runs one test function of a MicroPython test module and reports the result by exit status.
import sys
import gc


def run(module, func):
    mod = __import__(module)
    gc.collect()
    try:
        getattr(mod, func)()
    except BaseException as e:  # report everything, including SystemExit from a test
        sys.print_exception(e)
        sys.exit(1)
    print("MP-OK")  # (micropython.mem_peak() only grows in this build: no peak figure here)
