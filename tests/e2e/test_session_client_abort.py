"""Session protocol v2 (docs/protocol.md §4.3, ABORT): a client that leaves before END gets its
request aborted; the worker's next write fails (FERRY_EIO), the app stops, and the same worker
serves the next request. A worker reads ABORT between the app's writes, so an app still
computing when the client left notices at its first write, instead of streaming on to nobody.

One native C worker (--max-pool-size 1 --min-instances 1, the app tests/e2e/apps/c/session_cut):
its /stream writes a line every 10 ms for up to 60 s unless a write fails, so a worker that is
not stopped would be busy for a minute."""
import os
import socket
import struct
import time

import pytest
import requests

from conftest import BUILD_DIR, wait_for

CUT_APP = os.path.join(BUILD_DIR, "tests", "e2e", "apps", "c", "session_cut")
# A short shutdown timeout: a worker wrongly left serving the abandoned request must not keep
# the teardown waiting for 30 s.
ONE_WORKER = ("--max-pool-size", "1", "--min-instances", "1", "--shutdown-timeout", "2")
FREED_WITHIN_S = 5.0   # the stream would run for 60 s; stopping it takes one failed write


@pytest.fixture
def cut_app():
    if not os.path.exists(os.path.join(CUT_APP, "app.so")):
        pytest.fail("the C app is not built at %s (set FERRY_BUILD_DIR)" % CUT_APP)
    return CUT_APP


def get_text(f, path):
    r = requests.get(f.url + path, timeout=20)
    assert r.status_code == 200, r.text
    return r.text


def leave(s, how):
    """Closes the client socket: "reset" sends a RST (SO_LINGER 0), "close" a plain close()."""
    if how == "reset":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def assert_same_worker_free_soon(f, pid):
    t0 = time.monotonic()
    try:
        r = requests.get(f.url + "/pid", timeout=FREED_WITHIN_S)
    except requests.exceptions.Timeout:
        pytest.fail("the next request got no answer within %s s: the worker still serves the "
                    "abandoned request" % FREED_WITHIN_S)
    assert r.status_code == 200, "after %.1f s" % (time.monotonic() - t0)
    assert int(r.text) == pid, "the worker of the abandoned request was replaced"
    # the app saw a failed write (not a kill, not the end of its 6000 ticks)
    assert get_text(f, "/streams-stopped") == "1"


@pytest.mark.parametrize("how", ["reset", "close"])
def test_client_leaving_mid_stream_frees_the_same_worker(ferry, cut_app, how):
    f = ferry(cut_app, *ONE_WORKER)
    pid = int(get_text(f, "/pid"))
    s = socket.create_connection(("127.0.0.1", f.port), timeout=10)
    try:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        deadline = time.monotonic() + 10
        while b"tick 3\n" not in got:
            assert time.monotonic() < deadline, got
            chunk = s.recv(4096)
            assert chunk, got
            got += chunk
    finally:
        leave(s, how)
    assert_same_worker_free_soon(f, pid)


def test_client_resetting_while_the_app_computes_frees_the_worker_at_its_first_write(
        ferry, cut_app, tmp_path):
    """The client resets while /stream?ms=500 still computes (no head yet): the worker must not
    stream its minute to nobody."""
    ran = tmp_path / "ran"
    f = ferry(cut_app, *ONE_WORKER, env={"SESSION_CUT_LOG": str(ran)})
    pid = int(get_text(f, "/pid"))
    s = socket.create_connection(("127.0.0.1", f.port), timeout=10)
    try:
        s.sendall(b"GET /stream?ms=500 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_for(lambda: ran.exists() and b"/stream" in ran.read_bytes())
    finally:
        leave(s, "reset")
    assert_same_worker_free_soon(f, pid)
