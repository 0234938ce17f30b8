"""bench/loadgen.c against tiny local HTTP servers: the counts are right, keep-alive is used when
the server allows it, a server that closes is reconnected to, and the time a reconnect costs is
inside the cycle timing but not inside the write -> last byte timing (docs/performance.md,
"Cycle time at c100"). Compiles loadgen with the bench's own build step (bench/run.py
build_loadgen)."""

import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench")
sys.path.insert(0, BENCH)

import benchlib  # noqa: E402
import run as bench_run  # noqa: E402

BODY = b"hello world\n"


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("loadgen"))
    path, reason = bench_run.build_loadgen(out)
    assert path, reason
    return path


class Server:
    """A threaded HTTP/1.1 server on 127.0.0.1 answering every GET with BODY.

    mode "close": `Connection: close` and close after each response;
    mode "keep": keep-alive, Content-Length;
    mode "chunked": keep-alive, chunked body (two chunks and a trailer);
    mode "to-close": no length, the body ends when the server closes;
    mode "silent-close": keep-alive implied (HTTP/1.1, nothing said) but after one response the
    server waits for the next request, holds it <delay> seconds and closes without answering;
    mode "rst": keep-alive implied, but the server resets the connection (SO_LINGER 0) right
    after each response.
    <accept_delay>: seconds slept before each accept()."""

    def __init__(self, mode, delay=0.0, accept_delay=0.0):
        self.mode = mode
        self.delay = delay
        self.accept_delay = accept_delay
        self.accepted = 0
        self.answered = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.threads = []
        self.t = threading.Thread(target=self._accept_loop, daemon=True)
        self.t.start()

    def _accept_loop(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            if self.accept_delay:
                time.sleep(self.accept_delay)
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _read_request(self, c, buf):
        while b"\r\n\r\n" not in buf:
            d = c.recv(4096)
            if not d:
                return None, buf
            buf += d
        head, rest = buf.split(b"\r\n\r\n", 1)
        return head, rest

    def _serve(self, c):
        c.settimeout(5)
        buf = b""
        served = 0
        try:
            while not self.stop.is_set():
                head, buf = self._read_request(c, buf)
                if head is None:
                    return
                if self.mode == "silent-close" and served == 1:
                    time.sleep(self.delay)
                    return
                if self.mode == "close":
                    resp = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                            % len(BODY)) + BODY
                elif self.mode == "chunked":
                    resp = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5\r\nhello\r\n7;x=y\r\n world\n\r\n0\r\nX-T: 1\r\n\r\n")
                elif self.mode == "to-close":
                    resp = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BODY
                else:
                    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
                c.sendall(resp)
                served += 1
                with self.lock:
                    self.answered += 1
                if self.mode in ("close", "to-close"):
                    return
                if self.mode == "rst":
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
        except OSError:
            return
        finally:
            c.close()

    def count_after(self, name, want, timeout=10.0):
        """The counter <name> once it reaches <want> (or after <timeout> s, whatever it is then):
        the server thread counts a response after its sendall returns, which can be after the
        client has read it and the load generator has exited."""
        deadline = time.monotonic() + timeout
        while getattr(self, name) < want and time.monotonic() < deadline:
            time.sleep(0.01)
        return getattr(self, name)

    def close(self):
        self.stop.set()
        self.sock.close()
        self.t.join(timeout=5)
        for t in self.threads:
            t.join(timeout=6)


