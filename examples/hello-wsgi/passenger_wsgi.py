"""A tiny WSGI app for `make run`: ferry serves it from this directory."""

import sys


def application(environ, start_response):
    if environ.get("PATH_INFO", "/") != "/":
        body = b"Not found. Try /\n"
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(body)))])
        return [body]
    version = sys.version.split()[0]
    body = ("<!doctype html>\n<title>Hello from ferry</title>\n"
            "<h1>Hello from ferry!</h1>\n"
            "<p>This page was served by a WSGI app running on Python %s.</p>\n"
            % version).encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
