"""A WSGI app whose worker dies on purpose: /before-head exits before answering, /after-head
exits after part of a body with a larger Content-Length; anything else is 200 "ok\n"."""

import os
import sys


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/before-head":
        sys.stderr.flush()
        os._exit(3)
    if path == "/after-head":
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", "1000000")])

        def body():
            yield b"x" * 1000
            os._exit(3)
        return body()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
