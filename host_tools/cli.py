"""fare: the host tools of the offline fare validator (issuer, wallet, deny lists, depot sync,
emulators, deployment and the simulator). `fare COMMAND --help` explains each command."""
import argparse
import importlib
import sys

# Each module adds its own subcommands with `add_commands(subparsers)`; order is the help order.
COMMAND_MODULES = (
    "issuing.issuer", "sim.wallet", "issuing.denylist_build", "issuing.config_build",
    "depot.readersync", "sim.emulators", "fleet.deploy", "sim.simday", "sim.scenario",
    "issuing.p256tables", "backoffice.centralcli", "backoffice.upload",
)


def build_parser():
    parser = argparse.ArgumentParser(prog="fare", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module("host_tools." + name)
        except ModuleNotFoundError as e:
            if e.name == "host_tools." + name:
                continue  # not built yet
            raise
        mod.add_commands(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
