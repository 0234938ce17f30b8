"""Real frameworks behind ferry: Flask and Django (WSGI, Debian's python3-flask and
python3-django 3.2), Sinatra and Rails (Rack, Debian's ruby-sinatra and ruby-railties 6.1, no
Bundler). Each serves JSON, a multipart upload checked by sha256, a streamed body, a redirect, a
cookie session over two requests, an exception (500, then the next request works) and a chunked
upload, exactly as the framework would under gunicorn or Puma. Then what each framework adds:
Django's CSRF protection, ALLOWED_HOSTS and build_absolute_uri; Rails' params parsing,
remote_ip, send_data, ActionController::Live and its production exception pages; and, for both,
a UTF-8 path segment and a body streamed as it is produced."""
import hashlib
import os
import time

import pytest
import requests

from conftest import app, wait_for

FRAMEWORKS = app("tests", "e2e", "apps", "frameworks")
APPS = {
    "flask": os.path.join(FRAMEWORKS, "flask"),
    "sinatra": os.path.join(FRAMEWORKS, "sinatra"),
    "django": os.path.join(FRAMEWORKS, "django"),
    "rails": os.path.join(FRAMEWORKS, "rails"),
}
# Rails 6.1 sends no Content-Length for a rendered body (its body object is not an Array and
# its default middleware stack has no Rack::ContentLength); ferry then frames it chunked, as
# Puma does. The others set Content-Length themselves.
SETS_CONTENT_LENGTH = {"flask", "sinatra", "django"}


def _tree(root):
    """Every path under <root> but __pycache__ (gitignored bytecode)."""
    found = set()
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found.update(os.path.join(dirpath, n) for n in dirs + files)
    return found


@pytest.fixture(scope="module", autouse=True)
def source_tree_untouched():
    """The apps write nothing into the source tree (Rails' tmp/ and log/, Django's files)."""
    before = _tree(FRAMEWORKS)
    yield
    added = sorted(_tree(FRAMEWORKS) - before)
    assert not added, "the framework apps left files in the source tree: %s" % added


@pytest.fixture(params=sorted(APPS))
def served(request, ferry):
    return request.param, ferry(APPS[request.param])


def test_get_and_headers(served):
    name, f = served
    r = requests.get(f.url + "/", timeout=10)
    assert r.status_code == 200
    assert r.text == "hello from %s" % name
    if name in SETS_CONTENT_LENGTH:
        assert r.headers["Content-Length"] == str(len(r.content))
    else:
        assert "Content-Length" not in r.headers
        assert r.headers["Transfer-Encoding"] == "chunked"
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


# --- Django and Rails: what the framework adds ----------------------------------------------

@pytest.fixture
def django(ferry):
    # 127.0.0.1 is a trusted proxy: X-Forwarded-Proto/-For decide the scheme and REMOTE_ADDR.
    # One worker: /finished counts in the worker process that answers it.
    return ferry(APPS["django"], "--trusted-proxy", "127.0.0.1", "--max-pool-size", "1")


@pytest.fixture
def rails(ferry):
    return ferry(APPS["rails"], "--trusted-proxy", "127.0.0.1")


@pytest.mark.parametrize("name", ["django", "rails"])
def test_path_segments_are_decoded_exactly_once(ferry, name):
    """WSGI's PATH_INFO is decoded (CGI, latin-1 str in PEP 3333); Rack's stays encoded and the
    framework decodes it. Either way "%2541" must reach the view as "%41", never "A"."""
    f = ferry(APPS[name])
    r = requests.get(f.url + "/echo/caf%C3%A9%20au%20lait", timeout=10)
    assert r.status_code == 200
    assert r.json()["word"] == "café au lait"
    assert requests.get(f.url + "/echo/%2541", timeout=10).json()["word"] == "%41"
    if name == "rails":
        # Rails routes on the encoded path: an encoded slash stays inside the segment, and
        # request.path is the path the client sent.
        r = requests.get(f.url + "/echo/a%2Fb", timeout=10)
        assert r.status_code == 200
        assert r.json() == {"word": "a/b", "path": "/echo/a%2Fb"}
        assert requests.get(f.url + "/echo/caf%C3%A9", timeout=10).json()["path"] == \
            "/echo/caf%C3%A9"
    else:
        # Django (like every WSGI app) sees the decoded path: "/echo/a/b" is not a route.
        assert requests.get(f.url + "/echo/a%2Fb", timeout=10).status_code == 404
    r = requests.head(f.url + "/echo/x", timeout=10)
    assert r.status_code == 200
    assert r.content == b""


