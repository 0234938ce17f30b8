"""Pool e2e app: /pid (the worker's pid), /slow?ms=N (sleeps), /print (writes marker lines to
stdout and stderr), anything else 200 "ok"."""
import os
import sys
import time
from urllib.parse import parse_qs


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/pid":
        body = str(os.getpid())
    elif path == "/slow":
        ms = int(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["0"])[0])
        time.sleep(ms / 1000.0)
        body = "slept %d" % ms
    elif path == "/print":
        sys.stdout.write("pool-e2e-stdout-marker\n")
        sys.stdout.flush()
        sys.stderr.write("pool-e2e-stderr-marker\n")
        sys.stderr.flush()
        body = "printed"
    else:
        body = "ok"
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(data)))])
    return [data]
