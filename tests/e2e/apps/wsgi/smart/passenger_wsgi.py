"""Smart spawning e2e app (tests/e2e/test_smart_spawn.py): state loaded once at import (about
24 MiB of objects that the forked workers share), fork hooks through os.register_at_fork, and
pages that show what a test needs: /pid, /ppid, /random (the next number of Python's `random`),
/booted (the pid that ran the import), /both (that and /pid), /slow (/pid after 0.5 s),
/ssl-random (the pid and 16 bytes of OpenSSL's generator), /warm (fills a per-process cache,
lazily, as an app's first requests do, and says whose it is) and /warmed (whose cache this
process has, or "cold")."""
import os
import random
import ssl
import time

BOOTED_IN = os.getpid()
# Loaded once in the preloader: shared copy-on-write by every forked worker.
SHARED = [("row %d" % i) * 8 for i in range(200000)]
FORK_LOG = os.environ.get("SMART_FORK_LOG")
WARMED_BY = None


def _after_in_child():
    if FORK_LOG:
        with open(FORK_LOG, "a") as f:
            f.write("%d\n" % os.getpid())


os.register_at_fork(after_in_child=_after_in_child)


def application(environ, start_response):
    global WARMED_BY
    path = environ["PATH_INFO"]
    if path == "/warm":
        if WARMED_BY is None:
            WARMED_BY = os.getpid()
        body = str(WARMED_BY)
    elif path == "/warmed":
        body = "cold" if WARMED_BY is None else str(WARMED_BY)
    elif path == "/pid":
        body = str(os.getpid())
    elif path == "/ppid":
        body = str(os.getppid())
    elif path == "/random":
        body = repr(random.random())
    elif path == "/booted":
        body = str(BOOTED_IN)
    elif path == "/both":
        body = "%d %d" % (BOOTED_IN, os.getpid())
    elif path == "/slow":
        time.sleep(0.5)
        body = str(os.getpid())
    elif path == "/ssl-random":
        body = "%d %s" % (os.getpid(), ssl.RAND_bytes(16).hex())
    elif path == "/shared":
        body = str(len(SHARED))
    else:
        body = "smart"
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(data)))])
    return [data]
