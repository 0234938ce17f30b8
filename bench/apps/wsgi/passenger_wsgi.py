"""The bench's WSGI app: the same three routes as bench/apps/rack and bench/apps/{c,fcgi}.

GET /hello  -> 200 text/plain, 12 bytes "hello world\n"
GET /1m     -> 200 application/octet-stream, 1 MiB (byte i is i % 251)
POST /echo  -> 200 application/octet-stream, the request body
anything else -> 404
Named passenger_wsgi.py so Passenger-style loaders find it; gunicorn and uWSGI load it by path.
"""

HELLO = b"hello world\n"
MIB = bytes(i % 251 for i in range(1 << 20))
HELLO_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "12")]
MIB_HEADERS = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(MIB)))]
NOT_FOUND = b"not found\n"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    if path == "/hello":
        start_response("200 OK", HELLO_HEADERS)
        return [HELLO]
    if path == "/1m":
        start_response("200 OK", MIB_HEADERS)
        return [MIB]
    if path == "/echo" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        stream = environ["wsgi.input"]
        chunks = []
        left = length
        while left > 0:
            chunk = stream.read(min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        body = b"".join(chunks)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain"),
                                     ("Content-Length", str(len(NOT_FOUND)))])
    return [NOT_FOUND]
