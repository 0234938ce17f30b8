"""What the fake `ferry worker`s under tests/e2e/apps/wsgi/*/loaders/ share: the worker's side of
the spawn handshake (docs/protocol.md §5) in the Python standard library. Each fake imports it
from here (its own file puts this directory on sys.path) and then speaks the session protocol
itself, byte for byte, to send what a real worker would not."""

import os
import socket


class SessionEnded(Exception):
    """The core closed the session (EOF inside a frame or between frames alike)."""


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


def send_ready(address, secret, protocols=None):
    """["ready", pid, address, secret] on the control channel (fd 4), then closes it; with
    <protocols> (e.g. "2") a fifth item, so the core speaks session protocol v2."""
    items = [b"ready", str(os.getpid()).encode(), address.encode(), secret.encode()]
    if protocols is not None:
        items.append(protocols.encode())
    payload = b"".join(item + b"\0" for item in items)
    ctl = socket.socket(fileno=4)
    ctl.sendall(len(payload).to_bytes(2, "big") + payload)
    ctl.close()


def read_exactly(conn, n):
    """<n> bytes from <conn>; raises SessionEnded at EOF."""
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise SessionEnded()
        data += chunk
    return data
