"""Boot-failure app: imports a module that does not exist."""

import nonexistent_module  # noqa: F401


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"never served\n"]
