#!/usr/bin/python3
"""Slow readers: N connections that each GET a large response and read it at a fixed rate.

Usage: slowread.py PORT COUNT PATH RATE_BYTES_PER_S MAX_SECONDS

Each connection has a small receive buffer (SO_RCVBUF 64 KiB, set before connecting, so the
kernel does not soak up the response for us), sends `GET PATH` with `Connection: close`, then
reads at most RATE_BYTES_PER_S bytes a second (in 10 slices of a tenth each), until the
response is complete, the server closes, or MAX_SECONDS have passed since the start; then it
closes. Prints `open N` once every request has been sent, then at the end (also on SIGTERM)
one JSON line: count, connected, heads (responses whose status line arrived), status_200,
bytes (total read), min_bytes, max_bytes, complete (whole responses), server_closed, errors,
elapsed_s. 127.0.0.1 only.
"""

import json
import signal
import socket
import sys
import time

TICK_S = 0.1


class Reader:
    def __init__(self, port, path):
        self.sock = None
        self.path = path
        self.port = port
        self.buf = b""
        self.head_done = False
        self.status = None
        self.length = None
        self.body = 0
        self.total = 0
        self.done = False
        self.server_closed = False
        self.error = None

    def connect(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.settimeout(5)
        s.connect(("127.0.0.1", self.port))
        s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                  % self.path.encode())
        s.setblocking(False)
        self.sock = s

    def read(self, budget):
        """Reads up to <budget> bytes (what is there now). Returns the bytes read."""
        got = 0
        while got < budget and not self.done:
            try:
                chunk = self.sock.recv(min(65536, budget - got))
            except BlockingIOError:
                break
            except OSError as e:
                self.error = str(e)
                self.done = True
                break
            if not chunk:
                self.server_closed = True
                self.done = True
                break
            got += len(chunk)
            self.total += len(chunk)
            if not self.head_done:
                self.buf += chunk
                if b"\r\n\r\n" in self.buf:
                    head, _, rest = self.buf.partition(b"\r\n\r\n")
                    self.head_done = True
                    parts = head.split(b"\r\n", 1)[0].split()
                    if len(parts) >= 2 and parts[1].isdigit():
                        self.status = int(parts[1])
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            self.length = int(value.strip() or 0)
                    self.body = len(rest)
                    self.buf = b""
            else:
                self.body += len(chunk)
            if self.length is not None and self.body >= self.length:
                self.done = True
        return got

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


def main():
    if len(sys.argv) != 6:
        print(__doc__.split("\n")[2], file=sys.stderr)
        return 2
    port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rate, max_s = int(sys.argv[4]), float(sys.argv[5])
    if not (1 <= count <= 1000 and 1024 <= rate and 0 < max_s <= 600):
        print("slowread: COUNT 1..1000, RATE >= 1024, MAX_SECONDS 0..600", file=sys.stderr)
        return 2
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    t0 = time.monotonic()
    readers = []
    connected = 0
    for _ in range(count):
        r = Reader(port, path)
        try:
            r.connect()
            connected += 1
        except OSError as e:
            r.error = str(e)
            r.done = True
        readers.append(r)
    print("open %d" % connected, flush=True)
    slice_bytes = max(1, int(rate * TICK_S))
    next_tick = time.monotonic()
    while not stop["now"] and time.monotonic() - t0 < max_s:
        if all(r.done for r in readers):
            break
        for r in readers:
            if not r.done:
                r.read(slice_bytes)
        next_tick += TICK_S
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.monotonic() - t0
    for r in readers:
        r.close()
    totals = [r.total for r in readers]
    print(json.dumps({
        "count": count, "connected": connected,
        "heads": sum(1 for r in readers if r.head_done),
        "status_200": sum(1 for r in readers if r.status == 200),
        "bytes": sum(totals), "min_bytes": min(totals) if totals else 0,
        "max_bytes": max(totals) if totals else 0,
        "complete": sum(1 for r in readers if r.length is not None and r.body >= r.length),
        "server_closed": sum(1 for r in readers if r.server_closed),
        "errors": sorted(set(r.error for r in readers if r.error))[:5],
        "elapsed_s": round(elapsed, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
