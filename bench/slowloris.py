#!/usr/bin/python3
"""Slow-client load for the bench: holds N connections to 127.0.0.1:PORT open, each having sent
only part of a request head, and trickles one more header line on each about every
<interval> seconds so a server's idle timeout alone does not clear them.

Usage: slowloris.py PORT COUNT SECONDS [--interval S]
Prints 'open N' on stdout once the connections are made (the harness waits for that line), and
at the end one JSON line: {"target": N, "opened": N, "open_at_end": N, "reopened": N,
"refused": N}. Connections a server closes are reopened, at most COUNT per second.
Stops by itself after SECONDS, or on SIGTERM/SIGINT, and closes every socket. 127.0.0.1 only.
"""

import argparse
import json
import resource
import selectors
import signal
import socket
import sys
import time

HEAD = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench-slowloris\r\n"


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def open_one(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    except OSError:
        s.close()
        return None
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("seconds", type=float)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()
    if not (0 < args.count <= 10000) or not (0 < args.seconds <= 600):
        print("slowloris: count must be 1..10000 and seconds 1..600", file=sys.stderr)
        return 2
    raise_nofile(args.count + 64)

    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sel = selectors.DefaultSelector()
    conns = {}  # socket -> bytes of HEAD still to send
    stats = {"target": args.count, "opened": 0, "reopened": 0, "refused": 0}
    deadline = time.monotonic() + args.seconds

    def add(reopen):
        s = open_one(args.port)
        if s is None:
            stats["refused"] += 1
            return False
        conns[s] = HEAD
        sel.register(s, selectors.EVENT_WRITE)
        stats["opened"] += 1
        if reopen:
            stats["reopened"] += 1
        return True

    def drop(s):
        sel.unregister(s)
        conns.pop(s, None)
        s.close()

    for _ in range(args.count):
        if not add(False):
            break
    announced = False
    last_trickle = time.monotonic()
    buf = bytearray(4096)
    while not stop["now"] and time.monotonic() < deadline:
        for key, events in sel.select(timeout=0.05):
            s = key.fileobj
            if events & selectors.EVENT_READ:
                try:
                    n = s.recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    n = 0
                if n == 0:
                    drop(s)  # the server gave up on it (408, close): reopened below
                continue
            pending = conns[s]
            try:
                sent = s.send(pending)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                drop(s)
                continue
            conns[s] = pending[sent:]
            if not conns[s]:
                sel.modify(s, selectors.EVENT_READ)
        if not announced and all(not v for v in conns.values()):
            print("open %d" % len(conns), flush=True)
            announced = True
        now = time.monotonic()
        if now - last_trickle >= args.interval:
            last_trickle = now
            for s in list(conns):
                if conns[s]:
                    continue
                try:
                    s.send(b"X-Slow: %d\r\n" % int(now))
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    drop(s)
            budget = args.count
            while len(conns) < args.count and budget > 0:
                budget -= 1
                if not add(True):
                    break
    if not announced:
        print("open %d" % len(conns), flush=True)
    stats["open_at_end"] = len(conns)
    for s in list(conns):
        drop(s)
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
