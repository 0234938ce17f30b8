"""Observability e2e app (metrics, status, request ids, slow requests): /ok (200 "ok"),
/missing (404), /slow?ms=N (sleeps N ms, then 200), /rid (answers the HTTP_X_REQUEST_ID it
got), /pid (the worker's pid), /own-id (sets its own X-Request-Id: app-chosen)."""
import os
import time
from urllib.parse import parse_qs


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    status = "200 OK"
    headers = [("Content-Type", "text/plain")]
    if path == "/missing":
        status, body = "404 Not Found", "no such page"
    elif path == "/slow":
        ms = int(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["0"])[0])
        time.sleep(ms / 1000.0)
        body = "slept %d" % ms
    elif path == "/rid":
        body = environ.get("HTTP_X_REQUEST_ID", "(none)")
    elif path == "/pid":
        body = str(os.getpid())
    elif path == "/own-id":
        headers.append(("X-Request-Id", "app-chosen"))
        body = "own"
    else:
        body = "ok"
    data = body.encode()
    headers.append(("Content-Length", str(len(data))))
    start_response(status, headers)
    return [data]
