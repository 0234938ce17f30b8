"""Session protocol v2 (docs/protocol.md §4.3, "END is the only end"): a response body that the
worker cut short is never presented to the client as complete. After the head went out the
client's connection is closed without the terminating 0-chunk (chunked) or short of its
Content-Length; before the head the client gets 502. A worker that died is replaced; a worker
whose app failed after its head (END with APP_FAILED) survives and serves the next request.

Every test runs one native C worker (--max-pool-size 1 --min-instances 1, the app
tests/e2e/apps/c/session_cut), so "the same worker" and "a new worker" are told apart by the pid
that GET /pid answers. The app pauses 20 ms after each write, as a streaming app does, so what it
wrote before it dies or fails is on its way (a worker may coalesce writes made in quick
succession)."""
import os
import socket
import time

import pytest
import requests

from conftest import BUILD_DIR, wait_for
from httpraw import Conn

CUT_APP = os.path.join(BUILD_DIR, "tests", "e2e", "apps", "c", "session_cut")
ONE_WORKER = ("--max-pool-size", "1", "--min-instances", "1")
CHUNKS = b"chunk-1\nchunk-2\nchunk-3\n"   # what /chunks-then-* write before they die or fail
DECLARED, SHORT = 1000, 300                # /length-then-*: Content-Length, bytes written


@pytest.fixture
def cut_app():
    if not os.path.exists(os.path.join(CUT_APP, "app.so")):
        pytest.fail("the C app is not built at %s (set FERRY_BUILD_DIR)" % CUT_APP)
    return CUT_APP


class Partial:
    """One response as far as it came: <complete> says whether its own framing ended it (the
    0-chunk, or Content-Length bytes); <closed> whether the server closed the connection."""

    def __init__(self, data, closed):
        self.data = data
        self.closed = closed
        head, sep, rest = data.partition(b"\r\n\r\n")
        self.has_head = bool(sep)
        self.status = None
        self.headers = {}
        self.body = b""
        self.complete = False
        if not sep:
            return
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split(b" ")[1])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers[name.decode().lower()] = value.strip().decode("latin-1")
        if self.headers.get("transfer-encoding") == "chunked":
            self._dechunk(rest)
        elif "content-length" in self.headers:
            self.body = rest
            self.complete = len(rest) >= int(self.headers["content-length"])
        else:
            self.body = rest

    def _dechunk(self, rest):
        while True:
            size_line, sep, after = rest.partition(b"\r\n")
            if not sep:
                return
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                # A last-chunk, even without its final CRLF, tells the client "that was all".
                self.complete = True
                return
            self.body += after[:size]
            if len(after) < size + 2:
                return
            assert after[size:size + 2] == b"\r\n", self.data[-300:]
            rest = after[size + 2:]


def get_partial(port, path, timeout=10.0):
    """Sends GET <path> (keep-alive) and reads until the response is complete by its framing or
    the server closes the connection; fails when neither happens within <timeout> seconds."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("GET %s: neither complete nor closed within %ss; have %r"
                            % (path, timeout, data[-300:]))
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return Partial(data, closed=True)
            if not chunk:
                return Partial(data, closed=True)
            data += chunk
            got = Partial(data, closed=False)
            if got.complete:
                return got
    finally:
        s.close()


def worker_pid(f):
    r = requests.get(f.url + "/pid", timeout=20)
    assert r.status_code == 200, r.text
    return int(r.text)


def test_worker_dying_mid_chunked_body_closes_without_the_last_chunk(ferry, cut_app):
    f = ferry(cut_app, *ONE_WORKER)
    pid = worker_pid(f)
    got = get_partial(f.port, "/chunks-then-die")
    assert got.status == 200 and got.headers.get("transfer-encoding") == "chunked", got.data
    assert got.body == CHUNKS, got.data
    assert not got.complete, "a body cut by the worker's death ended with a last-chunk: %r" \
        % got.data[-300:]
    assert got.closed
    assert worker_pid(f) != pid


def test_worker_dying_mid_sized_body_closes_short_of_content_length(ferry, cut_app):
    f = ferry(cut_app, *ONE_WORKER)
    pid = worker_pid(f)
    got = get_partial(f.port, "/length-then-die")
    assert got.status == 200 and got.headers.get("content-length") == str(DECLARED), got.data
    assert got.body == b"a" * SHORT, got.data[-300:]
    assert not got.complete and got.closed
    assert worker_pid(f) != pid


@pytest.mark.parametrize("path,body", [("/chunks-then-fail", CHUNKS),
                                       ("/length-then-fail", b"a" * SHORT)],
                         ids=["chunked", "content-length"])
def test_app_failing_after_its_head_cuts_the_body_and_the_worker_serves_on(ferry, cut_app, path,
                                                                           body):
    """on_request returns FERRY_ERROR after writing part of its body; the worker lives on
    (END with APP_FAILED), so the next request is served by the same pid."""
    f = ferry(cut_app, *ONE_WORKER)
    pid = worker_pid(f)
    got = get_partial(f.port, path)
    assert got.status == 200, got.data
    assert got.body == body, got.data[-300:]
    assert not got.complete, "the body cut by the app's failure was presented as complete: %r" \
        % got.data[-300:]
    assert got.closed
    assert worker_pid(f) == pid, "the worker whose app failed after its head was replaced"


def test_worker_dying_before_its_head_is_502_and_the_connection_serves_on(ferry, cut_app):
    f = ferry(cut_app, *ONE_WORKER)
    pid = worker_pid(f)
    with Conn(f.port, timeout=20) as c:
        c.send(b"GET /die-before-head HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 502
        c.send(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert int(r.body) != pid


def test_request_waiting_behind_a_worker_that_dies_runs_once_on_the_next(ferry, cut_app,
                                                                         tmp_path):
    """With --dispatch-ahead 1 the core may hand the waiting GET /count to the worker before it
    ends its current request (§4.3); that worker dies without a head: the current request gets
    502 and /count, which it never started, runs once, on the new worker."""
    ran = tmp_path / "ran"
    f = ferry(cut_app, *ONE_WORKER, "--dispatch-ahead", "1", env={"SESSION_CUT_LOG": str(ran)})
    pid = worker_pid(f)
    with Conn(f.port, timeout=20) as dying, Conn(f.port, timeout=20) as waiting:
        dying.send(b"GET /die-before-head?ms=500 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_for(lambda: ran.exists() and b"/die-before-head" in ran.read_bytes())
        waiting.send(b"GET /count HTTP/1.1\r\nHost: x\r\n\r\n")
        assert dying.read_response().status == 502
        r = waiting.read_response()
        assert r.status == 200
        assert int(r.body) != pid
    assert ran.read_text().splitlines() == ["/die-before-head %d" % pid, "/count %d" % int(r.body)]
