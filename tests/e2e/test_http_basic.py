"""The HTTP front's everyday behaviour: GET through each loader, CGI variables, keep-alive,
pipelining, HEAD, repeated headers, HTTP/1.0 framing, large bodies both ways, chunked uploads
and Expect: 100-continue."""

import hashlib
import os
import re
import socket

import pytest
import requests

LOADERS = ["wsgi", "rack", "c"]


def test_get_hello_wsgi_example(ferry, repo):
    f = ferry(os.path.join(repo, "examples", "hello-wsgi"))
    r = requests.get(f.url + "/", timeout=10)
    assert r.status_code == 200
    assert "Hello from ferry" in r.text
    assert r.headers["X-Powered-By"].startswith("ferry/")
    assert "Date" in r.headers
    assert f"http://127.0.0.1:{f.port}" in f.log()
    assert f"pid {f.pid}" in f.log()


def test_get_hello_rack_example(ferry, repo):
    f = ferry(os.path.join(repo, "examples", "hello-rack"))
    r = requests.get(f.url + "/", timeout=20)
    assert r.status_code == 200
    assert r.text


def test_get_hello_c_example(ferry, build_dir):
    path = os.path.join(build_dir, "examples", "hello-c")
    if not os.path.exists(os.path.join(path, "app.so")):
        pytest.skip("examples/hello-c is not built at " + path)
    f = ferry(path)
    r = requests.get(f.url + "/", timeout=10)
    assert r.status_code == 200
    assert r.text


@pytest.mark.parametrize("kind", LOADERS)
def test_get_hello_and_404(ferry, conformance_app, kind):
    f = ferry(conformance_app(kind))
    r = requests.get(f.url + "/hello", timeout=20)
    assert (r.status_code, r.text) == (200, "hello world\n")
    assert r.headers["Content-Length"] == "12"
    r = requests.get(f.url + "/nope", timeout=10)
    assert r.status_code == 404


