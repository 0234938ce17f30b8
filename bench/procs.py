"""Process-tree bookkeeping for the bench: start a server in its own session, find every process
it made (even the ones that daemonize and leave the session), sample their RSS, stop them all by
pid, and check that nothing is left listening. Linux /proc only.

A server is started with BENCH_RUN_TOKEN=<random> in its environment; a process belongs to the
server when it carries that token in /proc/PID/environ, or its parent belongs to it.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port():
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_ports():
    """The set of TCP ports in LISTEN state on any IPv4/IPv6 address."""
    ports = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A":
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def _read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def _ppid_start(pid):
    """(ppid, starttime) of <pid> from /proc/PID/stat, or None when it is gone."""
    text = _read("/proc/%d/stat" % pid)
    if not text:
        return None
    rest = text.rsplit(")", 1)[1].split()
    # rest[0] is the state, rest[1] ppid, rest[19] starttime (field 22).
    return int(rest[1]), int(rest[19])


def _pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def rss_bytes(pid):
    """Resident set size of <pid> in bytes (/proc/PID/statm), 0 when it is gone."""
    text = _read("/proc/%d/statm" % pid)
    if not text:
        return 0
    return int(text.split()[1]) * PAGE


def smaps_rollup_kib(pid):
    """{field: KiB} from /proc/PID/smaps_rollup (Rss, Pss, Shared_Clean, Private_Dirty, ...),
    {} when it is gone or unreadable."""
    text = _read("/proc/%d/smaps_rollup" % pid)
    out = {}
    for line in (text or "").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            out[parts[0][:-1]] = int(parts[1])
    return out


def pss_kib(pid):
    """Proportional set size of <pid> in KiB (shared pages divided among their sharers), 0 when
    it is gone."""
    return smaps_rollup_kib(pid).get("Pss", 0)


def uss_kib(pid):
    """Unique set size of <pid> in KiB: Private_Clean + Private_Dirty, 0 when it is gone."""
    m = smaps_rollup_kib(pid)
    return m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)


def cmdline(pid):
    """The argv of <pid> joined by spaces (a process that renamed itself, e.g. "Passenger
    RubyApp: /app", shows that name), "" when it is gone."""
    raw = _read("/proc/%d/cmdline" % pid, "rb")
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip() if raw else ""


class Server:
    """One server under test: its argv, environment and cwd, started in a new session."""

    def __init__(self, argv, env=None, cwd=None, log_path=None):
        self.argv = argv
        self.env = dict(env if env is not None else os.environ)
        self.cwd = cwd
        self.log_path = log_path
        self.token = secrets.token_hex(12)
        self.env["BENCH_RUN_TOKEN"] = self.token
        self.proc = None
        self.known = {}  # pid -> (starttime, belongs: bool)
        self._lock = threading.Lock()
        self._log = None

    def start(self):
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        with self._lock:
            self.known[self.proc.pid] = (None, True)
        return self.proc.pid

    def _belongs_fresh(self, pid, ppid):
        env = _read("/proc/%d/environ" % pid, "rb")
        if env and ("BENCH_RUN_TOKEN=" + self.token).encode() in env.split(b"\0"):
            return True
        parent = self.known.get(ppid)
        return bool(parent and parent[1])

    def tree(self):
        """The pids that belong to this server now (see the module comment)."""
        alive = []
        with self._lock:
            seen = set()
            # Sorted, so a parent is classified before the children it forked.
            for pid in sorted(_pids()):
                info = _ppid_start(pid)
                if info is None:
                    continue
                ppid, start = info
                seen.add(pid)
                k = self.known.get(pid)
                if k is None or (k[0] is not None and k[0] != start):
                    k = (start, self._belongs_fresh(pid, ppid))
                    self.known[pid] = k
                elif k[0] is None:
                    k = (start, k[1])
                    self.known[pid] = k
                if k[1]:
                    alive.append(pid)
            for pid in [p for p in self.known if p not in seen]:
                del self.known[pid]
        return alive

    def tree_rss(self):
        """Sum of the RSS of every process of the tree, in bytes."""
        return sum(rss_bytes(p) for p in self.tree())

    def root_rss(self):
        """RSS of the process the bench launched, in bytes."""
        return rss_bytes(self.proc.pid) if self.proc else 0

    def stop(self, grace_s=5.0):
        """Stops everything: SIGTERM to the session's process group, then SIGTERM to any stray
        process of the tree (daemonized ones), wait up to <grace_s>, then SIGKILL whatever is
        left. Returns the list of pids that needed SIGKILL."""
        if self.proc is None:
            return []
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        for pid in self.tree():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            self.proc.poll()
            if self.proc.returncode is not None and not self.tree():
                break
            time.sleep(0.05)
        killed = []
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in self.tree():
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        end = time.monotonic() + 3
        while self.tree() and time.monotonic() < end:
            time.sleep(0.05)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        return killed


class RssSampler:
    """Samples the tree RSS of <server> every <interval_s> in a thread; peak() is the largest sum
    seen since the last reset()."""

    def __init__(self, server, interval_s=0.1):
        self.server = server
        self.interval_s = interval_s
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                v = self.server.tree_rss()
            except Exception:  # a process vanished between listdir and read
                v = 0
            if v > self._peak:
                self._peak = v
            self._stop.wait(self.interval_s)

    def start(self):
        self._thread.start()
        return self

    def reset(self):
        self._peak = 0

    def peak(self):
        return self._peak

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)


