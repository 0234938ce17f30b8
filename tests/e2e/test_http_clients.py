"""Clients that go away or half-close: the front reads the client while its request is queued or
served. A client that closes (or resets) while its request waits in the queue has the request
cancelled (it never takes a worker), unless its FIN came with the request (a half-close); a client that resets while a worker serves it has the worker finish and
then serve others (never two requests at once); a client that half-closes after its requests
(shutdown(SHUT_WR), as `nc -q` does) still gets every response; pipelined requests past the
read buffer are all answered in order."""

import os
import socket
import struct
import threading
import time

import pytest
import requests

from httpraw import Conn

from conftest import wait_for

RAW_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "wsgi", "http_raw")


def start_raw(ferry, *args):
    f = ferry(RAW_APP, "--max-pool-size", "1", *args)
    assert requests.get(f.url + "/count", timeout=20).text == "1"   # the worker is up
    return f


def get_async(url, results, key):
    def run():
        try:
            results[key] = requests.get(url, timeout=20)
        except requests.RequestException as exc:
            results[key] = exc
    t = threading.Thread(target=run)
    t.start()
    return t


def reset_close(sock):
    """Closes <sock> with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def send_and_half_close(sock, data):
    """Sends <data> and the FIN in one segment (TCP_CORK holds the data until the shutdown), as a
    client that half-closes right after its request does."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_gone_while_queued_never_takes_a_worker(ferry, tmp_path, how):
    log = tmp_path / "access.log"
    f = start_raw(ferry, "--access-log", str(log))
    results = {}
    busy = get_async(f.url + "/slow?ms=1500", results, "busy")   # request 2 of the worker
    time.sleep(0.3)
    gone = socket.create_connection(("127.0.0.1", f.port), timeout=5)
    gone.sendall(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n")   # queued behind "busy"
    time.sleep(0.3)
    if how == "reset":
        reset_close(gone)
    else:
        gone.close()
    assert wait_for(lambda: "queued" in f.log()), f.log()
    t0 = time.monotonic()
    r = requests.get(f.url + "/count", timeout=20)
    waited = time.monotonic() - t0
    busy.join()
    assert results["busy"].status_code == 200
    # served right after "busy", not after the cancelled request too, and the worker never saw it
    assert r.text == "3"
    assert waited < 2.0, waited
    assert f.stop() == 0
    lines = log.read_text().splitlines()
    assert any('"GET /slow?ms=1500 HTTP/1.1" 499 ' in line for line in lines), lines


def test_client_reset_while_served_lets_the_worker_finish_first(ferry):
    f = start_raw(ferry)
    c = socket.create_connection(("127.0.0.1", f.port), timeout=5)
    c.sendall(b"GET /slow?ms=1000 HTTP/1.1\r\nHost: a\r\n\r\n")   # request 2
    time.sleep(0.3)
    t0 = time.monotonic()
    reset_close(c)
    r = requests.get(f.url + "/count", timeout=20)
    waited = time.monotonic() - t0
    # the worker was busy with /slow until it finished: the next request waited for it
    assert r.text == "3"
    assert waited >= 0.5, waited
    assert "client went away while its request was served" in f.log()


def test_client_gone_in_the_middle_of_a_large_response(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"), "--max-pool-size", "1")
    assert requests.get(f.url + "/hello", timeout=20).status_code == 200
    c = socket.create_connection(("127.0.0.1", f.port), timeout=5)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.sendall(b"GET /stream?mib=20 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.recv(4096).startswith(b"HTTP/1.1 200")
    time.sleep(0.3)   # the front stops reading the worker: the client's queue is full
    reset_close(c)
    r = requests.get(f.url + "/hello", timeout=20)
    assert (r.status_code, r.text) == (200, "hello world\n")


@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
def test_half_closed_client_gets_its_response(ferry, conformance_app, version):
    f = ferry(conformance_app("wsgi"))
    assert requests.get(f.url + "/hello", timeout=20).status_code == 200
    with Conn(f.port) as c:
        host = b"Host: a\r\n" if version == b"1.1" else b""
        send_and_half_close(c.sock, b"GET /hello HTTP/" + version + b"\r\n" + host + b"\r\n")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"hello world\n")
        assert c.closed_by_server()


def test_half_closed_client_queued_behind_a_busy_worker_gets_its_response(ferry):
    f = start_raw(ferry)
    results = {}
    busy = get_async(f.url + "/slow?ms=800", results, "busy")   # request 2
    time.sleep(0.3)
    with Conn(f.port) as c:
        # the request and the FIN together: a half-close, not a client that gave up
        send_and_half_close(c.sock, b"GET /count HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"3")
        assert c.closed_by_server()
    busy.join()
    assert results["busy"].status_code == 200


def test_half_closed_client_gets_every_pipelined_response(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"))
    assert requests.get(f.url + "/hello", timeout=20).status_code == 200
    with Conn(f.port) as c:
        send_and_half_close(c.sock, b"GET /slow?ms=300 HTTP/1.1\r\nHost: a\r\n\r\n"
                            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                            b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.read_response().body == b"slept 300\n"
        assert c.read_response().body == b"abc"
        assert c.read_response().body == b"hello world\n"
        assert c.closed_by_server()


def test_half_close_inside_a_request_closes_without_a_response(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"))
    with Conn(f.port) as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed_by_server()
    r = requests.get(f.url + "/hello", timeout=20)
    assert r.status_code == 200


def test_pipelined_requests_past_the_read_buffer_are_answered_in_order(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"))
    assert requests.get(f.url + "/hello", timeout=20).status_code == 200
    n = 600
    pad = b"X-Pad: " + b"p" * 200 + b"\r\n"   # ~250 bytes a request: ~150 KB in all
    data = b"".join(b"GET /env?i=%d HTTP/1.1\r\nHost: a\r\n" % i + pad + b"\r\n" for i in range(n))
    with Conn(f.port, timeout=30) as c:
        sender = threading.Thread(target=c.send, args=(data,))
        sender.start()
        for i in range(n):
            r = c.read_response()
            assert r.status == 200
            assert b"QUERY_STRING=i=%d\n" % i in r.body
        sender.join()


def test_graceful_stop_waits_for_a_worker_whose_client_went_away(ferry):
    f = start_raw(ferry)
    c = socket.create_connection(("127.0.0.1", f.port), timeout=5)
    c.sendall(b"GET /slow?ms=1000 HTTP/1.1\r\nHost: a\r\n\r\n")
    time.sleep(0.3)
    reset_close(c)
    assert wait_for(lambda: "was served" in f.log())
    t0 = time.monotonic()
    assert f.stop() == 0
    assert time.monotonic() - t0 >= 0.4   # the worker finished its request first
    assert "shutdown timeout passed" not in f.log()


def test_max_request_time_still_applies_after_the_client_went_away(ferry):
    f = start_raw(ferry, "--max-request-time", "1")
    c = socket.create_connection(("127.0.0.1", f.port), timeout=5)
    c.sendall(b"GET /slow?ms=8000 HTTP/1.1\r\nHost: a\r\n\r\n")
    time.sleep(0.3)
    reset_close(c)
    t0 = time.monotonic()
    r = requests.get(f.url + "/count", timeout=20)
    # the stuck worker was replaced after the max request time: a new one answered, early
    assert (r.status_code, r.text) == (200, "1")
    assert time.monotonic() - t0 < 6
    assert "max request time passed while the worker finished" in f.log()
