"""HTTP-front e2e app that writes exact bytes to the core, past the WSGI loader's checks, to test
how the front treats worker responses no well-behaved app (or loader) would send.

GET /wire?<bytes>   the query string, percent-decoded, is written to the worker's socket as the
                    whole response (head and body), for HEAD requests too; then the worker
                    closes the connection.
GET /              200 "ok".
anything else       200, body "PATH_INFO=<p>\nQUERY_STRING=<q>\n" as the app received them.

It reaches the socket through the loader's start_response (a bound method of its response
object) and marks the head sent, so the loader adds nothing of its own."""
from urllib.parse import unquote_to_bytes


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/wire":
        response = start_response.__self__
        response._sock.sendall(unquote_to_bytes(environ.get("QUERY_STRING", "")))
        response.status = "200 OK"
        response.head_sent = True
        return []
    body = b"ok"
    if environ.get("PATH_INFO") != "/":
        body = ("PATH_INFO=%s\nQUERY_STRING=%s\n" % (environ.get("PATH_INFO"),
                                                     environ.get("QUERY_STRING"))).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
