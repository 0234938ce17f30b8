"""More RFC 9110/9112 behaviours of the HTTP front, with raw sockets: HTTP versions (505 for a
major other than 1, HTTP/1.x read as HTTP/1.1), unknown methods however long or however split
(501), trailer fields (accepted, never merged into the headers), request targets with raw
non-ASCII bytes, and worker responses the front must not pass on as they are: status codes
outside 200..599, interim and 101 responses, 205 with content, body bytes on a HEAD response.
Every refusal is checked for its exact status, `Connection: close`, the close itself, and that
the server serves the next request. (Malformed framing that must get exactly one 400 is in
test_http_smuggling.py.)"""

import os
import time
import urllib.parse

import pytest
import requests

from conftest import wait_for
from httpraw import Conn

WIRE_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "wsgi", "http_wire")
# Its fake loader writes exact bytes, past any loader's checks (see its docstring).
WIRE_ENV = {"FERRY_LOADERS_DIR": os.path.join(WIRE_APP, "loaders")}


@pytest.fixture
def wsgi(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"))
    still_serves(f)
    return f


@pytest.fixture
def wire(ferry):
    f = ferry(WIRE_APP, env=WIRE_ENV)
    assert requests.get(f.url + "/", timeout=20).text == "ok"
    return f


def still_serves(f):
    r = requests.get(f.url + "/", timeout=20)
    assert r.status_code in (200, 404) and r.text in ("ok", "not found\n"), r.text


def env_of(resp):
    return dict(line.split("=", 1) for line in resp.body.decode("latin-1").splitlines())


def refused(f, data, status, byte_by_byte=False):
    """Sends <data> (one byte per segment when <byte_by_byte>); asserts exactly one response
    with <status>, Connection: close, and the close; then that the server still serves."""
    with Conn(f.port) as c:
        if byte_by_byte:
            for i in range(len(data)):
                c.send(data[i:i + 1])
                time.sleep(0.01)
        else:
            c.send(data)
        r = c.read_response()
        assert r.status == status, r.head
        assert r.get("connection") == "close", r.head
        assert c.closed_by_server(), "the server kept the connection open"
    still_serves(f)
    return r


def wire_target(raw):
    """The target that makes the wire app write <raw> as its whole response."""
    return b"/wire?" + urllib.parse.quote_from_bytes(raw, safe=b"").encode()


# ---- HTTP versions --------------------------------------------------------------------------

@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/0.9"])
def test_major_version_other_than_1_gets_505(wsgi, version):
    r = refused(wsgi, b"GET /hello " + version + b"\r\nHost: a\r\n\r\n", 505)
    assert r.head.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n"), r.head


def test_major_version_other_than_1_sent_byte_by_byte_gets_505(wsgi):
    refused(wsgi, b"GET /hello HTTP/3.0\r\nHost: a\r\n\r\n", 505, byte_by_byte=True)


def test_http2_prior_knowledge_preface_gets_505(wsgi):
    refused(wsgi, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505)


@pytest.mark.parametrize("minor", [b"2", b"9"])
def test_higher_http_1_minor_version_is_served_as_http_11(wsgi, minor):
    with Conn(wsgi.port) as c:
        c.send(b"GET /env HTTP/1." + minor + b"\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.head.startswith(b"HTTP/1.1 200 "), r.head
        assert env_of(r)["SERVER_PROTOCOL"] == "HTTP/1.1"
        assert r.get("connection") is None   # persistent, as HTTP/1.1
        c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.read_response().body == b"hello world\n"


# ---- methods and targets --------------------------------------------------------------------

def test_unknown_method_longer_than_any_known_gets_501(wsgi):
    refused(wsgi, b"A" * 100 + b" /hello HTTP/1.1\r\nHost: a\r\n\r\n", 501)


def test_unknown_method_sent_byte_by_byte_gets_501(wsgi):
    refused(wsgi, b"FROB /hello HTTP/1.1\r\nHost: a\r\n\r\n", 501, byte_by_byte=True)


def test_raw_non_ascii_bytes_in_the_target_are_refused(wsgi):
    refused(wsgi, b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400)


@pytest.mark.parametrize("path", [b"/../hello", b"/a/../../hello", b"/%2e%2E/hello",
                                  b"/a%2f..%2f..%2fhello"])
def test_a_path_that_climbs_above_the_root_is_refused(wsgi, path):
    refused(wsgi, b"GET " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n", 400)


def test_dot_segments_inside_the_root_reach_the_app_as_sent(wire):
    with Conn(wire.port) as c:
        c.send(b"GET /a/./b/%2e%2E/../env?x=/../.. HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r.head
        env = env_of(r)
        assert env["PATH_INFO"] == "/a/./b/../../env"   # decoded, not normalized
        assert env["QUERY_STRING"] == "x=/../.."


# ---- chunked bodies: trailer fields ----------------------------------------------------------

def test_trailer_fields_are_accepted_but_never_become_request_headers(wsgi):
    with Conn(wsgi.port) as c:
        c.send(b"POST /env HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nHost: evil\r\n"
               b"X-Forwarded-For: 6.6.6.6\r\nX-Trailer: 1\r\n\r\n"
               b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r.head
        env = env_of(r)
        assert env["HTTP_HOST"] == "a"
        assert env["SERVER_NAME"] == "a"
        assert env["HTTP_X_FORWARDED_FOR"] == "1.1.1.1"
        assert "HTTP_X_TRAILER" not in env
        assert env["CONTENT_LENGTH"] == "5"
        assert c.read_response().body == b"hello world\n"   # not taken for a trailer


@pytest.mark.parametrize("ext", [b"5 ;a=b", b"5;a = b", b"5\t; a = \"q x\"", b"5;flag;n=1"])
def test_chunk_extensions_with_optional_whitespace_are_accepted(wsgi, ext):
    """RFC 9112 §7.1.1: BWS around the ";" and "=" of a chunk extension (llhttp 8 refuses it;
    ferry de-chunks bodies itself)."""
    with Conn(wsgi.port) as c:
        c.send(b"POST /env HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + ext
               + b"\r\nhello\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r.head
        assert env_of(r)["CONTENT_LENGTH"] == "5"
        assert c.read_response().body == b"hello world\n"


def test_framing_fields_in_a_trailer_are_dropped_like_any_other_trailer_field(wsgi):
    """One rule for trailer fields, whatever their name: checked, counted, dropped."""
    with Conn(wsgi.port) as c:
        c.send(b"POST /env HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n"
               b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r.head
        assert env_of(r)["CONTENT_LENGTH"] == "5"
        assert c.read_response().body == b"hello world\n"


@pytest.mark.parametrize("name", [b"Content-Type", b"Authorization", b"User-Agent", b"Range"])
def test_a_repeated_singleton_field_is_refused_with_400(wsgi, name):
    refused(wsgi, b"GET /env HTTP/1.1\r\nHost: a\r\n" + name + b": a\r\n" + name.lower()
            + b": b\r\n\r\n", 400)


def test_a_repeated_list_field_reaches_the_app_combined(wsgi):
    with Conn(wsgi.port) as c:
        c.send(b"GET /env HTTP/1.1\r\nHost: a\r\nX-List: a\r\nX-List: b\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r.head
        assert env_of(r)["HTTP_X_LIST"] == "a, b"


# ---- worker responses -----------------------------------------------------------------------

def test_the_502_log_line_names_a_status_outside_200_to_599(wire):
    raw = b"Status: 999 Beyond\r\nContent-Length: 2\r\n\r\nok"
    with Conn(wire.port) as c:
        c.send(b"GET " + wire_target(raw) + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.read_response().status == 502
    assert wait_for(lambda: "status 999 cannot be forwarded (200..599 only)" in wire.log()), \
        wire.log()


@pytest.mark.parametrize("status_line", [
    b"Status: 600 Beyond", b"Status: 999 Beyond", b"Status: 99 Short", b"Status: 1000 Long",
    b"Status: abc Letters", b"Status: 103 Early Hints", b"Status: 101 Switching Protocols",
])
def test_worker_status_outside_200_to_599_gets_502(wire, status_line):
    raw = status_line + b"\r\nContent-Length: 2\r\n\r\nok"
    with Conn(wire.port) as c:
        c.send(b"GET " + wire_target(raw) + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status == 502, r.head
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")   # a 502 leaves the connection usable
        assert c.read_response().body == b"ok"


def test_205_goes_out_with_zero_length_and_without_the_workers_body(wire):
    raw = b"Status: 205 Reset Content\r\nContent-Length: 5\r\n\r\nhello"
    with Conn(wire.port) as c:
        c.send(b"GET " + wire_target(raw) + b" HTTP/1.1\r\nHost: a\r\n\r\n"
               b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status == 205, r.head
        assert r.all("content-length") == ["0"] and r.get("transfer-encoding") is None, r.head
        assert r.body == b""
        nxt = c.read_response()
        assert (nxt.status, nxt.body) == (200, b"ok"), nxt.head


def test_body_bytes_of_a_head_response_never_reach_the_client(wire):
    raw = b"Status: 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
    with Conn(wire.port) as c:
        c.send(b"HEAD " + wire_target(raw) + b" HTTP/1.1\r\nHost: a\r\n\r\n"
               b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response(head_request=True)
        assert r.status == 200 and r.get("content-length") == "10", r.head
        nxt = c.read_response()
        assert (nxt.status, nxt.body) == (200, b"ok"), nxt.head


def test_workers_date_and_server_are_kept_once(wire):
    raw = (b"Status: 200 OK\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nServer: app/1\r\n"
           b"Content-Length: 2\r\n\r\nok")
    with Conn(wire.port) as c:
        c.send(b"GET " + wire_target(raw) + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.all("date") == ["Mon, 01 Jan 2001 00:00:00 GMT"], r.head
        assert r.all("server") == ["app/1"], r.head


def test_workers_bare_cr_in_a_header_value_gets_502_not_a_split_response(wire):
    raw = b"Status: 200 OK\r\nX-A: a\rHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    with Conn(wire.port) as c:
        c.send(b"GET " + wire_target(raw) + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status == 502, r.head
        assert b"HTTP/1.1 200" not in r.body
