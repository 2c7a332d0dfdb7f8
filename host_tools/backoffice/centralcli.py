"""`fare central`: create, upgrade and look after the central store; serve an embedded one."""
import os
import sys

from host_tools.backoffice import central, pgserve
from host_tools.backoffice.pgconn import CentralError


def _init(args):
    cfg, applied = central.init(args.db, zone=args.time_zone, day_starts=args.day_starts,
                                role_prefix=args.role_prefix)
    print("central store %s: time zone %s, service day from %s, roles %s*; migrations applied "
          "now: %s" % (cfg["store_id"], cfg["time_zone"], cfg["day_starts"], cfg["role_prefix"],
                       ", ".join(map(str, applied)) or "none (up to date)"))


def _migrate(args):
    applied = central.migrate(args.db)
    print("migrations applied: %s" % (", ".join(map(str, applied)) or "none (up to date)"))


def _status(args):
    for k, v in central.status(args.db).items():
        print("%-16s %s" % (k, v))


def _secret_out(args, password):
    if args.password_file:
        fd = os.open(args.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        where = "in %s (mode 0600)" % args.password_file
    else:
        where = "(shown once): %s" % password
    return where


def _add_depot(args):
    readers = central.parse_readers(args.readers)
    role, password = central.add_depot(args.db, args.name, readers)
    print("depot %s: login role %s, %d reader(s) registered; its password %s"
          % (args.name, role, len(readers), _secret_out(args, password)))


def _add_login(args):
    role, password = central.add_login(args.db, args.name, args.role)
    print("%s login %s: role %s; its password %s" % (args.role, args.name, role,
                                                      _secret_out(args, password)))


def _add_readers(args):
    n = central.add_readers(args.db, args.name, central.parse_readers(args.readers), args.move)
    print("depot %s: %d reader(s) registered or moved" % (args.name, n))


def _serve(args):
    if args.detach:
        print(pgserve.start(args.dir))
        return 0
    return pgserve.serve_forever(args.dir)


def _stop(args):
    pgserve.stop(args.dir)
    print("stopped" if not pgserve.running(args.dir) else "still running")


def cmd_central(args):
    try:
        return args.central_func(args) or 0
    except (CentralError, pgserve.ServerError) as e:
        print("fare central %s: %s" % (args.central_command, e), file=sys.stderr)
        return 1
    except FileExistsError as e:
        print("fare central %s: %s exists already" % (args.central_command, e.filename),
              file=sys.stderr)
        return 1


def add_commands(sub):
    p = sub.add_parser("central", help="the central store of every depot's trips (PostgreSQL)",
                       description="The central store: every depot's trip records in one "
                                   "PostgreSQL database (docs/backoffice.md).")
    csub = p.add_subparsers(dest="central_command", metavar="COMMAND")
    csub.required = True
    p.set_defaults(func=cmd_central)

    def command(name, func, helptext, db=True, more=""):
        c = csub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:]
                            + "." + (" " + more if more else ""))
        if db:
            c.add_argument("--db", required=True, metavar="URL",
                           help="the central store (postgresql://...)")
        c.set_defaults(central_func=func)
        return c

    c = command("init", _init, "create the store (settings, schema, roles); again: no change",
                more="Settings are fixed here: every trip's service day depends on them.")
    c.add_argument("--time-zone", default=central.DEFAULT_ZONE,
                   help="the operator's time zone, for service days (default %(default)s)")
    c.add_argument("--day-starts", default=central.DEFAULT_DAY_STARTS, metavar="HH:MM",
                   help="local time at which a service day starts (default %(default)s)")
    c.add_argument("--role-prefix", help="prefix of the store's role names (default: the "
                                         "database name and _)")
    command("migrate", _migrate, "apply the schema migrations not applied yet",
            more="Each is one transaction; running it again changes nothing.")
    command("status", _status, "settings, schema version, counts")
    c = command("add-depot", _add_depot, "a depot and its login role",
                more="The role may insert only its registered readers' records and read no "
                     "trip (row-level security).")
    c.add_argument("name", help="lower case letters, digits, _")
    c.add_argument("--readers", default="", help="reader ids registered to it: 1201,1300-1399")
    c.add_argument("--password-file", metavar="FILE",
                   help="write the role's password here (mode 0600) instead of showing it")
    c = command("add-login", _add_login, "a login role for clearing or reporting")
    c.add_argument("name", help="lower case letters, digits, _")
    c.add_argument("--role", required=True, choices=("clearing", "reporting"),
                   help="clearing (reads everything, writes clearing's tables) or reporting "
                        "(reads everything)")
    c.add_argument("--password-file", metavar="FILE",
                   help="write the role's password here (mode 0600) instead of showing it")
    c = command("add-readers", _add_readers, "register readers to a depot")
    c.add_argument("name", help="the depot's name")
    c.add_argument("readers", help="reader ids: 1201,1300-1399")
    c.add_argument("--move", action="store_true", help="move readers registered to another depot")
    c = command("serve", _serve, "start an embedded PostgreSQL in a directory, print its URL", db=False)
    c.add_argument("--dir", default="central", help="its directory (default %(default)s)")
    c.add_argument("--detach", action="store_true",
                   help="leave it running and return (fare central stop ends it)")
    c = command("stop", _stop, "stop the embedded PostgreSQL of a directory", db=False)
    c.add_argument("--dir", default="central", help="its directory (default %(default)s)")
