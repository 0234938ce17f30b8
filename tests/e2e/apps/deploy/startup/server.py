"""A WSGI file by a name the detection does not know, for `--startup-file server.py`."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from server.py"]
