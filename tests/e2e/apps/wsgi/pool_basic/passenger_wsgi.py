"""Pool e2e app: /pid (the worker's pid), /slow?ms=N (sleeps), /print (writes marker lines to
stdout and stderr), /drip?n=N&ms=M (N lines, one every M ms, streamed; the last line it got to
is kept for /dripped), /dripped, /grow?mb=N[&ms=M] (allocates N MiB more, touches every page and
keeps it for the worker's life; then sleeps M ms; answers the pid), anything else 200 "ok"."""
import os
import sys
import time
from urllib.parse import parse_qs


dripped = {"last": -1}
grown = []  # the /grow allocations, kept so the memory stays resident


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
    elif path == "/grow":
        q = parse_qs(environ.get("QUERY_STRING", ""))
        block = bytearray(int(q.get("mb", ["0"])[0]) << 20)
        block[::4096] = b"\x01" * len(range(0, len(block), 4096))  # one write per page
        grown.append(block)
        time.sleep(int(q.get("ms", ["0"])[0]) / 1000.0)
        body = str(os.getpid())
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