@pytest.mark.parametrize("kind", LOADERS)
def test_cgi_variables(ferry, conformance_app, kind):
    f = ferry(conformance_app(kind))
    r = requests.get(f.url + "/%65nv?x=1&y=%20", timeout=20,
                     headers={"X-Custom-Thing": "v1", "X_Spoof": "bad", "Cookie": "a=1"})
    assert r.status_code == 200
    env = dict(line.split("=", 1) for line in r.text.splitlines())
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/env"   # percent-decoded
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["SCRIPT_NAME"] == ""
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(f.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert int(env["REMOTE_PORT"]) > 0
    assert env["HTTP_X_CUSTOM_THING"] == "v1"
    assert env["HTTP_COOKIE"] == "a=1"
    assert "CONTENT_LENGTH" not in env
    assert "HTTP_X_SPOOF" not in env
    assert "FERRY_CONNECT_PASSWORD" not in r.text


def test_repeated_request_headers_are_joined(ferry, conformance_app, raw_request):
    f = ferry(conformance_app("wsgi"))
    out = raw_request(f.port, b"GET /env HTTP/1.1\r\nHost: x:1\r\nX-A: 1\r\nX-A: 2\r\n"
                      b"Connection: close\r\n\r\n")
    assert b"HTTP_X_A=1, 2\n" in out
    assert b"SERVER_NAME=x\n" in out and b"SERVER_PORT=1\n" in out


def test_keep_alive_reuses_the_connection(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"))
    with requests.Session() as s:
        ports = set()
        for _ in range(5):
            r = s.get(f.url + "/env", timeout=10)
            assert r.status_code == 200
            env = dict(line.split("=", 1) for line in r.text.splitlines())
            ports.add(env["REMOTE_PORT"])
    assert len(ports) == 1


def test_three_pipelined_requests_answer_in_order(ferry, conformance_app, raw_request):
    f = ferry(conformance_app("wsgi"))
    req = (b"GET /slow?ms=200 HTTP/1.1\r\nHost: a\r\n\r\n"
           b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"
           b"GET /status/201 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    out = raw_request(f.port, req)
    first = out.find(b"slept 200")
    second = out.find(b"hello world")
    third = out.find(b"HTTP/1.1 201")
    assert out.count(b"HTTP/1.1 ") == 3
    assert 0 < first < second < third


@pytest.mark.parametrize("kind", LOADERS)
def test_head_sends_no_body(ferry, conformance_app, raw_request, kind):
    f = ferry(conformance_app(kind))
    out = raw_request(f.port, b"HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", timeout=20)
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 12" in head
    # the next response follows right away: nothing of a body was sent for HEAD
    assert rest.startswith(b"HTTP/1.1 200")
    assert rest.endswith(b"hello world\n")


def test_repeated_response_headers_are_kept(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"))
    r = requests.get(f.url + "/cookies", timeout=10)
    assert r.raw.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_204_and_304_have_no_body(ferry, conformance_app, raw_request):
    f = ferry(conformance_app("wsgi"))
    out = raw_request(f.port, b"GET /status/204 HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET /status/304 HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    parts = out.split(b"\r\n\r\n")
    assert parts[0].startswith(b"HTTP/1.1 204")
    assert parts[1].startswith(b"HTTP/1.1 304")
    assert parts[2].startswith(b"HTTP/1.1 200")


def stream_expected(mib):
    block = bytes(i % 251 for i in range(251 * 1024))
    n = mib * 1024 * 1024
    data = (block * (n // len(block) + 1))[:n]
    return data


@pytest.mark.parametrize("kind", LOADERS)
def test_10_mib_download_is_chunked_and_intact(ferry, conformance_app, kind):
    f = ferry(conformance_app(kind))
    r = requests.get(f.url + "/stream?mib=10", timeout=60)
    assert r.status_code == 200
    assert r.headers.get("Transfer-Encoding") == "chunked"
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(stream_expected(10)).hexdigest()


def test_http_10_stream_is_close_delimited(ferry, conformance_app, raw_request):
    f = ferry(conformance_app("wsgi"))
    out = raw_request(f.port, b"GET /stream?mib=1 HTTP/1.0\r\n\r\n", timeout=20)
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head
    assert b"Connection: close" in head
    assert body == stream_expected(1)


def test_http_10_keep_alive_with_length(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"))
    s = socket.create_connection(("127.0.0.1", f.port), timeout=10)
    try:
        for _ in range(2):
            s.sendall(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            buf = b""
            while not buf.endswith(b"hello world\n"):
                chunk = s.recv(4096)
                assert chunk
                buf += chunk
            assert b"Connection: keep-alive" in buf
    finally:
        s.close()


@pytest.mark.parametrize("kind", LOADERS)
def test_10_mib_upload_by_sha256(ferry, conformance_app, kind):
    f = ferry(conformance_app(kind))
    data = os.urandom(10 * 1024 * 1024)
    r = requests.post(f.url + "/sha256", data=data, timeout=60)
    assert r.status_code == 200
    assert r.text == "%d %s\n" % (len(data), hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("kind", LOADERS)
def test_chunked_upload_is_dechunked(ferry, conformance_app, kind):
    f = ferry(conformance_app(kind))
    pieces = [os.urandom(n) for n in (1, 1000, 70000, 3)]

    def gen():
        yield from pieces

    r = requests.post(f.url + "/sha256", data=gen(), timeout=30)
    data = b"".join(pieces)
    assert r.text == "%d %s\n" % (len(data), hashlib.sha256(data).hexdigest())


def test_echo_keeps_content_type(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"))
    r = requests.post(f.url + "/echo", data=b"abc", headers={"Content-Type": "text/x-test"},
                      timeout=10)
    assert (r.status_code, r.content, r.headers["Content-Type"]) == (200, b"abc", "text/x-test")


def test_expect_100_continue(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"))
    s = socket.create_connection(("127.0.0.1", f.port), timeout=10)
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        interim = s.recv(4096)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        assert out.startswith(b"HTTP/1.1 200")
        assert out.endswith(b"\r\n\r\nhello")
    finally:
        s.close()


def test_access_log_has_combined_format(ferry, conformance_app, tmp_path):
    log = tmp_path / "access.log"
    f = ferry(conformance_app("wsgi"), "--access-log", str(log))
    requests.get(f.url + "/hello", headers={"User-Agent": "t/1", "Referer": "http://r/"},
                 timeout=10)
    assert f.stop() == 0
    line = log.read_text().strip().splitlines()[-1]
    assert line.startswith("127.0.0.1 - - [")
    assert '"GET /hello HTTP/1.1" 200 12 "http://r/" "t/1" ' in line
    _, seconds, request_id = line.rsplit(" ", 2)
    float(seconds)
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), line
