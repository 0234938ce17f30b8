"""HTTP-front e2e app (no validator, so it can send what a well-behaved app would not):
/te-chunked    Transfer-Encoding: chunked + Connection + Keep-Alive headers, raw body "hello"
/conn-token    Connection: X-Secret and an X-Secret header (hop-by-hop by nomination)
/both          Content-Length: 5 and Transfer-Encoding: chunked, body "hello"
/short-cl      Content-Length: 100, body of 10 bytes (the worker closes early)
/long-cl       Content-Length: 5, body of 20 bytes
/no-length     no Content-Length, body "abc"
/status/NNN    status NNN with Content-Length: 5 and body "hello" (even for 204/304)
/slow?ms=N     sleeps N ms, body "slept N"
/count         requests this worker process has seen (this one included)
anything else  200 "ok"."""
import time
from urllib.parse import parse_qs

SEEN = [0]


def application(environ, start_response):
    SEEN[0] += 1
    path = environ.get("PATH_INFO", "")
    headers = [("Content-Type", "text/plain")]
    status = "200 OK"
    if path == "/te-chunked":
        headers += [("Transfer-Encoding", "chunked"), ("Connection", "close"),
                    ("Keep-Alive", "timeout=1")]
        body = b"hello"
    elif path == "/conn-token":
        headers += [("Connection", "X-Secret"), ("X-Secret", "leak"), ("X-Public", "yes"),
                    ("Content-Length", "2")]
        body = b"ok"
    elif path == "/both":
        headers += [("Content-Length", "5"), ("Transfer-Encoding", "chunked")]
        body = b"hello"
    elif path == "/short-cl":
        headers += [("Content-Length", "100")]
        body = b"0123456789"
    elif path == "/long-cl":
        headers += [("Content-Length", "5")]
        body = b"abcdefghijklmnopqrst"
    elif path == "/no-length":
        body = b"abc"
    elif path.startswith("/status/"):
        status = path[len("/status/"):] + " Whatever"
        headers += [("Content-Length", "5")]
        body = b"hello"
    elif path == "/slow":
        ms = int(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["0"])[0])
        time.sleep(ms / 1000.0)
        body = b"slept %d" % ms
    elif path == "/count":
        body = str(SEEN[0]).encode()
    else:
        body = b"ok"
    start_response(status, headers)
    return [body]
