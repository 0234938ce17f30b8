"""The front's memory stays bounded when many clients are refused at once: an error page is
written from the connection's own buffer, with a small write request, not a 64 KiB data buffer
per client (a thousand clients refused together used to grow the core by tens of MiB)."""
import os
import signal
import socket
import threading
import time

import pytest
import requests

RAW_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "wsgi", "http_raw")
CLIENTS = 800


def peak_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def refuse_many(pid, port):
    socks = []
    for _ in range(CLIENTS):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(s)
    # All requests arrive while the core is stopped, so one loop turn refuses them all and
    # every refusal's write is in flight at the same time.
    os.kill(pid, signal.SIGSTOP)
    try:
        for s in socks:
            s.sendall(b"GET /count HTTP/1.1\r\nHost: a\r\n\r\n")
    finally:
        os.kill(pid, signal.SIGCONT)
    statuses = []
    for s in socks:
        statuses.append(s.recv(64).split(b" ")[1])
        s.close()
    return statuses


def test_many_clients_refused_at_once_keep_the_core_small(ferry):
    # No dispatch-ahead: every request past the one queue place must be refused (with it, a
    # busy v2 worker could take a couple more).
    f = ferry(RAW_APP, "--max-pool-size", "1", "--max-request-queue-size", "1",
              "--dispatch-ahead", "0")
    with open("/proc/%d/maps" % f.pid) as maps:
        if "libasan" in maps.read():
            pytest.skip("peak RSS means nothing under ASan (quarantine and redzones)")
    assert requests.get(f.url + "/count", timeout=20).status_code == 200
    # the worker busy for a while, the one queue place taken: every other request is a 503
    waiting = [threading.Thread(target=lambda: requests.get(f.url + path, timeout=30))
               for path in ("/slow?ms=5000", "/count")]
    for t in waiting:
        t.start()
        time.sleep(0.3)
    before = peak_rss_kib(f.pid)
    rounds = [refuse_many(f.pid, f.port) for _ in range(3)]
    after = peak_rss_kib(f.pid)
    for t in waiting:
        t.join()
    assert all(st.count(b"503") >= CLIENTS - 2 for st in rounds), [set(r) for r in rounds]
    # the peak: 800 data buffers in flight would be 50 MiB; the write requests are a few hundred
    # bytes each
    assert after - before < 6 * 1024, (before, after)


IDLE_CONNS = 2000


def rss_kib(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def open_keep_alive(port, n):
    """<n> connections that each made one request (answered, one at a time: no queueing) and
    stay open, idle."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        data = b""
        while not data.endswith(b"hello world\n"):
            chunk = s.recv(4096)
            assert chunk, "the server closed a keep-alive connection: %r" % data[:200]
            data += chunk
        socks.append(s)
    return socks


def test_the_memory_of_idle_connections_comes_back_when_they_close(ferry, conformance_app):
    """Assumes one core process (the pid `ferry start` runs as) and a client allowed 2 000+ open
    files (raised to the hard limit here). After 2 000 idle keep-alive connections close, the
    core's RSS is back within 10 % (plus 512 KiB for what it keeps for good, such as libuv's fd
    table) of what it was before them: freed connections do not pin their heap pages."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE_CONNS + 200
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, want))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    f = ferry(conformance_app("c"), "--max-pool-size", "1")
    with open("/proc/%d/maps" % f.pid) as maps:
        if "libasan" in maps.read():
            pytest.skip("RSS means nothing under ASan (quarantine and redzones)")
    try:
        for s in open_keep_alive(f.port, 50):   # warm: the first requests' one-time growth
            s.close()
        assert requests.get(f.url + "/hello", timeout=20).text == "hello world\n"
        base = rss_kib(f.pid)
        socks = open_keep_alive(f.port, IDLE_CONNS)
        grown = rss_kib(f.pid)
        for s in socks:
            s.close()
        limit = base * 1.10 + 512
        back = wait_for_value(lambda: rss_kib(f.pid), lambda v: v <= limit, timeout=15)
        assert back <= limit, "core RSS %d KiB before, %d KiB with %d idle connections, %d KiB " \
            "after they closed (limit %d)" % (base, grown, IDLE_CONNS, back, limit)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def wait_for_value(read, ok, timeout):
    deadline = time.monotonic() + timeout
    v = read()
    while not ok(v) and time.monotonic() < deadline:
        time.sleep(0.05)
        v = read()
    return v
