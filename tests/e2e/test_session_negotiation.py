"""Session protocol negotiation (docs/protocol.md §4.1): a worker whose ready message has four
items (today's WSGI and Rack loaders) is served with v1; --session-protocol 1 serves every
worker with v1, also a native C worker that offers v2. One worker per test
(--max-pool-size 1 --min-instances 1)."""
import os

import pytest

from conftest import BUILD_DIR, app
from httpraw import Conn

V1_APP = app("tests", "e2e", "apps", "wsgi", "pool_basic")
CUT_APP = os.path.join(BUILD_DIR, "tests", "e2e", "apps", "c", "session_cut")
ONE_WORKER = ("--max-pool-size", "1", "--min-instances", "1")


def get(c, path):
    c.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    r = c.read_response()
    assert r.status == 200, r.head
    return r


def test_v1_only_worker_streams_a_whole_body_and_serves_on(ferry):
    """A streamed body of the v1 WSGI loader still ends with its last-chunk (httpraw checks
    it), and the keep-alive connection serves the next request from the same worker."""
    f = ferry(V1_APP, *ONE_WORKER)
    with Conn(f.port, timeout=20) as c:
        pid = int(get(c, "/pid").body)
        assert get(c, "/drip?n=3&ms=1").body == b"line 0\nline 1\nline 2\n"
        assert int(get(c, "/pid").body) == pid


def test_session_protocol_1_serves_a_v2_worker_over_v1(ferry):
    if not os.path.exists(os.path.join(CUT_APP, "app.so")):
        pytest.fail("the C app is not built at %s (set FERRY_BUILD_DIR)" % CUT_APP)
    f = ferry(CUT_APP, *ONE_WORKER, "--session-protocol", "1")
    with Conn(f.port, timeout=20) as c:
        pid = int(get(c, "/pid").body)
        assert int(get(c, "/pid").body) == pid
