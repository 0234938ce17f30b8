"""Real frameworks behind ferry: Flask (WSGI, Debian's python3-flask) and Sinatra (Rack, Debian's
ruby-sinatra). Each serves JSON, a multipart upload checked by sha256, a streamed body, a
redirect, a cookie session over two requests, an exception (500, then the next request works)
and a chunked upload, exactly as the framework would under gunicorn or Puma."""
import hashlib
import os

import pytest
import requests

from conftest import app

APPS = {
    "flask": app("tests", "e2e", "apps", "frameworks", "flask"),
    "sinatra": app("tests", "e2e", "apps", "frameworks", "sinatra"),
}


@pytest.fixture(params=sorted(APPS))
def served(request, ferry):
    return request.param, ferry(APPS[request.param])


def test_get_and_headers(served):
    name, f = served
    r = requests.get(f.url + "/", timeout=10)
    assert r.status_code == 200
    assert r.text == "hello from %s" % name
    assert r.headers["Content-Length"] == str(len(r.content))
    assert "Date" in r.headers


def test_json_post_with_query_and_url(served):
    _, f = served
    r = requests.post(f.url + "/json?q=2&r=%20x", json={"a": [1, "é"]}, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["got"] == {"a": [1, "é"]}
    assert body["args"] == {"q": "2", "r": " x"}
    assert body["path"] == "/json"
    assert body["script_root"] == ""
    assert body["url"] == f.url + "/json?q=2&r=%20x"


def test_multipart_upload(served):
    _, f = served
    data = os.urandom(300_000)
    r = requests.post(f.url + "/upload", files={"file": ("blob.bin", data)},
                      data={"other": "value"}, timeout=20)
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "blob.bin"
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["form"] == {"other": "value"}


def test_streamed_body_is_chunked(served):
    _, f = served
    r = requests.get(f.url + "/stream", timeout=10)
    assert r.status_code == 200
    assert r.headers.get("Transfer-Encoding") == "chunked"
    assert r.text == "".join("line %d\n" % i for i in range(5))


def test_redirect(served):
    _, f = served
    r = requests.get(f.url + "/redirect", allow_redirects=False, timeout=10)
    assert r.status_code == 302
    assert r.headers["Location"].endswith("/json?from=redirect")


def test_session_cookie_round_trip(served):
    _, f = served
    s = requests.Session()
    assert s.get(f.url + "/session", timeout=10).text == "1"
    assert s.get(f.url + "/session", timeout=10).text == "2"


def test_exception_is_500_and_the_worker_goes_on(served):
    name, f = served
    r = requests.get(f.url + "/boom", timeout=10)
    assert r.status_code == 500
    assert "kaboom from %s" % name not in r.text   # production: no backtrace to the client
    assert requests.get(f.url + "/", timeout=10).status_code == 200


def test_chunked_upload(served):
    _, f = served
    r = requests.post(f.url + "/json", data=iter([b'{"c":', b' 3}']),
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200
    assert r.json()["got"] == {"c": 3}
