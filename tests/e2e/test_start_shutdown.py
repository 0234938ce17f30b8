"""Graceful shutdown and slow clients: SIGTERM under load lets requests in flight finish, refuses
new connections, stops the workers and exits 0; a slow uploader never holds the only worker."""

import signal
import socket
import threading
import time

import requests


def test_sigterm_under_load_finishes_in_flight_requests(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"), "--max-pool-size", "2", "--min-instances", "2")
    assert requests.get(f.url + "/hello", timeout=20).status_code == 200
    results = []
    lock = threading.Lock()

    def slow():
        try:
            r = requests.get(f.url + "/slow?ms=1500", timeout=20)
            out = (r.status_code, r.text)
        except requests.RequestException as e:
            out = ("error", str(e))
        with lock:
            results.append(out)

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    f.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = False
    try:
        socket.create_connection(("127.0.0.1", f.port), timeout=2).close()
    except ConnectionRefusedError:
        refused = True
    for t in threads:
        t.join()
    assert refused
    assert f.stop(timeout=20) == 0
    assert sorted(results) == [(200, "slept 1500\n")] * 4
    assert "stopped" in f.log()


def test_sigint_stops_an_idle_server_with_exit_0(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"))
    assert requests.get(f.url + "/hello", timeout=20).status_code == 200
    assert f.stop(signal.SIGINT) == 0


def test_shutdown_timeout_cuts_long_requests(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"), "--shutdown-timeout", "1")
    assert requests.get(f.url + "/hello", timeout=20).status_code == 200
    errors = []

    def long():
        try:
            requests.get(f.url + "/slow?ms=8000", timeout=20)
        except requests.RequestException as e:
            errors.append(e)

    t = threading.Thread(target=long)
    t.start()
    time.sleep(0.4)
    t0 = time.monotonic()
    assert f.stop(timeout=15) == 0
    assert time.monotonic() - t0 < 7
    t.join()
    assert errors


def test_slow_uploader_does_not_hold_the_only_worker(ferry, conformance_app):
    f = ferry(conformance_app("wsgi"), "--max-pool-size", "1")
    assert requests.get(f.url + "/hello", timeout=20).status_code == 200
    s = socket.create_connection(("127.0.0.1", f.port), timeout=10)
    try:
        s.sendall(b"POST /sha256 HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n"
                  b"Connection: close\r\n\r\nabc")
        time.sleep(0.3)
        t0 = time.monotonic()
        r = requests.get(f.url + "/hello", timeout=10)
        assert r.status_code == 200
        assert time.monotonic() - t0 < 2
        s.sendall(b"defghij")
        out = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            out += b
        assert out.startswith(b"HTTP/1.1 200")
        assert out.endswith(b"10 72399361da6a7754fec986dca5b7cbaf1c810a28ded4abaf56b2106d06cb78b0\n")
    finally:
        s.close()
