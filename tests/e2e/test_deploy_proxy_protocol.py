"""Behind an L4 load balancer (docs/deploying.md, "Behind a load balancer"): HAProxy itself
(Debian's haproxy, started by the test on loopback, mode tcp) in front of ferry with
--proxy-protocol, with `send-proxy` (v1) and `send-proxy-v2`: the app's REMOTE_ADDR and
REMOTE_PORT are the real client's (a client bound to 127.0.0.5); a balancer that is not in
--trusted-proxy is refused; a trusted peer without a header is refused; an untrusted client
without one is served as usual. One worker (--max-pool-size 1)."""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import app, free_port, wait_for

REMOTE = app("tests", "e2e", "apps", "deploy", "remote")
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
ONE = ("--max-pool-size", "1", "--min-instances", "1")


@pytest.fixture
def haproxy(tmp_path):
    """haproxy(ferry_port) -> {"v1": port, "v2": port}: HAProxy frontends that forward to ferry
    with send-proxy and send-proxy-v2. Stopped (by pid) after the test."""
    started = []

    def start(ferry_port):
        ports = {"v1": free_port(), "v2": free_port()}
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(
            "global\n  maxconn 100\n"
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n"
            "  timeout server 30s\n"
            "frontend v1\n  bind 127.0.0.1:%d\n  default_backend ferry_v1\n"
            "frontend v2\n  bind 127.0.0.1:%d\n  default_backend ferry_v2\n"
            "backend ferry_v1\n  server f 127.0.0.1:%d send-proxy\n"
            "backend ferry_v2\n  server f 127.0.0.1:%d send-proxy-v2\n"
            % (ports["v1"], ports["v2"], ferry_port, ferry_port))
        log = open(tmp_path / "haproxy.log", "wb")
        proc = subprocess.Popen([HAPROXY, "-f", str(cfg), "-db"], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        started.append(proc)

        def listening():
            for p in ports.values():
                try:
                    socket.create_connection(("127.0.0.1", p), timeout=1).close()
                except OSError:
                    return False
            return True
        assert wait_for(listening, 10), (tmp_path / "haproxy.log").read_text()
        return ports

    yield start
    for proc in started:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(port, source="127.0.0.5"):
    """GET / from <source>; returns (status line, body, the client's own port)."""
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    mine = s.getsockname()[1]
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except ConnectionResetError:
        pass
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body.decode(), mine


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_remote_addr_is_the_real_client_behind_haproxy(ferry, haproxy, version):
    f = ferry(REMOTE, "--proxy-protocol", "true", "--trusted-proxy", "127.0.0.1", *ONE)
    ports = haproxy(f.port)
    status, body, mine = get(ports[version])
    assert status == "HTTP/1.1 200 OK", (status, body, f.log())
    assert body == "127.0.0.5 %d" % mine


def test_an_untrusted_balancer_is_refused(ferry, haproxy):
    f = ferry(REMOTE, "--proxy-protocol", "true", "--trusted-proxy", "10.9.9.9", *ONE)
    ports = haproxy(f.port)
    for version in ("v1", "v2"):
        status, body, _ = get(ports[version])
        assert status == "" and body == "", "closed without an answer"
    # (HAProxy's readiness probes and its retries are refused the same way: at least 2)
    assert wait_for(lambda: f.log().count("refused: a PROXY header from a peer that is not in "
                                          "--trusted-proxy") >= 2, 10), f.log()
    # A client that sends no header is an ordinary client, with its own address.
    status, body, mine = get(f.port)
    assert status == "HTTP/1.1 200 OK" and body == "127.0.0.5 %d" % mine


def test_a_trusted_peer_without_a_header_is_refused(ferry):
    f = ferry(REMOTE, "--proxy-protocol", "true", "--trusted-proxy", "127.0.0.5", *ONE)
    status, body, _ = get(f.port)
    assert status == "" and body == ""
    assert wait_for(lambda: "refused: bad PROXY header: no PROXY protocol signature" in f.log(),
                    10), f.log()


def test_headers_split_across_reads_and_keep_alive(ferry):
    f = ferry(REMOTE, "--proxy-protocol", "true", "--trusted-proxy", "127.0.0.1", *ONE)
    s = socket.create_connection(("127.0.0.1", f.port), timeout=10)
    for piece in (b"PROXY TCP4 203.0", b".113.9 127.0.0.1 4444 ", b"80\r\nGET / HTTP/1.1\r\n",
                  b"Host: x\r\n\r\n"):
        s.sendall(piece)
        time.sleep(0.05)
    first = s.recv(65536)
    assert first.startswith(b"HTTP/1.1 200") and first.endswith(b"203.0.113.9 4444"), first
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    second = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        second += b
    s.close()
    assert second.endswith(b"203.0.113.9 4444"), "one header per connection"
