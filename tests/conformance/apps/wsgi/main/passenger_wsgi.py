"""The WSGI conformance app: exactly the routes of tests/conformance/APPS.md, wrapped in
wsgiref.validate.validator so that every request also checks the loader against PEP 3333.
Routes match on the path only (any method); the loader drops the body of HEAD responses."""

import hashlib
import http
import os
import threading
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

PIECE = 64 * 1024
MAX_STREAM_MIB = 65536
MAX_SLEEP_MS = 600000
ENV_KEYS = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SCRIPT_NAME", "SERVER_NAME",
            "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "CONTENT_TYPE",
            "CONTENT_LENGTH")
# Byte i of /stream is i % 251: a piece starting at offset o is PATTERN[o % 251:][:PIECE].
PATTERN = bytes(i % 251 for i in range(PIECE + 251))

closes = 0


def text(start_response, body, status="200 OK", content_type="text/plain"):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def query_int(environ, name, limit):
    """The integer query parameter <name> in 0..<limit>, or None."""
    values = parse_qs(environ.get("QUERY_STRING", "")).get(name)
    if not values or not values[0].isdigit() or not values[0].isascii():
        return None
    value = int(values[0])
    return value if value <= limit else None


def env(environ, start_response):
    keys = [k for k in ENV_KEYS if k in environ]
    keys += [k for k in environ if k.startswith("HTTP_")]
    body = "".join("%s=%s\n" % (k, environ[k]) for k in sorted(keys))
    return text(start_response, body.encode("latin-1"))


def sha256(environ, start_response):
    digest = hashlib.sha256()
    count = 0
    stream = environ["wsgi.input"]
    while True:
        piece = stream.read(PIECE)
        if not piece:
            break
        count += len(piece)
        digest.update(piece)
    return text(start_response, ("%d %s\n" % (count, digest.hexdigest())).encode("ascii"))


def echo(environ, start_response):
    headers = [("Content-Type", environ.get("CONTENT_TYPE") or "application/octet-stream")]
    length = environ.get("CONTENT_LENGTH", "")
    if length.isdigit():
        headers.append(("Content-Length", length))
    start_response("200 OK", headers)
    stream = environ["wsgi.input"]

    def pieces():
        while True:
            piece = stream.read(PIECE)
            if not piece:
                return
            yield piece
    return pieces()


def stream(environ, start_response):
    mib = query_int(environ, "mib", MAX_STREAM_MIB)
    if mib is None:
        return text(start_response, b"bad mib\n", "400 Bad Request")
    start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def pieces():
        offset = 0
        for _ in range(mib * 16):
            start = offset % 251
            yield PATTERN[start:start + PIECE]
            offset += PIECE
    return pieces()


def endless(environ, start_response):
    """The pattern of /stream without end: it stops only when the loader stops iterating (a
    write failed: the client left, or ABORT over session protocol v2) and closes it."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def pieces():
        offset = 0
        while True:
            start = offset % 251
            yield PATTERN[start:start + PIECE]
            offset += PIECE
    return pieces()


def fail_after_head(environ, start_response):
    """A first chunk, then an exception: the body is cut after the head went out."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def pieces():
        yield b"first chunk\n"
        raise RuntimeError("raised on purpose by /fail-after-head after its first chunk")
    return pieces()


def cookies(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "8"),
                              ("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")])
    return [b"cookies\n"]


def status(environ, start_response, code_text):
    if len(code_text) != 3 or not code_text.isdigit() or not code_text.isascii() \
            or int(code_text) < 100:
        return not_found(environ, start_response)
    code = int(code_text)
    try:
        reason = http.HTTPStatus(code).phrase
    except ValueError:
        reason = "Unknown"
    line = "%d %s" % (code, reason)
    if code in (204, 304):
        start_response(line, [])
        return []
    return text(start_response, ("status %d\n" % code).encode("ascii"), line)


def slow(environ, start_response):
    ms = query_int(environ, "ms", MAX_SLEEP_MS)
    if ms is None:
        return text(start_response, b"bad ms\n", "400 Bad Request")
    time.sleep(ms / 1000.0)
    return text(start_response, ("slept %d\n" % ms).encode("ascii"))


_parked = []


def conformance_parked_thread():
    """Sleeps forever: SIGQUIT's tracebacks must name this function."""
    while True:
        time.sleep(3600)


def park_thread(environ, start_response):
    if not _parked:
        thread = threading.Thread(target=conformance_parked_thread, daemon=True)
        thread.start()
        _parked.append(thread)
    return text(start_response, b"parked\n")


class TrackedBody:
    """A body that counts its close() calls in the module-level <closes>."""

    def __iter__(self):
        yield b"tracked\n"

    def close(self):
        global closes
        closes += 1


def close_tracked(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "8")])
    return TrackedBody()


def not_found(environ, start_response):
    return text(start_response, b"not found\n", "404 Not Found")


def raise_error(environ, start_response):
    raise RuntimeError("raised on purpose by /raise")


ROUTES = {
    "/hello": lambda e, s: text(s, b"hello world\n"),
    "/env": env,
    "/sha256": sha256,
    "/echo": echo,
    "/stream": stream,
    "/endless": endless,
    "/fail-after-head": fail_after_head,
    "/cookies": cookies,
    "/raise": raise_error,
    "/slow": slow,
    "/park-thread": park_thread,
    "/pid": lambda e, s: text(s, str(os.getpid()).encode("ascii")),
    "/close-tracked": close_tracked,
    "/close-count": lambda e, s: text(s, str(closes).encode("ascii")),
}


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/status/"):
        return status(environ, start_response, path[len("/status/"):])
    return ROUTES.get(path, not_found)(environ, start_response)


application = validator(app)
