"""A client that goes away in the middle of a streamed response: the worker must stop producing
it and be free for the next request soon, not after the whole stream (an endless stream — server-
sent events — would hold the worker for ever)."""
import socket
import time

import pytest
import requests

from conftest import app

BASIC = app("tests", "e2e", "apps", "wsgi", "pool_basic")


def test_worker_is_freed_when_the_client_leaves_a_stream(ferry):
    f = ferry(BASIC, "--max-pool-size", "1", "--min-instances", "1")
    # 300 lines 20 ms apart: 6 s of streaming if nobody stops it
    s = socket.create_connection(("127.0.0.1", f.port), timeout=10)
    s.sendall(b"GET /drip?n=300&ms=20 HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b"line 2\n" not in got:
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    s.close()
    t0 = time.monotonic()
    r = requests.get(f.url + "/dripped", timeout=10)
    waited = time.monotonic() - t0
    assert r.status_code == 200
    assert waited < 3.0, "the next request waited %.1f s for the abandoned stream" % waited
    assert int(r.text) < 200, "the app went on producing the stream: line %s" % r.text
    assert "client went away" in f.log()


@pytest.mark.parametrize("kind", ["c", "rack", "wsgi"])
def test_each_loader_stops_a_stream_whose_client_left(ferry, conformance_app, kind):
    """The conformance app streams 64 GiB as fast as the reader takes it; draining that for a
    gone client would take many seconds, stopping it takes one failed write."""
    f = ferry(conformance_app(kind), "--max-pool-size", "1", "--min-instances", "1")
    s = socket.create_connection(("127.0.0.1", f.port), timeout=10)
    s.sendall(b"GET /stream?mib=65536 HTTP/1.1\r\nHost: x\r\n\r\n")
    got = 0
    while got < 1 << 20:
        chunk = s.recv(65536)
        assert chunk
        got += len(chunk)
    s.close()
    t0 = time.monotonic()
    r = requests.get(f.url + "/hello", timeout=20)
    assert r.status_code == 200 and r.text == "hello world\n"
    assert time.monotonic() - t0 < 3.0
