"""Each limit of the HTTP front answers with its status, and the server serves the next request
afterwards: 408 (head and body timeouts), 413, 414, 431, 502 (a dying worker), 503 (queue full,
app cannot boot), 504 (max request time)."""

import os
import threading
import time

import requests


def status_of(out):
    assert out.startswith(b"HTTP/1.1 "), out[:200]
    return int(out[9:12])


def still_serves(f):
    r = requests.get(f.url + "/hello", timeout=20)
    assert (r.status_code, r.text) == (200, "hello world\n")


def test_408_when_the_head_is_too_slow(ferry, conformance_app, raw_request):
    f = ferry(conformance_app("wsgi"), "--header-timeout", "1")
    t0 = time.monotonic()
    out = raw_request(f.port, b"GET /hello HTTP/1.1\r\nHost: a\r\n", timeout=5)
    assert status_of(out) == 408
    assert time.monotonic() - t0 < 3.5
    still_serves(f)


def test_408_when_the_body_is_too_slow(ferry, conformance_app, raw_request):
    f = ferry(conformance_app("wsgi"), "--body-timeout", "1")
    out = raw_request(f.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
                      timeout=5)
    assert status_of(out) == 408
    still_serves(f)


def test_413_for_a_declared_length_over_the_limit(ferry, conformance_app, raw_request):
    f = ferry(conformance_app("wsgi"), "--max-body-size", "1k")
    out = raw_request(f.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2048\r\n\r\n"
                      + b"x" * 2048)
    assert status_of(out) == 413
    r = requests.post(f.url + "/echo", data=b"y" * 1024, timeout=10)
    assert (r.status_code, len(r.content)) == (200, 1024)


def test_413_for_a_chunked_body_over_the_limit(ferry, conformance_app, raw_request):
    f = ferry(conformance_app("wsgi"), "--max-body-size", "1k")
    chunk = b"x" * 800
    out = raw_request(f.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"320\r\n" + chunk + b"\r\n" + b"320\r\n" + chunk + b"\r\n0\r\n\r\n")
    assert status_of(out) == 413
    still_serves(f)


def test_414_for_a_long_target(ferry, conformance_app, raw_request):
    f = ferry(conformance_app("wsgi"), "--max-uri-length", "100")
    out = raw_request(f.port, b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status_of(out) == 414
    still_serves(f)


def test_431_for_large_headers(ferry, conformance_app, raw_request):
    f = ferry(conformance_app("wsgi"), "--max-header-size", "1k")
    out = raw_request(f.port, b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 2000
                      + b"\r\n\r\n")
    assert status_of(out) == 431
    still_serves(f)


def test_431_for_too_many_headers(ferry, conformance_app, raw_request):
    f = ferry(conformance_app("wsgi"), "--max-header-count", "10")
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(20))
    out = raw_request(f.port, b"GET /hello HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n")
    assert status_of(out) == 431
    still_serves(f)


def test_502_when_the_worker_dies_before_its_head(ferry, repo):
    f = ferry(os.path.join(repo, "tests", "e2e", "apps", "wsgi", "crash"))
    r = requests.get(f.url + "/before-head", timeout=20)
    assert r.status_code == 502
    r = requests.get(f.url + "/", timeout=20)
    assert (r.status_code, r.text) == (200, "ok\n")


def test_connection_closed_when_the_worker_dies_after_its_head(ferry, repo, raw_request):
    f = ferry(os.path.join(repo, "tests", "e2e", "apps", "wsgi", "crash"))
    # keep-alive request: only the close tells the client the body is cut short
    out = raw_request(f.port, b"GET /after-head HTTP/1.1\r\nHost: a\r\n\r\n", timeout=20)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 1000000" in head
    assert 0 < len(body) < 1000000
    r = requests.get(f.url + "/", timeout=20)
    assert (r.status_code, r.text) == (200, "ok\n")


def test_504_after_max_request_time(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"), "--max-request-time", "1")
    t0 = time.monotonic()
    r = requests.get(f.url + "/slow?ms=5000", timeout=20)
    assert r.status_code == 504
    assert time.monotonic() - t0 < 4
    still_serves(f)


def test_503_when_the_queue_is_full(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"), "--max-pool-size", "1", "--max-request-queue-size", "1")
    still_serves(f)   # the one worker is up
    results = []

    def slow():
        results.append(requests.get(f.url + "/slow?ms=1500", timeout=20).status_code)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.3)
    r = requests.get(f.url + "/hello", timeout=20)
    for t in threads:
        t.join()
    assert r.status_code == 503
    assert sorted(results) == [200, 200]
    still_serves(f)


def test_503_boot_error_page_in_development_shows_the_error(ferry, repo):
    f = ferry(os.path.join(repo, "tests", "conformance", "apps", "wsgi", "syntax_error"),
              "--environment", "development")
    r = requests.get(f.url + "/", timeout=30)
    assert r.status_code == 503
    assert "could not be started" in r.text
    assert "error id" in r.text.lower()
    assert "<pre>" in r.text or "Error" in r.text


def test_503_boot_error_page_in_production_is_generic(ferry, repo):
    f = ferry(os.path.join(repo, "tests", "conformance", "apps", "wsgi", "syntax_error"))
    r = requests.get(f.url + "/", timeout=30)
    assert r.status_code == 503
    assert "Error id:" in r.text
    assert "<pre>" not in r.text
    error_id = r.text.split("Error id: ")[1].split(".")[0]
    assert error_id in f.log()
