#!/usr/bin/python3
"""A fake `ferry worker` that breaks session protocol v2 (docs/protocol.md §4) on request.

`ferry worker` execs it as the WSGI loader when FERRY_LOADERS_DIR points at the directory above
this one (tests/e2e/test_session_violations.py). It does the spawn handshake of §5 (owner pipe
on fd 3, control channel on fd 4) with a five-item ready, so the core speaks v2 to it, accepts
one session at a time, checks HELLO's password, and answers each request by its PATH_INFO:

    /pid               a correct response: 200, the pid in decimal
    /unknown-type      a frame of type 0x99 (no such type), id of the request
    /oversized-head    the 12-byte header of a HEAD announcing 131073 bytes (limit 131072), and
                       no payload: the core must refuse it from the header alone
    /wrong-id          a well-formed HEAD with id 77777 instead of the request's
    /cut-after-head    HEAD (no Content-Length) and DATA "partial\\n", then 0.1 s later a
                       type-0x99 frame

After a violation it goes on reading frames as if nothing happened; the core is expected to
SIGKILL it. Each spawn prints `fake-v2: pid=N: ready`, which the core copies into its log.
Python 3 standard library only.
"""

import hmac
import os
import secrets
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 4)))
from fake_worker import SessionEnded, read_exactly, send_ready, watch_owner  # noqa: E402

HEADER = struct.Struct(">IBBHI")  # LEN, TYPE, FLAGS, RESERVED, ID
HELLO, REQ, BODY, EOB, ABORT = 0x00, 0x01, 0x02, 0x03, 0x04
HEAD, DATA, END = 0x81, 0x82, 0x83
LIMITS = {HELLO: 256, REQ: 131072, BODY: 1048576, EOB: 0, ABORT: 0}
UNKNOWN_TYPE = 0x99
WRONG_ID = 77777
HEAD_MAX = 131072
PACE_S = 0.1


def log(message):
    os.write(1, ("fake-v2: pid=%d: %s\n" % (os.getpid(), message)).encode())


def frame(ftype, fid, payload=b"", flags=0):
    return HEADER.pack(len(payload), ftype, flags, 0, fid) + payload


def path_of(block):
    items = block.split(b"\0")
    for name, value in zip(items[0::2], items[1::2]):
        if name == b"PATH_INFO":
            return value.decode("latin-1")
    return ""


def answer(conn, fid, path):
    if path == "/pid":
        body = str(os.getpid()).encode()
        head = b"Status: 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        conn.sendall(frame(HEAD, fid, head) + frame(DATA, fid, body) + frame(END, fid))
    elif path == "/unknown-type":
        log("sending a frame of type 0x%02x for id %d" % (UNKNOWN_TYPE, fid))
        conn.sendall(frame(UNKNOWN_TYPE, fid))
    elif path == "/oversized-head":
        log("sending a HEAD header announcing %d bytes for id %d" % (HEAD_MAX + 1, fid))
        conn.sendall(HEADER.pack(HEAD_MAX + 1, HEAD, 0, 0, fid))
    elif path == "/wrong-id":
        log("answering id %d with a HEAD for id %d" % (fid, WRONG_ID))
        conn.sendall(frame(HEAD, WRONG_ID, b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n"))
    elif path == "/cut-after-head":
        log("sending HEAD and DATA, then a frame of type 0x%02x for id %d" % (UNKNOWN_TYPE, fid))
        conn.sendall(frame(HEAD, fid, b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                     + frame(DATA, fid, b"partial\n"))
        # Paced as a streaming worker: the head is out before anything else comes.
        time.sleep(PACE_S)
        conn.sendall(frame(UNKNOWN_TYPE, fid))
    else:
        body = b"not found\n"
        head = b"Status: 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body)
        conn.sendall(frame(HEAD, fid, head) + frame(DATA, fid, body) + frame(END, fid))


def serve_session(conn, secret):
    """One connection from the core: HELLO, then requests until the core closes it."""
    length, ftype, flags, reserved, fid = HEADER.unpack(read_exactly(conn, HEADER.size))
    if ftype != HELLO or flags or reserved or fid or length > LIMITS[HELLO]:
        log("refused a connection: it does not start with a v2 HELLO")
        return
    if not hmac.compare_digest(read_exactly(conn, length), secret.encode()):
        log("refused a connection: wrong password")
        return
    path = None
    while True:
        length, ftype, flags, reserved, fid = HEADER.unpack(read_exactly(conn, HEADER.size))
        if ftype not in LIMITS or flags or reserved or length > LIMITS[ftype]:
            log("refused frame type=0x%02x len=%d from the core: closing" % (ftype, length))
            return
        payload = read_exactly(conn, length)
        if ftype == REQ:
            path = path_of(payload)
        elif ftype == EOB:
            answer(conn, fid, path)
        # BODY (no route reads one) and ABORT (every answer is sent whole at once) need nothing.


def main():
    signal.signal(signal.SIGUSR1, lambda *_: os._exit(0))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    threading.Thread(target=watch_owner, daemon=True).start()
    name = "ferry-fake-v2-%d-%s" % (os.getpid(), secrets.token_hex(8))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(50)
    secret = secrets.token_hex(16)
    send_ready("abstract:" + name, secret, "2")
    log("ready")
    while True:
        conn, _ = listener.accept()
        try:
            serve_session(conn, secret)
        except (SessionEnded, OSError):
            pass
        finally:
            conn.close()


if __name__ == "__main__":
    sys.exit(main())