@pytest.mark.parametrize("name,path", [("django", "/stream"), ("rails", "/stream"),
                                       ("rails", "/live")])
def test_body_is_streamed_as_produced(ferry, name, path):
    """Three lines 0.3 s apart must reach the client 0.3 s apart: nothing between the app and
    the client (loader, core, framework middleware) holds the body back until its end."""
    f = ferry(APPS[name])
    prefix = "live" if path == "/live" else "line"
    with requests.get(f.url + path + "?n=3&gap=0.3", stream=True, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers.get("Transfer-Encoding") == "chunked"
        arrivals = []
        for line in r.iter_lines():
            arrivals.append((line.decode(), time.monotonic()))
    assert [text for text, _ in arrivals] == ["%s %d" % (prefix, i) for i in range(3)]
    assert arrivals[-1][1] - arrivals[0][1] >= 0.45, arrivals


def test_django_csrf(django):
    s = requests.Session()
    # A protected view refuses a POST without the token (the exempt ones are /json, /upload).
    r = s.post(django.url + "/protected", data={"v": "1"}, timeout=10)
    assert r.status_code == 403
    token = s.get(django.url + "/csrf", timeout=10).text
    assert "csrftoken" in s.cookies
    r = s.post(django.url + "/protected", data={"v": "2"}, headers={"X-CSRFToken": token},
               timeout=10)
    assert r.status_code == 200 and r.text == "accepted 2"
    r = s.post(django.url + "/protected", data={"v": "3", "csrfmiddlewaretoken": token},
               timeout=10)
    assert r.status_code == 200 and r.text == "accepted 3"
    r = s.post(django.url + "/protected", data={"v": "4"}, headers={"X-CSRFToken": "x" * 64},
               timeout=10)
    assert r.status_code == 403


def test_django_host_scheme_and_absolute_uri(django):
    r = requests.get(django.url + "/meta?a=%C3%A9", headers={"X-Custom-Thing": "yes"}, timeout=10)
    m = r.json()
    assert m["host"] == "127.0.0.1:%d" % django.port
    assert m["port"] == str(django.port)
    assert (m["scheme"], m["secure"]) == ("http", False)
    assert m["absolute"] == django.url + "/x/y?z=1"
    assert m["full_path"] == "/meta?a=%C3%A9"
    assert m["custom"] == "yes"
    assert m["remote_addr"] == "127.0.0.1"
    # Behind a trusted proxy: HTTPS and the client's address come from X-Forwarded-*.
    r = requests.get(django.url + "/meta", timeout=10,
                     headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    m = r.json()
    assert (m["scheme"], m["secure"]) == ("https", True)
    assert m["absolute"] == "https://127.0.0.1:%d/x/y?z=1" % django.port
    assert m["remote_addr"] == "203.0.113.9"
    # A Host outside ALLOWED_HOSTS: Django's 400, not a 500.
    r = requests.get(django.url + "/meta", headers={"Host": "evil.example"}, timeout=10)
    assert r.status_code == 400


def test_django_upload_spooled_to_a_temp_file(django):
    data = os.urandom(200_000)
    r = requests.post(django.url + "/upload", files={"file": ("b.bin", data)}, timeout=10)
    body = r.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["spooled"] is True     # past FILE_UPLOAD_MAX_MEMORY_SIZE: a file in $TMPDIR
    # Django removes its temporary file when the request is finished, which may be a moment
    # after the client has the whole response.
    assert wait_for(lambda: os.listdir(django.tmpdir) == [n for n in os.listdir(django.tmpdir)
                                                         if n.startswith("ferry.")], 10), \
        os.listdir(django.tmpdir)


def test_rails_params_parsing(rails):
    q = "a[b]=1&a[c][]=2&a[c][]=3&s=%C3%A9+x"
    r = requests.get(rails.url + "/params?" + q, timeout=10)
    assert r.status_code == 200
    assert r.json()["params"] == {"a": {"b": "1", "c": ["2", "3"]}, "s": "é x"}
    r = requests.post(rails.url + "/params?q=1", data={"f[x]": "y", "g": "h"}, timeout=10)
    body = r.json()
    assert body["body"] == {"f": {"x": "y"}, "g": "h"}
    assert body["query"] == {"q": "1"}
    assert body["params"] == {"f": {"x": "y"}, "g": "h", "q": "1"}
    r = requests.put(rails.url + "/params", json={"n": {"deep": [1, {"k": None}]}}, timeout=10)
    body = r.json()
    assert body["content_type"] == "application/json"
    assert body["params"] == {"n": {"deep": [1, {"k": None}]}}


def test_rails_remote_ip(rails):
    m = requests.get(rails.url + "/meta", headers={"X-Custom-Thing": "yes"}, timeout=10).json()
    assert m["remote_ip"] == "127.0.0.1"
    assert m["base_url"] == rails.url
    assert m["original_url"] == rails.url + "/meta"
    assert (m["host"], m["port"], m["ssl"]) == ("127.0.0.1", rails.port, False)
    assert m["custom"] == "yes"
    # ferry trusts 127.0.0.1 here: REMOTE_ADDR becomes the rightmost X-Forwarded-For entry,
    # and Rails (which trusts no public address) reports that one too.
    m = requests.get(rails.url + "/meta", timeout=10,
                     headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7",
                              "X-Forwarded-Proto": "https"}).json()
    assert m["remote_addr"] == "203.0.113.7"
    assert m["remote_ip"] == "203.0.113.7"
    assert m["ssl"] is True
    assert m["base_url"] == "https://127.0.0.1:%d" % rails.port


def test_rails_send_data(rails):
    r = requests.get(rails.url + "/download", timeout=10)
    assert r.status_code == 200
    expected = bytes(range(256)) * 1024
    assert len(r.content) == len(expected)
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"].startswith('attachment; filename="bytes.bin"')
    assert r.headers["Content-Transfer-Encoding"] == "binary"


def test_rails_production_error_pages(rails):
    r = requests.get(rails.url + "/boom", timeout=10)
    assert r.status_code == 500
    assert "kaboom" not in r.text and "config.ru" not in r.text
    r = requests.get(rails.url + "/no/such/route", timeout=10)
    assert r.status_code == 404
    # The exception and its backtrace are in the log (the app's stdout, captured by ferry).
    assert wait_for_log(rails, "RuntimeError (kaboom from rails)")
    assert requests.get(rails.url + "/", timeout=10).text == "hello from rails"


def test_rails_csrf(rails):
    s = requests.Session()
    r = s.post(rails.url + "/protected", data={"v": "1"}, timeout=10)
    assert r.status_code == 422     # ActionController::InvalidAuthenticityToken
    token = s.get(rails.url + "/csrf", timeout=10).text
    r = s.post(rails.url + "/protected", data={"v": "2", "authenticity_token": token},
               timeout=10)
    assert r.status_code == 200 and r.text == "accepted 2"
    r = s.post(rails.url + "/protected", data={"v": "3"}, headers={"X-CSRF-Token": token},
               timeout=10)
    assert r.status_code == 200 and r.text == "accepted 3"


def wait_for_log(f, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in f.log():
            return True
        time.sleep(0.05)
    return text in f.log()


def test_django_file_response_through_wsgi_file_wrapper(django):
    """FileResponse goes through wsgi.file_wrapper; the loader must call the wrapper's close(),
    which closes the file and sends Django's request_finished (counted by /finished)."""
    before = int(requests.get(django.url + "/finished", timeout=10).text)
    r = requests.get(django.url + "/download", timeout=10)
    assert r.status_code == 200
    with open(os.path.join(APPS["django"], "ferrysite", "views.py"), "rb") as f:
        expected = f.read()
    assert r.content == expected
    assert r.headers["Content-Length"] == str(len(expected))
    assert r.headers["Content-Disposition"] == 'attachment; filename="views.py"'
    after = int(requests.get(django.url + "/finished", timeout=10).text)
    assert after == before + 2      # the first /finished and /download both ended
