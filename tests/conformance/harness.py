"""The conformance harness: plays the owner of one worker, byte for byte as DESIGN.md §2 says.

It creates the owner pipe and a socketpair control channel, starts
`ferry worker APP --type T` with them on fds 3 and 4, reads the `ready` (or `error`) array
message itself, connects to the worker's socket, sends request blocks and bodies, and parses the
responses. Nothing here imports ferry code: a third-party loader is judged on the wire alone.
"""

import fcntl
import hashlib
import os
import select
import signal
import socket
import struct
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FERRY_BIN = os.environ.get("FERRY_BIN", os.path.join(REPO, "build", "ferry"))
BUILD_DIR = os.environ.get("FERRY_BUILD_DIR", os.path.dirname(os.path.abspath(FERRY_BIN)))
LOADERS = ("c", "rack", "wsgi")
REQBLOCK_MAX = 131072
BOOT_TIMEOUT = 30.0


def app_dir(loader, case="main"):
    """The directory of conformance app <case> for <loader> (C apps live in the build tree)."""
    if loader == "c":
        return os.path.join(BUILD_DIR, "tests", "conformance", "apps", "c", case)
    return os.path.join(REPO, "tests", "conformance", "apps", loader, case)


class HandshakeError(Exception):
    pass


def read_exact(sock, n, deadline):
    data = b""
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out reading the control channel")
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            continue
        chunk = sock.recv(n - len(data))
        if not chunk:
            if data:
                raise HandshakeError("control channel ended inside a message")
            return None
        data += chunk
    return data


def read_array(sock, timeout):
    """Reads one array message (u16 BE length, NUL-terminated items). None at end of channel."""
    deadline = time.monotonic() + timeout
    head = read_exact(sock, 2, deadline)
    if head is None:
        return None
    (length,) = struct.unpack(">H", head)
    payload = read_exact(sock, length, deadline) if length else b""
    if payload is None or not payload.endswith(b"\0"):
        raise HandshakeError("malformed array message: %r" % payload)
    return [item.decode("utf-8", "replace") for item in payload[:-1].split(b"\0")]


def encode_block(pairs):
    """The request block wire form: u32 BE H, then name NUL value NUL ..."""
    raw = b"".join(to_bytes(k) + b"\0" + to_bytes(v) + b"\0" for k, v in pairs)
    return struct.pack(">I", len(raw)) + raw


def to_bytes(v):
    return v if isinstance(v, bytes) else str(v).encode("latin-1")


class Response:
    def __init__(self, status, reason, headers, body, first_line):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value), in order, repeats kept
        self.body = body
        self.first_line = first_line

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0]
    if first.startswith("Status: "):
        rest = first[len("Status: "):]
    elif first.startswith("HTTP/1."):
        rest = first.split(" ", 1)[1]
    else:
        raise AssertionError("bad first line %r" % first)
    code, _, reason = rest.partition(" ")
    assert len(code) == 3 and code.isdigit(), first
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        assert sep and name and name.strip() == name, "bad header line %r" % line
        headers.append((name, value.strip()))
    return int(code), reason, headers, first


