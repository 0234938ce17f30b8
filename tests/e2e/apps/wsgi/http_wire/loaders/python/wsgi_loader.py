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


def watch_owner():
    """Exits when the owner pipe (fd 3) reaches EOF: the core died or let go of this worker."""
    while True:
        try:
            if not os.read(3, 1):
                os._exit(0)
        except InterruptedError:
            continue
        except OSError:
            os._exit(0)


def send_ready(address, secret):
    items = [b"ready", str(os.getpid()).encode(), address.encode(), secret.encode()]
    payload = b"".join(item + b"\0" for item in items)
    ctl = socket.socket(fileno=4)
    ctl.sendall(len(payload).to_bytes(2, "big") + payload)
    ctl.close()


def read_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError()
        data += chunk
    return data


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
        except (EOFError, OSError, struct.error):
            pass
        finally:
            conn.close()


if __name__ == "__main__":
    sys.exit(main())
