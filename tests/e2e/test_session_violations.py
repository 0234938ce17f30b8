"""Session protocol v2 (docs/protocol.md §4.4): a worker that breaks the protocol is killed and
replaced. Its request gets 502 when no head had gone out, a cut connection (no terminating
chunk) when one had; one `[error] session:` line names the worker's pid and what it sent; the
server goes on serving.

The worker is a fake (tests/e2e/apps/wsgi/session_fake): `ferry worker` runs it as the WSGI
loader through FERRY_LOADERS_DIR. It offers v2 in a five-item ready, serves GET /pid correctly,
breaks the protocol on the other routes, and prints `fake-v2: pid=N: ready` at each spawn. One
worker (--max-pool-size 1 --min-instances 1), so the pid /pid answers says which one serves."""
import os
import socket
import time

import pytest
import requests

from conftest import app, wait_for

FAKE_APP = app("tests", "e2e", "apps", "wsgi", "session_fake")
FAKE_ENV = {"FERRY_LOADERS_DIR": os.path.join(FAKE_APP, "loaders")}
ONE_WORKER = ("--max-pool-size", "1", "--min-instances", "1")

# route -> what the [error] line must name (any one of the spellings): the fake's frame type
# 0x99, the length 131073 it announces for a HEAD (limit 131072), the id 77777 of its HEAD.
BEFORE_HEAD = [
    ("/unknown-type", ("0x99", "153")),
    ("/oversized-head", ("131073",)),
    ("/wrong-id", ("77777",)),
]


def fake_pid(f):
    r = requests.get(f.url + "/pid", timeout=20)
    assert r.status_code == 200, f.log()
    pid = int(r.text)
    assert "fake-v2: pid=%d: ready" % pid in f.log()
    return pid


def session_errors(f, pid):
    return [line for line in f.log().splitlines()
            if "[error] session:" in line and "pid=%d" % pid in line]


def assert_replaced(f, old_pid, named):
    assert wait_for(lambda: session_errors(f, old_pid), 10), f.log()
    lines = session_errors(f, old_pid)
    assert len(lines) == 1, lines
    assert any(n in lines[0] for n in named), "the line does not say what came: %s" % lines[0]
    # killed, reaped, replaced; the server serves on
    assert wait_for(lambda: not os.path.exists("/proc/%d" % old_pid), 10)
    assert fake_pid(f) != old_pid


@pytest.mark.parametrize("path,named", BEFORE_HEAD, ids=[p[1:] for p, _ in BEFORE_HEAD])
def test_violation_before_the_head_is_502_and_the_worker_replaced(ferry, path, named):
    f = ferry(FAKE_APP, *ONE_WORKER, env=FAKE_ENV)
    pid = fake_pid(f)
    r = requests.get(f.url + path, timeout=20)
    assert r.status_code == 502
    assert_replaced(f, pid, named)


def test_violation_after_the_head_cuts_the_connection(ferry):
    """The fake sends HEAD (no Content-Length) and DATA "partial\\n", then a frame of type
    0x99: the client has the head and that chunk, then the connection ends without a
    last-chunk."""
    f = ferry(FAKE_APP, *ONE_WORKER, env=FAKE_ENV)
    pid = fake_pid(f)
    s = socket.create_connection(("127.0.0.1", f.port), timeout=20)
    data = b""
    try:
        s.sendall(b"GET /cut-after-head HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 20
        while b"\r\n0\r\n" not in data:
            assert time.monotonic() < deadline, "not closed; have %r" % data
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    assert b"\r\ntransfer-encoding: chunked" in head.lower(), head
    assert body == b"8\r\npartial\n\r\n", "wanted the one chunk, then the close: %r" % body
    assert_replaced(f, pid, ("0x99", "153"))