class Worker:
    """One `ferry worker` process and the owner side of its handshake."""

    def __init__(self, app, loader, tmpdir, fallback=False, env=None):
        self.app = app
        self.loader = loader
        self.tmpdir = str(tmpdir)
        self.fallback = fallback
        self.extra_env = env or {}
        self.proc = None
        self.owner_w = None
        self.control = None
        self.pid = None
        self.address = None
        self.secret = None
        self.error = None
        self.log_path = os.path.join(self.tmpdir, "worker-%d.log" % id(self))

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout=BOOT_TIMEOUT):
        """Spawns the worker and reads its first message. Returns "ready" or "error"."""
        owner_r, owner_w = os.pipe()
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        env.pop("FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS", None)
        env["TMPDIR"] = self.tmpdir
        env["FERRY_INSTANCE_DIR"] = self.tmpdir
        env["FERRY_ENV"] = "development"
        if self.fallback:
            env["FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS"] = "1"
        env.update(self.extra_env)
        child_fd = child_sock.fileno()

        def put_on_3_and_4():
            # Move both ends above 10 first (close-on-exec copies), so neither is clobbered when
            # it sits on 3 or 4; dup2 then gives 3 and 4 without FD_CLOEXEC. Every other fd of
            # the harness is non-inheritable (Python's default), so the worker gets 0-4 only.
            o = fcntl.fcntl(owner_r, fcntl.F_DUPFD_CLOEXEC, 10)
            c = fcntl.fcntl(child_fd, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(o, 3)
            os.dup2(c, 4)

        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [FERRY_BIN, "worker", self.app, "--type", self.loader],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                close_fds=False, preexec_fn=put_on_3_and_4, cwd=self.tmpdir)
        finally:
            log.close()
            os.close(owner_r)
            child_sock.close()
        self.owner_w = owner_w
        self.control = parent_sock
        msg = read_array(self.control, timeout)
        if msg is None:
            raise HandshakeError("worker closed the control channel without a message; log:\n"
                                 + self.log())
        if msg[0] == "ready":
            assert len(msg) == 4, msg
            self.pid = int(msg[1])
            self.address = msg[2]
            self.secret = msg[3]
            return "ready"
        if msg[0] == "error":
            assert len(msg) == 3, msg
            self.error = msg
            return "error"
        raise HandshakeError("unexpected first message %r" % msg)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait(self, timeout):
        """Waits for the process to end; returns its returncode or None on timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def close_owner(self):
        if self.owner_w is not None:
            os.close(self.owner_w)
            self.owner_w = None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        """Kills the process (by pid) if still running and closes every fd of the harness."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.close_owner()
        if self.control is not None:
            self.control.close()
            self.control = None

    def socket_file(self):
        if self.address and self.address.startswith("unix:"):
            return self.address[len("unix:"):]
        return None

    # -- requests --------------------------------------------------------------------------
    def connect(self, timeout=10):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        if self.address.startswith("abstract:"):
            s.connect("\0" + self.address[len("abstract:"):])
        elif self.address.startswith("unix:"):
            s.connect(self.address[len("unix:"):])
        else:
            s.close()
            raise AssertionError("bad address %r" % self.address)
        return s

    def pairs(self, method, target, headers=(), body_len=None, password=True):
        path, _, query = target.partition("?")
        pairs = [("REQUEST_METHOD", method), ("REQUEST_URI", target), ("PATH_INFO", path),
                 ("QUERY_STRING", query), ("SCRIPT_NAME", ""), ("SERVER_NAME", "localhost"),
                 ("SERVER_PORT", "80"), ("SERVER_PROTOCOL", "HTTP/1.1"),
                 ("REMOTE_ADDR", "127.0.0.1"), ("REMOTE_PORT", "40000")]
        for name, value in headers:
            if name.lower() == "content-type":
                pairs.append(("CONTENT_TYPE", value))
            else:
                pairs.append(("HTTP_" + name.upper().replace("-", "_"), value))
        if body_len is not None:
            pairs.append(("CONTENT_LENGTH", str(body_len)))
        if password:
            pairs.append(("FERRY_CONNECT_PASSWORD", self.secret))
        return pairs

    def send_raw(self, data, timeout=10):
        """Sends raw bytes, shuts down the write side, returns everything the worker sent."""
        s = self.connect(timeout)
        try:
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            s.close()

    def request(self, method, target, headers=(), body=None, timeout=30, sink=None):
        """Sends one request; returns a Response. With <sink>, body bytes are handed to
        sink(chunk) as they arrive instead of being kept (bounded memory for big responses)."""
        body_len = None
        if body is not None:
            body_len = len(body)
        block = encode_block(self.pairs(method, target, headers, body_len))
        s = self.connect(timeout)
        try:
            s.sendall(block)
            if body:
                view = memoryview(body)
                for i in range(0, len(body), 1 << 20):
                    s.sendall(view[i:i + (1 << 20)])
            s.shutdown(socket.SHUT_WR)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise AssertionError("connection closed before the end of the head: %r" % buf)
                buf += chunk
                assert len(buf) <= 131072 + 65536, "head too large"
            head, _, rest = buf.partition(b"\r\n\r\n")
            status, reason, hdrs, first = parse_head(head)
            kept = []
            if sink is None:
                kept.append(rest)
            elif rest:
                sink(rest)
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                if sink is None:
                    kept.append(chunk)
                else:
                    sink(chunk)
            return Response(status, reason, hdrs, b"".join(kept), first)
        finally:
            s.close()

    def get(self, target, **kw):
        return self.request("GET", target, **kw)


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split()[1:]
    return None


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


def zombie_children(pid):
    zombies = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except FileNotFoundError:
        return zombies
    for tid in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids = f.read().split()
        except FileNotFoundError:
            continue
        for kid in kids:
            try:
                with open("/proc/%s/stat" % kid) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                continue
            if state == "Z":
                zombies.append(int(kid))
    return zombies


def stream_pattern_digest(total):
    """sha256 of <total> bytes where byte i is i % 251, computed in bounded memory."""
    unit = bytes(range(251)) * 263  # 66013 bytes: a 64 KiB window from any phase p < 251 fits
    h = hashlib.sha256()
    off = 0
    while off < total:
        n = min(65536, total - off)
        p = off % 251
        h.update(unit[p:p + n])
        off += n
    return h.hexdigest()


__all__ = ["Worker", "app_dir", "LOADERS", "REQBLOCK_MAX", "encode_block", "proc_status",
           "cpu_ticks", "zombie_children", "stream_pattern_digest", "signal", "FERRY_BIN"]
