"""systemd without systemd running, as systemd's own tests do it (docs/deploying.md, "systemd"):
a datagram socket in NOTIFY_SOCKET gets READY=1 once the listeners are open and min-instances
workers are ready, STATUS= lines, RELOADING=1 then READY=1 around a rolling restart (`ferry
restart` and SIGHUP), STOPPING=1 at shutdown; socket activation: listening sockets inherited as
fds 3.. with LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES, TCP and Unix, served, not unlinked, and
still accepting while ferry itself restarts. The variables never reach the workers."""
import fcntl
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import FERRY_BIN, START_TIMEOUT, app, wait_for

BASIC = app("tests", "e2e", "apps", "wsgi", "pool_basic")


class Notify:
    """The receiving end of NOTIFY_SOCKET: a datagram socket (a file, or @abstract)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.address = "@" + path[1:] if path.startswith("\0") else path
        self.messages = []

    def poll(self, timeout=0.05):
        self.sock.settimeout(timeout)
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
                self.sock.settimeout(0.001)
        except (socket.timeout, BlockingIOError):
            pass
        return self.messages

    def wait(self, line, after=0, timeout=20):
        """Waits for a message holding <line> (a whole line) at index >= <after>; returns its
        index."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, m in enumerate(self.poll()):
                if i >= after and line in m.split("\n"):
                    return i
        pytest.fail("no %r from ferry within %ss; got %r" % (line, timeout, self.messages))

    def close(self):
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify(request, tmp_path):
    path = str(tmp_path / "notify") if request.param == "path" else "\0fy-e2e-notify-%d" % os.getpid()
    n = Notify(path)
    yield n
    n.close()


def test_ready_status_reloading_stopping(ferry, notify, tmp_path):
    root = tmp_path / "slow"
    root.mkdir()
    (root / "wsgi.py").write_text(
        "import os, time\ntime.sleep(0.5)\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    seen = [k for k in ('NOTIFY_SOCKET', 'LISTEN_FDS', 'LISTEN_PID') if k in os.environ]\n"
        "    return [repr(seen).encode()]\n")
    f = ferry(str(root), "--min-instances", "2", "--max-pool-size", "2",
              "--health-path", "/healthz", env={"NOTIFY_SOCKET": notify.address})
    ready = notify.wait("READY=1")
    # READY=1 came once both workers were ready: the health path says so right away.
    r = requests.get(f.url + "/healthz", timeout=10)
    assert r.text == "ok: 2 workers ready\n", (r.text, notify.messages)
    assert not any("READY=1" in m for m in notify.messages[:ready])
    assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in notify.messages)
    assert "STATUS=serving %s: 2 workers ready (0 busy), 0 spawning, 0 queued" % f.url in \
        notify.messages[ready].split("\n"), notify.messages
    assert requests.get(f.url + "/", timeout=10).text == "[]", "the workers see no variable"

    restart = subprocess.run([FERRY_BIN, "restart", "--pid", str(f.pid)], capture_output=True,
                             text=True, timeout=60, env=dict(os.environ, TMPDIR=f.tmpdir))
    assert restart.returncode == 0, restart.stderr
    reloading = notify.wait("RELOADING=1", after=ready + 1)
    assert any(line.startswith("MONOTONIC_USEC=") for line in notify.messages[reloading].split("\n"))
    again = notify.wait("READY=1", after=reloading + 1)

    os.kill(f.pid, signal.SIGHUP)
    reloading = notify.wait("RELOADING=1", after=again + 1)
    notify.wait("READY=1", after=reloading + 1)
    assert wait_for(lambda: "signal=Hangup: rolling restart" in f.log(), 10), f.log()

    assert f.stop() == 0
    notify.wait("STOPPING=1")


def test_ready_with_an_app_that_cannot_boot_says_so(ferry, notify):
    boot_error = app("tests", "e2e", "apps", "wsgi", "pool_boot_error")
    ferry(boot_error, env={"NOTIFY_SOCKET": notify.address})
    i = notify.wait("READY=1")
    assert any(line.startswith("STATUS=the app cannot boot: ")
               for line in notify.messages[i].split("\n")), notify.messages


