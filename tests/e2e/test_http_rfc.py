"""RFC 9110/9112 behaviours of the HTTP front, checked with raw sockets: request-target forms,
connection management, response framing (HEAD, 204/304, HTTP/1.0, hop-by-hop headers from the
worker, a worker whose Content-Length lies), Transfer-Encoding and Content-Length refusals,
Expect, pipelining, byte-by-byte requests and Host validation. Every refusal is checked for its
exact status, `Connection: close`, the close itself, and that the server serves the next
request."""

import os
import time

import pytest
import requests

from httpraw import Conn

RAW_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "wsgi", "http_raw")


@pytest.fixture
def wsgi(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"))
    still_serves(f)   # the worker is up
    return f


@pytest.fixture
def raw(ferry):
    f = ferry(RAW_APP)
    assert requests.get(f.url + "/", timeout=20).text == "ok"
    return f


def still_serves(f):
    r = requests.get(f.url + "/hello", timeout=20)
    assert (r.status_code, r.text) == (200, "hello world\n")


def env_of(resp):
    return dict(line.split("=", 1) for line in resp.body.decode().splitlines())


def refused(f, data, status, head_request=False):
    """Sends <data>; asserts exactly one response with <status>, Connection: close, and the
    close; then that the server still serves."""
    with Conn(f.port) as c:
        c.send(data)
        r = c.read_response(head_request=head_request)
        assert r.status == status, r.head
        assert r.get("connection") == "close", r.head
        assert c.closed_by_server(), "the server kept the connection open"
    still_serves(f)
    return r


# ---- request targets ----------------------------------------------------------------------

def test_absolute_form_target_takes_path_and_host_from_the_target(wsgi):
    with Conn(wsgi.port) as c:
        c.send(b"GET http://example.org:8080/env?q=1 HTTP/1.1\r\nHost: other\r\n\r\n")
        r = c.read_response()
    env = env_of(r)
    assert r.status == 200
    assert env["PATH_INFO"] == "/env"
    assert env["QUERY_STRING"] == "q=1"
    assert env["SERVER_NAME"] == "example.org"
    assert env["SERVER_PORT"] == "8080"
    assert env["HTTP_HOST"] == "example.org:8080"


def test_absolute_form_with_an_unknown_scheme_is_refused(wsgi):
    refused(wsgi, b"GET ftp://example.org/env HTTP/1.1\r\nHost: example.org\r\n\r\n", 400)


def test_absolute_form_with_userinfo_is_refused(wsgi):
    refused(wsgi, b"GET http://user@example.org/env HTTP/1.1\r\nHost: example.org\r\n\r\n", 400)


@pytest.mark.parametrize("kind", ["wsgi", "rack"])
def test_asterisk_form_options_reaches_the_app(ferry, conformance_app, kind):
    f = ferry(conformance_app(kind))
    with Conn(f.port, timeout=20) as c:
        c.send(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body) == (404, b"not found\n")   # the app's answer, not a 500
        c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.read_response().body == b"hello world\n"


def test_asterisk_form_with_another_method_is_refused(wsgi):
    refused(wsgi, b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400)


# ---- connection management ----------------------------------------------------------------

def test_connection_close_request_gets_connection_close_and_the_close(wsgi):
    with Conn(wsgi.port) as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.get("connection") == "close"
        assert c.closed_by_server()


def test_http_10_keep_alive_is_honoured_and_said(wsgi):
    with Conn(wsgi.port) as c:
        for _ in range(3):
            c.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert r.body == b"hello world\n"
            assert r.get("connection") == "keep-alive"


def test_http_10_without_keep_alive_is_closed(wsgi):
    with Conn(wsgi.port) as c:
        c.send(b"GET /hello HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.body == b"hello world\n"
        assert r.get("connection") == "close"
        assert c.closed_by_server()


def test_http_10_response_without_length_is_close_delimited(raw):
    with Conn(raw.port) as c:
        c.send(b"GET /no-length HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        assert r.get("transfer-encoding") is None and r.get("content-length") is None
        assert r.get("connection") == "close"
        assert r.body == b"abc"


def test_http_11_response_without_length_is_chunked(raw):
    with Conn(raw.port) as c:
        c.send(b"GET /no-length HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.get("transfer-encoding") == "chunked"
        assert r.body == b"abc"


# ---- response framing ---------------------------------------------------------------------

@pytest.mark.parametrize("path", [b"/hello", b"/stream?mib=1"])
def test_head_has_the_apps_headers_no_body_and_the_connection_stays_usable(wsgi, path):
    with Conn(wsgi.port) as c:
        c.send(b"HEAD " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response(head_request=True)
        assert r.status == 200
        if path == b"/hello":
            assert r.get("content-length") == "12"
        assert r.get("transfer-encoding") is None
        c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.body == b"hello world\n"   # nothing of a HEAD body came before it


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_never_carry_a_body_or_chunking(raw, status):
    with Conn(raw.port) as c:
        c.send(b"GET /status/%d HTTP/1.1\r\nHost: a\r\n\r\n" % status)
        r = c.read_response()
        assert r.status == status
        assert r.get("transfer-encoding") is None
        if status == 204:
            assert r.get("content-length") is None
        c.send(b"GET /count HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body.isdigit(), r.body   # no "hello" came before it


def test_workers_transfer_encoding_and_connection_headers_are_replaced(raw):
    with Conn(raw.port) as c:
        c.send(b"GET /te-chunked HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.body == b"hello"
        assert r.all("transfer-encoding") == ["chunked"]   # ours, once
        assert r.get("connection") is None and r.get("keep-alive") is None
        c.send(b"GET /count HTTP/1.1\r\nHost: a\r\n\r\n")   # the app's close is not honoured
        assert c.read_response().status == 200


def test_headers_named_by_the_workers_connection_header_are_dropped(raw):
    with Conn(raw.port) as c:
        c.send(b"GET /conn-token HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.body == b"ok"
        assert r.get("x-secret") is None and r.get("connection") is None
        assert r.get("x-public") == "yes"


def test_worker_with_both_length_and_chunked_gets_only_a_length(raw):
    with Conn(raw.port) as c:
        c.send(b"GET /both HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert (r.get("content-length"), r.get("transfer-encoding"), r.body) == ("5", None, b"hello")


def test_short_worker_body_closes_the_client_and_never_misframes_the_next(raw):
    with Conn(raw.port) as c:
        c.send(b"GET /short-cl HTTP/1.1\r\nHost: a\r\n\r\nGET /count HTTP/1.1\r\nHost: a\r\n\r\n")
        deadline = time.monotonic() + 10
        data = b""
        while time.monotonic() < deadline:
            chunk = c.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert b"Content-Length: 100" in head
        assert body == b"0123456789"   # then the close; no second response
    still_serves_raw(raw)


def still_serves_raw(f):
    r = requests.get(f.url + "/count", timeout=20)
    assert r.status_code == 200 and r.text.isdigit()


def test_long_worker_body_is_truncated_at_its_content_length(raw):
    with Conn(raw.port) as c:
        c.send(b"GET /long-cl HTTP/1.1\r\nHost: a\r\n\r\nGET /count HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert (r.get("content-length"), r.body) == ("5", b"abcde")
        r = c.read_response()
        assert r.status == 200 and r.body.isdigit(), r.body


# ---- Transfer-Encoding and Content-Length in requests -----------------------------------

@pytest.mark.parametrize("te,status", [
    (b"gzip, chunked", 501),
    (b"chunked, gzip", 400),
    (b"chunked, chunked", 400),
    (b"gzip", 400),
    (b"identity", 400),
])
def test_transfer_codings_other_than_a_final_chunked_are_refused(wsgi, te, status):
    refused(wsgi, b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + te
            + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n", status)


def test_transfer_encoding_in_http_10_is_refused(wsgi):
    refused(wsgi, b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n", 400)


@pytest.mark.parametrize("value", [b"+5", b"-1", b"5, 5", b"0x5", b"5 5", b""])
def test_bad_content_length_is_refused(wsgi, value):
    refused(wsgi, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: " + value
            + b"\r\n\r\nhello", 400)


@pytest.mark.parametrize("line", [b"get /hello HTTP/1.1", b"Get /hello HTTP/1.1"])
def test_lowercase_method_is_refused(wsgi, line):
    refused(wsgi, line + b"\r\nHost: a\r\n\r\n", 400)


def test_unknown_method_is_not_implemented(wsgi):
    refused(wsgi, b"FOO /hello HTTP/1.1\r\nHost: a\r\n\r\n", 501)


# ---- header limits ------------------------------------------------------------------------

def test_extremely_long_header_line_gets_431(wsgi):
    refused(wsgi, b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Long: " + b"v" * 200000 + b"\r\n\r\n", 431)


def test_headers_past_the_count_limit_get_431(wsgi):
    hdrs = b"".join(b"X-%d: 1\r\n" % i for i in range(150))
    refused(wsgi, b"GET /hello HTTP/1.1\r\nHost: a\r\n" + hdrs + b"\r\n", 431)


# ---- Expect ---------------------------------------------------------------------------------

def test_expect_100_continue_with_a_body_too_large_gets_413_without_100(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"), "--max-body-size", "1k")
    still_serves(f)
    with Conn(f.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n"
               b"Expect: 100-continue\r\n\r\n")
        c._fill(time.monotonic() + 5)
        assert c.buf.startswith(b"HTTP/1.1 413 "), c.buf[:100]   # no 100 Continue first
        r = c.read_response()
        assert r.status == 413 and r.get("connection") == "close"
        assert c.closed_by_server()
    still_serves(f)


def test_unknown_expectation_gets_417(wsgi):
    refused(wsgi, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
            b"Expect: something-else\r\n\r\nhello", 417)


# ---- pipelining and slow writers ----------------------------------------------------------

def test_pipelined_post_with_body_then_get_in_one_packet(wsgi):
    with Conn(wsgi.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
               b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        r1 = c.read_response()
        r2 = c.read_response()
    assert (r1.status, r1.body) == (200, b"hello")
    assert (r2.status, r2.body) == (200, b"hello world\n")


def test_request_written_one_byte_at_a_time_is_served(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"), "--header-timeout", "10")
    still_serves(f)
    data = b"POST /echo HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc"
    with Conn(f.port) as c:
        for i in range(len(data)):
            c.send(data[i:i + 1])
            time.sleep(0.01)
        r = c.read_response()
    assert (r.status, r.body) == (200, b"abc")


# ---- Host -----------------------------------------------------------------------------------

@pytest.mark.parametrize("host", [b"a b", b"user@a", b"a/b", b"a:80x", b"[::1", b"a?b",
                                  b"a\xc3\xa9"])
def test_bad_host_value_is_refused(wsgi, host):
    refused(wsgi, b"GET /hello HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", 400)


@pytest.mark.parametrize("host", [b"a", b"a.example:8080", b"[::1]:3000", b"127.0.0.1", b""])
def test_good_host_values_are_served(wsgi, host):
    with Conn(wsgi.port) as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert c.read_response().status == 200


# ---- every refusal closes -------------------------------------------------------------------

def test_408_has_connection_close_and_closes(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"), "--header-timeout", "1")
    still_serves(f)
    with Conn(f.port) as c:
        c.send(b"GET /hello HTTP/1.1\r\n")
        r = c.read_response()
        assert r.status == 408 and r.get("connection") == "close"
        assert c.closed_by_server()
    still_serves(f)


def test_414_has_connection_close_and_closes(wsgi):
    refused(wsgi, b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)


def test_413_has_connection_close_and_closes(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"), "--max-body-size", "1k")
    still_serves(f)
    refused(f, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000, 413)
