"""One command line for the host tools: `fare <command> ...`; `fare --help` lists them."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fare", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