def test_a_bad_notify_socket_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env["NOTIFY_SOCKET"] = "relative/notify"
    r = subprocess.run([FERRY_BIN, "start", BASIC, "--port", "1"], capture_output=True,
                       text=True, timeout=10, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    assert "ferry start: NOTIFY_SOCKET=relative/notify: not an absolute path nor @name" in r.stderr


# --- socket activation ------------------------------------------------------------------------

def start_activated(tmp_path, fds, names=None, extra=(), env_extra=None, log_name="ferry.log"):
    """`ferry start BASIC` with <fds> as fds 3, 4, ... and LISTEN_PID set to its own pid (through
    `sh -c 'LISTEN_PID=$$ exec ...'`, as systemd sets it after the fork)."""
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp_path)
    env["PATH"] = "/usr/bin:/bin:" + env.get("PATH", "")
    env["LISTEN_FDS"] = str(len(fds))
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    env.update(env_extra or {})
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 20) for fd in fds]

    def onto_3():
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i)   # dup2 clears close-on-exec

    log = open(tmp_path / log_name, "wb")
    try:
        proc = subprocess.Popen(
            ["sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', "sh", FERRY_BIN, "start",
             BASIC, "--max-pool-size", "1", *extra],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            close_fds=False, preexec_fn=onto_3)
    finally:
        log.close()
        for fd in high:
            os.close(fd)
    return proc


def read_log(tmp_path, name="ferry.log"):
    return (tmp_path / name).read_text(errors="replace")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(15)


def unix_get(path, target="/"):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target.encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return data


def test_socket_activation_tcp_and_unix(tmp_path):
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(16)
    port = tcp.getsockname()[1]
    path = str(tmp_path / "activated.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(path)
    unix.listen(16)
    try:
        # --port names another port: systemd's sockets replace the configured listeners.
        proc = start_activated(tmp_path, [tcp.fileno(), unix.fileno()], "web:local",
                               extra=("--port", "1"))
        try:
            assert wait_for(lambda: " pid %d\n" % proc.pid in read_log(tmp_path)
                            or proc.poll() is not None, START_TIMEOUT), read_log(tmp_path)
            log = read_log(tmp_path)
            assert "serving %s (wsgi, " % BASIC in log and "on http://127.0.0.1:%d " % port in log
            assert "fd=3 name=web url=http://127.0.0.1:%d: serving on a socket from systemd" \
                % port in log, log
            assert "fd=4 name=local url=unix:%s: serving on a socket from systemd" % path in log
            assert requests.get("http://127.0.0.1:%d/" % port, timeout=20).text == "ok"
            assert unix_get(path).endswith(b"\r\n\r\nok")
        finally:
            assert stop(proc) == 0, read_log(tmp_path)
        assert os.path.exists(path), "the socket file is its creator's: ferry leaves it"
        # The port survives a restart of ferry itself: connections queue on the socket systemd
        # (here: the test) holds, and the next ferry serves them.
        early = socket.create_connection(("127.0.0.1", port), timeout=10)
        early.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        second = start_activated(tmp_path, [tcp.fileno()], log_name="second.log")
        try:
            data = b""
            early.settimeout(20)
            while True:
                b = early.recv(65536)
                if not b:
                    break
                data += b
            assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok"), data
        finally:
            early.close()
            assert stop(second) == 0, read_log(tmp_path, "second.log")
    finally:
        tcp.close()
        unix.close()
        os.unlink(path)


def test_socket_activation_for_another_process_is_ignored(tmp_path):
    """LISTEN_PID of another process: not ours; ferry listens where it is told."""
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    env = dict(os.environ, TMPDIR=str(tmp_path), LISTEN_PID="1", LISTEN_FDS="1",
               PATH="/usr/bin:/bin:" + os.environ.get("PATH", ""))
    log = open(tmp_path / "ferry.log", "wb")
    proc = subprocess.Popen([FERRY_BIN, "start", BASIC, "--port", str(free)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    try:
        assert wait_for(lambda: " pid %d\n" % proc.pid in read_log(tmp_path), START_TIMEOUT)
        assert requests.get("http://127.0.0.1:%d/" % free, timeout=20).text == "ok"
        assert "from systemd" not in read_log(tmp_path)
    finally:
        assert stop(proc) == 0


def test_an_inherited_fd_that_is_not_a_listening_socket_is_refused(tmp_path):
    a, b = socket.socketpair()
    try:
        proc = start_activated(tmp_path, [a.fileno()])
        assert proc.wait(15) == 1
        assert "ferry start: socket activation: fd 3: not a listening stream socket" in \
            read_log(tmp_path), read_log(tmp_path)
    finally:
        a.close()
        b.close()
