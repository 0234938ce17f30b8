"""The unit tests' WSGI app for the _ferry extension (tests/unit/python/test_wsgi_ext_loader.py):
one route per behaviour of PEP 3333 the extension implements in C. Routes that check argument
validation catch the error and answer its type and message, so the tests see the exact text."""

import os
import sys
import threading
import time
from urllib.parse import parse_qs

closed = []
ticks = [0]
wrapped = []   # how many files /file-wrapper handed out, and the last one


class Body:
    def __init__(self, pieces, fail_at=None):
        self.pieces, self.fail_at = pieces, fail_at

    def __iter__(self):
        for i, p in enumerate(self.pieces):
            if i == self.fail_at:
                raise ValueError("failed mid-body")
            yield p

    def close(self):
        closed.append(1)


def lazy(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    yield b"lazy"


def text(start_response, body, status="200 OK"):
    start_response(status, [("Content-Type", "text/plain")])
    return [body if isinstance(body, bytes) else body.encode("utf-8", "backslashreplace")]


# start_response calls that must raise, by name: (args, kwargs)
BAD_CALLS = {
    "status-bytes": ((b"200 OK", []), {}),
    "status-short": (("200", []), {}),
    "status-letters": (("2x0 OK", []), {}),
    "status-zero": (("099 Low", []), {}),
    "status-newline": (("200 OK\r\nX: y", []), {}),
    "status-euro": (("200 \u20ac", []), {}),
    "headers-tuple": (("200 OK", (("A", "b"),)), {}),
    "header-list": (("200 OK", [["A", "b"]]), {}),
    "header-triple": (("200 OK", [("A", "b", "c")]), {}),
    "header-bytes": (("200 OK", [(b"A", "b")]), {}),
    "header-name": (("200 OK", [("A B", "c")]), {}),
    "header-empty-name": (("200 OK", [("", "c")]), {}),
    "header-crlf": (("200 OK", [("X-A", "b\r\nInjected: 1")]), {}),
    "header-nul": (("200 OK", [("X-A", "b\0c")]), {}),
    "header-euro": (("200 OK", [("X-A", "\u20ac")]), {}),
}


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/mid-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"first", b"second"], fail_at=1)
    if path == "/bad-call":
        args, kwargs = BAD_CALLS[query["case"][0]]
        try:
            start_response(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            return text(start_response, "%s: %s" % (type(exc).__name__, exc))
        return text(start_response, "accepted")
    if path == "/inject":
        start_response("200 OK", [("X-A", "b\r\nInjected: 1")])
        return [b"x"]
    if path == "/str-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["text"]
    if path == "/no-start":
        return [b"x"]
    if path == "/lazy":
        return lazy(environ, start_response)
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"via write, ")
        write(bytearray(b"bytearray, "))
        write(memoryview(b"memoryview, "))
        return [b"then ", b"", b"iterable"]
    if path == "/twice":
        start_response("200 OK", [])
        try:
            start_response("200 OK", [])
        except RuntimeError as exc:
            return [str(exc).encode()]
        return [b"no error"]
    if path == "/exc-info":
        try:
            raise KeyError("k")
        except KeyError:
            start_response("200 OK", [("Content-Type", "text/plain")])
            start_response("503 Busy", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced"]
    if path == "/exc-info-late":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"sent")
        try:
            raise KeyError("late")
        except KeyError:
            start_response("500 Oops", [], sys.exc_info())   # re-raises KeyError
        return [b"unreachable"]
    if path == "/reason":
        start_response("299 Fine Thanks \xe9", [("Content-Type", "text/plain")])
        return [b"reason"]
    if path == "/close-raises":
        class B(list):
            def close(self):
                raise OSError("close failed")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return B([])
    if path == "/closed":
        return text(start_response, str(len(closed)))
    if path == "/partial-read":
        environ["wsgi.input"].read(10)
        return text(start_response, "read 10")
    if path == "/input":
        # ops like "r5,l,l3,L,i,R": read(5), readline(), readline(3), readlines(), iterate,
        # read(); the answer is the repr of each result on its own line
        inp = environ["wsgi.input"]
        out = []
        for op in query["ops"][0].split(","):
            if op == "R":
                out.append(inp.read())
            elif op == "N":
                out.append(inp.read(None))
            elif op.startswith("r"):
                out.append(inp.read(int(op[1:])))
            elif op == "l":
                out.append(inp.readline())
            elif op.startswith("l"):
                out.append(inp.readline(int(op[1:])))
            elif op.startswith("L"):
                out.append(inp.readlines(int(op[1:])) if op[1:] else inp.readlines())
            elif op == "i":
                out.append(list(inp))
        return text(start_response, "\n".join(repr(x) for x in out))
    if path == "/environ":
        keys = query["keys"][0].split(",")
        return text(start_response, "\n".join("%s=%r" % (k, environ.get(k, "<absent>"))
                                              for k in keys))
    if path == "/types":
        e = environ
        return text(start_response, "%s %s %s %s %s %s" % (
            e["wsgi.version"], e["wsgi.errors"] is sys.stderr, e["wsgi.multithread"],
            e["wsgi.multiprocess"], e["wsgi.run_once"], all(type(k) is str and type(v) is str
                                                            for k, v in e.items()
                                                            if not k.startswith("wsgi."))))
    if path == "/process":
        loader_dir = os.path.dirname(os.environ.get("FERRY_TEST_LOADER", "/nonexistent/x"))
        return text(start_response, "%s %s %s %s" % (
            "FERRY_OWNER_FD" in os.environ, "FERRY_CONTROL_FD" in os.environ,
            loader_dir in sys.path, "_ferry" in sys.modules))
    if path == "/file-wrapper":
        f = open(__file__, "rb")
        start_response("200 OK", [("Content-Type", "text/plain")])
        wrapped[:] = [wrapped[0] + 1 if wrapped else 1, f]   # the count and the last file
        return environ["wsgi.file_wrapper"](f, 7)
    if path == "/file-closed":
        return text(start_response, "%s %s" % (wrapped[0], wrapped[1].closed))
    if path == "/ticker":
        def tick():
            while True:
                ticks[0] += 1
                time.sleep(0.01)
        threading.Thread(target=tick, daemon=True).start()
        return text(start_response, "started")
    if path == "/ticks":
        return text(start_response, str(ticks[0]))
    if path == "/slow":
        time.sleep(int(query["ms"][0]) / 1000.0)
        return text(start_response, "slept")
    if path == "/exit":
        sys.exit(5)
    if path == "/caf\xc3\xa9":
        return text(start_response, ascii(path))
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
        return [b"hello world\n"]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/raise":
        raise RuntimeError("raised on purpose by /raise")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"nf"]