def status_document(stdout):
    """The status document in the output of `ferry status --json` (bytes), or None."""
    for line in stdout.decode("utf-8", "replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "workers" in doc:
            return doc
    return None


def http_get(port, path="/hello", timeout=1.0, want_close=False):
    """One GET with `Connection: close`. Returns (status, head, body), reading the body by its
    Content-Length (or to EOF without one). With <want_close>, also waits up to <timeout> for
    the server to close the connection and returns (status, head, body, closed: bool).
    Raises OSError (socket.timeout included) when no complete response arrives in time."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                  % path.encode())
        data = bytearray()
        head = None
        length = None
        closed = False
        while True:
            if head is None and b"\r\n\r\n" in data:
                head, _, rest = bytes(data).partition(b"\r\n\r\n")
                data = bytearray(rest)
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length" and value.strip().isdigit():
                        length = int(value.strip())
            if head is not None and length is not None and len(data) >= length:
                break
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
        if head is None:
            head, data = bytes(data), bytearray()
        if want_close and not closed:
            try:
                closed = s.recv(1) == b""
            except socket.timeout:
                closed = False
    line = head.split(b"\r\n", 1)[0].split()
    if len(line) < 2 or not line[1].isdigit():
        raise OSError("no HTTP status line in %r" % head[:80])
    if want_close:
        return int(line[1]), head, bytes(data), closed
    return int(line[1]), head, bytes(data)


def wait_first_200(port, timeout_s, proc, path="/hello"):
    """Polls GET <path> every 10 ms until a 200. Returns seconds since now, or raises
    RuntimeError with the reason (timeout, or the process exited with code N)."""
    t0 = time.monotonic()
    last = "no answer"
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError("exited with code %d before answering" % proc.returncode)
        try:
            status, _, _ = http_get(port, path, timeout=1.0)
            if status == 200:
                return time.monotonic() - t0
            last = "HTTP %d" % status
        except OSError as e:
            last = str(e) or type(e).__name__
        time.sleep(0.01)
    raise RuntimeError("no 200 within %.0f s (last: %s)" % (timeout_s, last))


def open_idle_keep_alive(port, n, path="/hello", timeout=10.0):
    """<n> connections to 127.0.0.1:<port>, each of which sent one GET <path> (answered, one at
    a time, so no server queues them) and stays open and idle. Raises OSError when one fails or
    closes. The caller closes the sockets; it must allow itself n + some open files."""
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            socks.append(s)
            s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path.encode())
            data = b""
            length = None
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("the server closed a keep-alive connection")
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep and length is None:
                    for line in head.split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            length = int(v.strip())
                    if length is None:
                        raise OSError("a response without Content-Length")
                if sep and len(body) >= length:
                    break
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks
