"""fare: the host tools of the offline fare validator (issuer, wallet, deny lists, depot sync,
emulators, deployment and the simulator). `fare COMMAND --help` explains each command."""
import argparse
import importlib
import os
import sys
from importlib import metadata

from host_tools.common.clierrors import EXIT_ERROR, UserError

# Each module adds its own subcommands with `add_commands(subparsers)`; order is the help order.
COMMAND_MODULES = (
    "issuing.issuer", "sim.wallet", "issuing.denylist_build", "issuing.config_build",
    "depot.readersync", "sim.emulators", "fleet.deploy", "sim.simday", "sim.scenario",
    "issuing.p256tables", "backoffice.centralcli", "backoffice.uploadcli",
)


def version():
    """The host tools' version (pyproject.toml) and the reader firmware's they are made for."""
    try:
        tools = metadata.version("fare-host-tools")
    except metadata.PackageNotFoundError:
        tools = "unknown (not installed)"
    from host_tools.common.fw import validator  # noqa: F401
    from validator import app
    return "fare %s (reader firmware %s)" % (tools, app.FIRMWARE_VERSION)


def build_parser():
    parser = argparse.ArgumentParser(prog="fare", description=__doc__)
    parser.add_argument("--version", action="version", version=version(),
                        help="print the version and exit")
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
    except UserError as e:
        # a mistake the user can fix: one line, no traceback
        print("fare %s: %s" % (args.command, e), file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # whoever read the output stopped (`fare ... | head`): end quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except OSError as e:
        # a file or device the command could not use, where no check named it first
        where = " %s" % e.filename if e.filename else ""
        print("fare %s: cannot use%s: %s" % (args.command, where, e.strerror or e), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
