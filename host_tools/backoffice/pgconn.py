"""Connections to the central store (psycopg 3), with one-line errors for the user."""
from host_tools.common.clierrors import UserError


class CentralError(UserError):
    """A problem the user can act on (bad URL, server down, store not initialised): one line."""


def check_url(url):
    if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
        raise CentralError("the central store is a PostgreSQL URL (postgresql://user@host/db, "
                           "or the one fare central serve prints), not %r" % (url,))
    return url


def connect(url, **kw):
    """An open psycopg connection or CentralError saying why not. Autocommit: every change is
    made in an explicit `with conn.transaction():`."""
    import psycopg
    try:
        return psycopg.connect(check_url(url), connect_timeout=20, autocommit=True, **kw)
    except psycopg.OperationalError as e:
        raise CentralError("cannot connect to the central store: %s" % one_line(e))
    except psycopg.ProgrammingError as e:
        raise CentralError("not a usable PostgreSQL URL %r: %s" % (url, one_line(e)))


def one_line(e):
    """A database error as one line (the server's message, without its context lines)."""
    text = str(e).strip().split("\n")
    return text[0] if text else type(e).__name__
