"""Requests and responses: the same cases against every loader (tests/conformance/APPS.md),
each over session protocol v1 (a connection per request) and v2 (one session, framed;
docs/protocol.md §4)."""

import hashlib
import os

import pytest

from . import harness

pytestmark = pytest.mark.both_wires


def env_lines(resp):
    assert resp.status == 200, resp.body
    lines = resp.body.decode().split("\n")
    assert lines[-1] == "", "body must end with a newline: %r" % resp.body
    return lines[:-1]


def test_hello_has_status_line_headers_and_body(spawn):
    w = spawn()
    r = w.get("/hello")
    assert (r.status, r.body) == (200, b"hello world\n")
    assert r.header("Content-Type") == "text/plain"
    assert r.header("Content-Length") == "12"


def test_get_with_query_passes_cgi_variables(spawn):
    w = spawn()
    lines = env_lines(w.get("/env?a=1&b=two%20words"))
    assert lines == sorted(lines)
    assert "REQUEST_METHOD=GET" in lines
    assert "PATH_INFO=/env" in lines
    assert "QUERY_STRING=a=1&b=two%20words" in lines
    assert "SERVER_PROTOCOL=HTTP/1.1" in lines
    assert "REMOTE_ADDR=127.0.0.1" in lines
    assert not any(line.startswith("CONTENT_LENGTH=") for line in lines)


def test_connect_password_is_never_visible_to_the_app(spawn):
    w = spawn()
    r = w.get("/env", headers=[("X-Probe", "1")])
    assert b"FERRY_CONNECT_PASSWORD" not in r.body
    assert w.secret.encode() not in r.body


def test_headers_with_empty_values_are_present(spawn):
    w = spawn()
    lines = env_lines(w.get("/env?", headers=[("X-Empty", ""), ("X-Full", "v")]))
    assert "HTTP_X_EMPTY=" in lines
    assert "HTTP_X_FULL=v" in lines
    assert "QUERY_STRING=" in lines


def test_post_10_mib_body_is_read_whole(spawn):
    w = spawn()
    body = os.urandom(10 * 1024 * 1024)
    r = w.request("POST", "/sha256", body=body, headers=[("Content-Type", "application/x-raw")])
    assert r.status == 200
    assert r.body.decode() == "%d %s\n" % (len(body), hashlib.sha256(body).hexdigest())


def test_post_empty_body(spawn):
    w = spawn()
    r = w.request("POST", "/sha256", body=b"")
    assert r.body.decode() == "0 %s\n" % hashlib.sha256(b"").hexdigest()


def test_echo_keeps_content_type_and_body(spawn):
    w = spawn()
    body = bytes(range(256)) * 300
    r = w.request("POST", "/echo", body=body, headers=[("Content-Type", "application/x-test")])
    assert (r.status, r.body) == (200, body)
    assert r.header("Content-Type") == "application/x-test"


def test_streamed_100_mib_response_uses_bounded_memory(spawn):
    w = spawn()
    # Measured from the booted worker: an interpreter under ASan starts at ~60 MiB.
    base_kib = int(harness.proc_status(w.pid, "VmRSS")[0])
    total = 100 * 1024 * 1024
    h = hashlib.sha256()
    got = [0]

    def sink(chunk):
        got[0] += len(chunk)
        h.update(chunk)

    r = w.get("/stream?mib=100", sink=sink, timeout=60)
    assert r.status == 200
    assert r.header("Content-Length") is None
    assert got[0] == total
    assert h.hexdigest() == harness.stream_pattern_digest(total)
    grew_kib = int(harness.proc_status(w.pid, "VmHWM")[0]) - base_kib
    assert grew_kib < 32 * 1024, "worker peak RSS grew %d KiB: the response was buffered" % grew_kib


def test_two_set_cookie_headers_are_kept_in_order(spawn):
    w = spawn()
    r = w.get("/cookies")
    assert r.status == 200
    assert r.header_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert r.body == b"cookies\n"


def test_status_codes_and_bodiless_statuses(spawn):
    w = spawn()
    for code in (200, 201, 302, 404, 418, 500, 503):
        r = w.get("/status/%d" % code)
        assert r.status == code
        assert r.body == b"status %d\n" % code
    for code in (204, 304):
        r = w.get("/status/%d" % code)
        assert r.status == code
        assert r.body == b""
        assert r.header("Content-Length") is None
        assert r.header("Content-Type") is None


def test_unknown_route_is_404(spawn):
    w = spawn()
    r = w.get("/no/such/route")
    assert (r.status, r.body) == (404, b"not found\n")


def test_head_sends_the_head_but_no_body(spawn):
    w = spawn()
    r = w.request("HEAD", "/hello")
    assert r.status == 200
    assert r.header("Content-Length") == "12"
    assert r.body == b""
    r = w.request("HEAD", "/stream?mib=1")
    assert (r.status, r.body) == (200, b"")
    assert w.get("/hello").body == b"hello world\n"


def test_app_exception_gives_500_and_the_next_request_succeeds(spawn):
    w = spawn()
    r = w.get("/raise")
    assert r.status == 500
    assert w.get("/hello").body == b"hello world\n"
    assert w.get("/pid").body == str(w.pid).encode()


def test_body_close_is_called(spawn):
    w = spawn()
    before = int(w.get("/close-count").body)
    assert w.get("/close-tracked").body == b"tracked\n"
    assert w.get("/close-tracked").body == b"tracked\n"
    assert int(w.get("/close-count").body) == before + 2


def test_many_sequential_requests_on_one_worker(spawn):
    w = spawn()
    for i in range(50):
        r = w.get("/pid")
        assert r.body == str(w.pid).encode(), i
    assert harness.zombie_children(w.pid) == []


def test_an_exception_after_the_head_cuts_the_body_and_the_worker_goes_on(spawn, wire):
    """GET /fail-after-head: the head and a first chunk, then the app raises. Over v1 the
    worker closes the connection after the chunk; over v2 END says APP_FAILED
    (docs/protocol.md §4.2)."""
    w = spawn()
    r = w.get("/fail-after-head", complete=False)
    assert r.status == 200
    assert r.body == b"first chunk\n"
    if wire == "v2":
        assert r.app_failed, "END flags 0x%02x: a cut body is not marked" % r.end_flags
    assert w.get("/pid").body == str(w.pid).encode()


def test_a_client_gone_during_an_endless_response_frees_the_worker(spawn, wire):
    """GET /endless is read for 2 MiB, then the connection is closed (over v2: the session, at
    a frame boundary, docs/protocol.md §4.1): the worker stops the app and serves the next
    connection."""
    w = spawn()
    pending = w.begin("GET", "/endless")
    got = 0
    if wire == "v1":
        while got < 2 * 1024 * 1024:
            chunk = pending.sock.recv(1 << 20)
            assert chunk, "the endless response ended"
            got += len(chunk)
        pending.close()
    else:
        while got < 2 * 1024 * 1024:
            f = pending.session.read_frame(10)
            assert f is not None and f.id == pending.fid and f.type in (harness.HEAD,
                                                                       harness.DATA), f
            got += len(f.payload) if f.type == harness.DATA else 0
        w.drop_request_session()
    assert w.get("/pid", timeout=10).body == str(w.pid).encode()
    assert w.get("/hello").body == b"hello world\n"
