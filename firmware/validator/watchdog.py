# The hardware watchdog, for the long steps that run outside the loop's housekeeping (which
# feeds it every 500 ms): a deny list installed from the depot (a full list read, checked and
# merged: tens of seconds on an ESP32), a key table built for a new issuer key. The reader sets
# `feed` to its board's feed_watchdog at start; the long loops call kick() every chunk.
feed = None


def kick():
    if feed is not None:
        feed()