def run_lg(loadgen, port, *args):
    p = subprocess.run([loadgen] + list(args) + ["127.0.0.1", str(port), "/hello"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return benchlib.parse_loadgen(p.stdout.decode())


@pytest.fixture
def server():
    made = []

    def make(*a, **kw):
        s = Server(*a, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def test_keep_alive_counts_and_reuses_connections(loadgen, server):
    s = server("keep")
    r = run_lg(loadgen, s.port, "-c", "4", "-t", "2", "-n", "400")
    assert r["requests"] == 400
    assert r["errors"] == 0 and r["non_2xx"] == 0
    assert r["connects"] == 4  # one per connection: keep-alive was used
    assert s.accepted == 4 and s.count_after("answered", 400) == 400
    assert 0 < r["cycle_ms"]["p50"] <= r["cycle_ms"]["p99"] <= r["cycle_ms"]["max"]
    assert r["write_ms"]["p50"] <= r["cycle_ms"]["p50"]


def test_close_server_reconnects_for_every_request(loadgen, server):
    s = server("close")
    r = run_lg(loadgen, s.port, "-c", "3", "-n", "150")
    assert r["requests"] == 150 and r["errors"] == 0
    # One connect per request: after the 150th claimed request no connection opens again.
    assert r["connects"] == 150
    assert s.count_after("answered", 150) == 150


@pytest.mark.parametrize("mode", ["chunked", "to-close"])
def test_body_framings(loadgen, server, mode):
    s = server(mode)
    r = run_lg(loadgen, s.port, "-c", "2", "-n", "60")
    assert r["requests"] == 60 and r["errors"] == 0
    assert r["connects"] == (2 if mode == "chunked" else 60)


def test_reset_after_each_response_is_a_reconnect_not_an_error(loadgen, server):
    """The reset comes unannounced: loadgen sees it before it writes (and reconnects) or its
    read fails on a socket that already carried a response (and it sends the request again on
    a new connection). Either way every request is answered and none is an error. (A write
    into the reset socket is EPIPE, sent with MSG_NOSIGNAL; the window for it is too small to
    hit on purpose here.)"""
    s = server("rst")
    r = run_lg(loadgen, s.port, "-c", "4", "-t", "2", "-n", "200")
    assert r["requests"] == 200 and r["errors"] == 0
    assert s.count_after("answered", 200) == 200
    assert r["connects"] >= 200


def test_duration_bound(loadgen, server):
    s = server("keep")
    t0 = time.monotonic()
    r = run_lg(loadgen, s.port, "-c", "2", "-d", "1")
    took = time.monotonic() - t0
    assert 0.9 <= took < 3.0
    assert r["requests"] > 50 and r["errors"] == 0
    assert abs(r["duration_s"] - 1.0) < 0.05
    assert r["rps"] == pytest.approx(r["requests"] / r["duration_s"], rel=0.01)


def test_reconnect_time_is_inside_cycle_not_write(loadgen, server):
    """Every second request on a connection is held 50 ms and the connection closed unanswered:
    loadgen resends it on a new connection. The 50 ms are in that request's cycle time (so the
    cycle p90 is >= 50 ms, and the cycle times add up to the run's duration, Little's law for
    one connection), but not in its write -> last byte time."""
    s = server("silent-close", delay=0.05)
    r = run_lg(loadgen, s.port, "-c", "1", "-n", "20")
    assert r["requests"] == 20 and r["errors"] == 0
    assert r["retries"] == 19  # every request but the first hit a closed connection once
    assert r["cycle_ms"]["p90"] >= 50.0
    assert r["write_ms"]["p90"] < 25.0
    # One connection, closed loop: the cycle times cover the whole run.
    total_cycle_s = r["cycle_ms"]["mean"] * r["requests"] / 1000.0
    assert total_cycle_s == pytest.approx(r["duration_s"], rel=0.1)
    total_write_s = r["write_ms"]["mean"] * r["requests"] / 1000.0
    assert total_write_s < 0.5 * r["duration_s"]


def test_accept_delay_is_in_cycle_time(loadgen, server):
    """A server that sleeps 20 ms before each accept() and closes every connection: one
    connection's requests are 20 ms apart, and the cycle time says so. (The kernel completes
    the handshake before accept(), so the request is written at once and waits in the socket:
    here wrk's write -> last byte timing sees the delay too; what it misses is a queue in
    connect() itself, when the listen backlog is full.)"""
    s = server("close", accept_delay=0.02)
    r = run_lg(loadgen, s.port, "-c", "1", "-n", "15")
    assert r["requests"] == 15 and r["errors"] == 0
    assert r["cycle_ms"]["p50"] >= 18.0
    total_cycle_s = r["cycle_ms"]["mean"] * r["requests"] / 1000.0
    assert total_cycle_s == pytest.approx(r["duration_s"], rel=0.1)


def test_refused_port_counts_connect_errors(loadgen):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connects are refused
        r = run_lg(loadgen, port, "-c", "2", "-d", "0.3")
    assert r["requests"] == 0
    assert r["error_kinds"]["connect"] >= 2


def test_parse_loadgen_rejects_garbage():
    with pytest.raises(ValueError):
        benchlib.parse_loadgen("not json\n")
    with pytest.raises(ValueError):
        benchlib.parse_loadgen('{"requests": 1}\n')


def test_cycle_verdicts_pick_the_best_peer_per_interface():
    rows = [
        {"name": "ferry-wsgi", "interface": "wsgi", "status": "ok", "cycle_p99_ms": 4.0,
         "cycle_p50_ms": 2.0, "rps": 40000.0},
        {"name": "uwsgi-python", "interface": "wsgi", "status": "ok", "cycle_p99_ms": 6.0,
         "cycle_p50_ms": 3.0, "rps": 30000.0},
        {"name": "gunicorn-sync", "interface": "wsgi", "status": "ok", "cycle_p99_ms": 9.0},
        {"name": "ferry-rack", "interface": "rack", "status": "ok", "cycle_p99_ms": 5.0},
        {"name": "unicorn", "interface": "rack", "status": "ok", "cycle_p99_ms": 4.5},
        {"name": "puma-2x1", "interface": "rack", "status": "skipped: puma not found"},
    ]
    w, r = benchlib.cycle_verdicts(rows)
    assert (w["best"], w["met"], w["p99_ratio"]) == ("uwsgi-python", True, pytest.approx(4 / 6))
    assert w["rps_ratio"] == pytest.approx(4 / 3)
    assert (r["best"], r["met"]) == ("unicorn", False)
    md = benchlib.cycle_report_md({"rows": rows, "conns": 100, "threads": 2, "duration": 5,
                                   "reps": 3})
    assert "**met**" in md and "**not met**" in md
    assert benchlib.cycle_verdicts(rows[3:4])[1]["met"] is None  # no peer ran


def test_cycle_paired_ratios_pair_repetitions():
    rows = [
        {"name": "ferry-wsgi", "interface": "wsgi", "status": "ok",
         "per_rep": [{"cycle_p99_ms": 8.0}, {"cycle_p99_ms": 16.0}, {"cycle_p99_ms": 11.0}]},
        {"name": "uwsgi-python", "interface": "wsgi", "status": "ok",
         "per_rep": [{"cycle_p99_ms": 7.0}, {"cycle_p99_ms": 24.0}, {"cycle_p99_ms": 12.0}]},
        {"name": "unicorn", "interface": "rack", "status": "ok",
         "per_rep": [{"cycle_p99_ms": 1.0}]},
    ]
    (p,) = benchlib.cycle_paired_ratios(rows)
    assert (p["ferry"], p["peer"], p["wins"]) == ("ferry-wsgi", "uwsgi-python", 2)
    assert p["ratios"] == pytest.approx([8 / 7, 16 / 24, 11 / 12])
    assert p["median"] == pytest.approx(11 / 12)
