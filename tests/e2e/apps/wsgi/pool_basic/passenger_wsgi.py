"""Pool e2e app: /pid (the worker's pid), /slow?ms=N (sleeps), /print (writes marker lines to
stdout and stderr), /drip?n=N&ms=M (N lines, one every M ms, streamed; the last line it got to
is kept for /dripped), /dripped, anything else 200 "ok"."""
import os
import sys
import time
from urllib.parse import parse_qs


dripped = {"last": -1}


def drip(n, ms):
    for i in range(n):
        dripped["last"] = i
        yield b"line %d\n" % i
        time.sleep(ms / 1000.0)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/drip":
        q = parse_qs(environ.get("QUERY_STRING", ""))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return drip(int(q.get("n", ["10"])[0]), int(q.get("ms", ["10"])[0]))
    if path == "/dripped":
        body = str(dripped["last"]).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
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
