"""Streaming through session protocol v2: a piece that ferry_response_write has accepted goes to
the client while the app is still in on_request (include/ferry.h: "blocking until written"), as
it does with v1. A worker may coalesce writes that follow each other closely, but not hold a
head and a first piece until the app's next write: an app that streams events (server-sent
events, progress lines) would deliver each event only when the next one is ready.

One native C worker (--max-pool-size 1 --min-instances 1, the app tests/e2e/apps/c/session_cut):
/first-then-wait writes "first\\n", waits 2 s, then writes "second\\n"."""
import os
import socket
import time

import pytest

from conftest import BUILD_DIR

CUT_APP = os.path.join(BUILD_DIR, "tests", "e2e", "apps", "c", "session_cut")
ONE_WORKER = ("--max-pool-size", "1", "--min-instances", "1")


def test_a_written_piece_reaches_the_client_before_the_apps_next_write(ferry):
    if not os.path.exists(os.path.join(CUT_APP, "app.so")):
        pytest.fail("the C app is not built at %s (set FERRY_BUILD_DIR)" % CUT_APP)
    f = ferry(CUT_APP, *ONE_WORKER)
    with socket.create_connection(("127.0.0.1", f.port), timeout=10) as s:
        s.sendall(b"GET /first-then-wait HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 10
        while b"first\n" not in data:
            assert time.monotonic() < deadline, data
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        assert b"second\n" not in data, \
            "the head and \"first\" were held back until the app's next write, 2 s later"
