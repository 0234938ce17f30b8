#!/usr/bin/python3
"""A fake `ferry worker` that writes exact bytes to the core (tests/e2e/test_http_rfc2.py), to
test how the HTTP front treats worker responses no well-behaved app or loader would send.

`ferry worker` execs it as the WSGI loader when FERRY_LOADERS_DIR points at the directory above
this one. It does the spawn handshake of docs/protocol.md §5 (owner pipe on fd 3, control
channel on fd 4) with a four-item ready, so the core speaks session protocol v1 (§2, §3) to it,
and answers each connection by its PATH_INFO:

    /wire?<bytes>   the query string, percent-decoded, is written as the whole response (head
                    and body), for HEAD requests too; then the connection is closed
    /               200 "ok"
    anything else   200, body "PATH_INFO=<p>\\nQUERY_STRING=<q>\\n" as received

A connection without the right FERRY_CONNECT_PASSWORD is closed unanswered. Python 3 standard
library only.
"""

import hmac
import os
import secrets
import signal
import socket
import struct
import sys
import threading
from urllib.parse import unquote_to_bytes

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 4)))
from fake_worker import SessionEnded, read_exactly, send_ready, watch_owner  # noqa: E402


def serve(conn, secret):
    (length,) = struct.unpack(">I", read_exactly(conn, 4))
    items = read_exactly(conn, length).split(b"\0")
    env = {k.decode("latin-1"): v.decode("latin-1") for k, v in zip(items[0::2], items[1::2])}
    if not hmac.compare_digest(env.get("FERRY_CONNECT_PASSWORD", ""), secret):
        return
    path, query = env.get("PATH_INFO", ""), env.get("QUERY_STRING", "")
    if path == "/wire":
        conn.sendall(unquote_to_bytes(query))
        return
    body = b"ok" if path == "/" else (
        "PATH_INFO=%s\nQUERY_STRING=%s\n" % (path, query)).encode("latin-1")
    conn.sendall(b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                 % len(body) + (b"" if env.get("REQUEST_METHOD") == "HEAD" else body))


def main():
    signal.signal(signal.SIGUSR1, lambda *_: os._exit(0))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    threading.Thread(target=watch_owner, daemon=True).start()
    name = "ferry-fake-wire-%d-%s" % (os.getpid(), secrets.token_hex(8))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(50)
    secret = secrets.token_hex(16)
    send_ready("abstract:" + name, secret)
    while True:
        conn, _ = listener.accept()
        try:
            serve(conn, secret)
        except (SessionEnded, OSError, struct.error):
            pass
        finally:
            conn.close()


if __name__ == "__main__":
    sys.exit(main())
