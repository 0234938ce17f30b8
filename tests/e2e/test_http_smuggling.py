"""Strict parsing: every ambiguous or malformed request is refused with exactly one 400 and the
connection closed, nothing of it reaches the app, and the server serves the next request."""

import pytest
import requests

CASES = {
    "cl_and_te": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n",
    "te_and_cl": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: 4\r\n\r\n0\r\n\r\n",
    "duplicate_cl": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                    b"Content-Length: 3\r\n\r\nabc",
    "conflicting_cl": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                      b"Content-Length: 5\r\n\r\nabcde",
    "cl_list": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
    "bad_chunk_size": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\nabc\r\n0\r\n\r\n",
    "chunk_size_overflow": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"ffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "te_not_chunked": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    "obs_fold": b"GET /hello HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n",
    "nul_in_header": b"GET /hello HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n",
    "bare_cr_in_header": b"GET /hello HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n",
    "bare_lf": b"GET /hello HTTP/1.1\nHost: a\n\n",
    "space_before_colon": b"GET /hello HTTP/1.1\r\nHost : a\r\n\r\n",
    "invalid_version": b"GET /hello HTTP/1.10\r\nHost: a\r\n\r\n",
    "two_digit_major": b"GET /hello HTTP/10.1\r\nHost: a\r\n\r\n",
    "garbage_version": b"GET /hello HTTX/1.1\r\nHost: a\r\n\r\n",
    "invalid_method": b"G@T /hello HTTP/1.1\r\nHost: a\r\n\r\n",
    "no_host": b"GET /hello HTTP/1.1\r\n\r\n",
    "two_hosts": b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "bad_percent": b"GET /he%zzllo HTTP/1.1\r\nHost: a\r\n\r\n",
    "encoded_nul": b"GET /he%00llo HTTP/1.1\r\nHost: a\r\n\r\n",
    # llhttp's default build skipped the two bytes after a chunk's data unread
    "chunk_data_without_crlf": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                               b"\r\n5\r\nhelloXX0\r\n\r\n",
    # bare LF: refused in header lines, so refused where llhttp alone would take it too
    "bare_lf_ends_request_line": b"GET /hello HTTP/1.1\nHost: a\r\n\r\n",
    "bare_lf_ends_head": b"GET /hello HTTP/1.1\r\nHost: a\r\n\nGET /hello HTTP/1.1\r\n"
                         b"Host: a\r\n\r\n",
    "bare_lf_ends_trailers": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                             b"\r\n5\r\nhello\r\n0\r\n\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n",
    "bare_lf_after_trailer": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                             b"\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\nGET /hello HTTP/1.1\r\n"
                             b"Host: a\r\n\r\n",
    # one SP between the parts of the request line (RFC 9112 section 3)
    "two_spaces_after_method": b"GET  /hello HTTP/1.1\r\nHost: a\r\n\r\n",
    "two_spaces_before_version": b"GET /hello  HTTP/1.1\r\nHost: a\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_request_gets_exactly_one_400(ferry, conformance_app, raw_request, name):
    f = ferry(conformance_app("wsgi"))
    out = raw_request(f.port, CASES[name])
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    assert out.count(b"HTTP/1.1 ") == 1
    assert b"Connection: close" in out.split(b"\r\n\r\n")[0]
    r = requests.get(f.url + "/hello", timeout=20)
    assert (r.status_code, r.text) == (200, "hello world\n")


def test_unknown_method_gets_exactly_one_501_and_close(ferry, conformance_app, raw_request):
    f = ferry(conformance_app("wsgi"))
    out = raw_request(f.port, b"FROB /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\n"
                              b"Host: a\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 501 "), out[:200]
    assert out.count(b"HTTP/1.1 ") == 1
    assert b"Connection: close" in out.split(b"\r\n\r\n")[0]
    r = requests.get(f.url + "/hello", timeout=20)
    assert (r.status_code, r.text) == (200, "hello world\n")
