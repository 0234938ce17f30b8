"""Test driver for loaders/python/wsgi_loader.py: starts the loader the way `ferry worker` does
(fd 3 = owner pipe read end, fd 4 = control channel, FERRY_* environment), reads the spawn
handshake and sends requests in the wire format of docs/protocol.md §2."""

import importlib.util
import os
import signal
import socket
import struct
import subprocess
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
LOADER = os.path.join(REPO, "loaders", "python", "wsgi_loader.py")
APPS = os.path.join(REPO, "tests", "conformance", "apps", "wsgi")
PYTHON = "/usr/bin/python3"

# Puts the control channel on fd 4 and the owner pipe on fd 3, then execs the loader.
_BOOTSTRAP = """
import os, sys
owner, control = int(sys.argv[1]), int(sys.argv[2])
os.dup2(owner, 3)
os.dup2(control, 4)
for fd in (owner, control):
    if fd not in (3, 4):
        os.close(fd)
os.execv(sys.argv[3], [sys.argv[3], sys.argv[4]])
"""


def load_module():
    """Imports the loader as a module (for in-process unit tests)."""
    spec = importlib.util.spec_from_file_location("wsgi_loader", LOADER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_array_message(sock, timeout=15.0):
    """Reads one array message from <sock>; returns the list of str items, or None at EOF."""
    sock.settimeout(timeout)
    header = _recv_exact(sock, 2)
    if header is None:
        return None
    (length,) = struct.unpack(">H", header)
    payload = _recv_exact(sock, length)
    assert payload is not None and payload.endswith(b"\0"), "truncated array message"
    return [item.decode("utf-8") for item in payload[:-1].split(b"\0")]


def _recv_exact(sock, size):
    data = b""
    while len(data) < size:
        piece = sock.recv(size - len(data))
        if not piece:
            return None if not data else data
        data += piece
    return data


def encode_block(pairs):
    """Request block with its u32 BE size prefix from (name, value) str/bytes pairs."""
    block = b""
    for name, value in pairs:
        name = name.encode("latin-1") if isinstance(name, str) else name
        value = value.encode("latin-1") if isinstance(value, str) else value
        block += name + b"\0" + value + b"\0"
    return struct.pack(">I", len(block)) + block


def parse_response(data):
    """Splits a raw response into (status line, [(name, value)], body)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, "no end of head in %r" % data[:200]
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
    return lines[0], headers, body


class Loader:
    """One loader process. Use as a context manager; stop() reaps it and checks it is gone."""

    def __init__(self, app_dir, env=None, stderr_path=None):
        self.app_dir = app_dir
        owner_r, self.owner_w = os.pipe()
        self.control, control_child = socket.socketpair()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        environ.update({"FERRY_APP_ROOT": app_dir, "FERRY_APP_TYPE": "wsgi",
                        "FERRY_ENV": "production", "FERRY_OWNER_FD": "3",
                        "FERRY_CONTROL_FD": "4"})
        environ.update(env or {})
        self.stderr_path = stderr_path
        self._stderr_file = open(stderr_path, "wb") if stderr_path else None
        self.proc = subprocess.Popen(
            [PYTHON, "-c", _BOOTSTRAP, str(owner_r), str(control_child.fileno()), PYTHON,
             LOADER],
            pass_fds=(owner_r, control_child.fileno()), env=environ,
            stdout=subprocess.DEVNULL, stderr=self._stderr_file or subprocess.DEVNULL)
        os.close(owner_r)
        control_child.close()
        self.pid = self.proc.pid
        self.address = None
        self.secret = None

    def handshake(self):
        """Reads the first control message and returns it (["ready", ...] or ["error", ...])."""
        msg = read_array_message(self.control)
        if msg and msg[0] == "ready":
            self.address, self.secret = msg[2], msg[3]
        return msg

    def sockaddr(self):
        kind, _, rest = self.address.partition(":")
        return "\0" + rest if kind == "abstract" else rest

    def connect(self, timeout=15.0):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.sockaddr())
        return sock

    def raw(self, data, shut=True, timeout=15.0):
        """Sends raw bytes, then returns everything until EOF (b"" when closed unanswered)."""
        with self.connect(timeout) as sock:
            sock.sendall(data)
            if shut:
                sock.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                try:
                    piece = sock.recv(1 << 20)
                except ConnectionResetError:
                    break
                if not piece:
                    break
                chunks.append(piece)
            return b"".join(chunks)

    def request(self, method, path, query="", body=b"", headers=(), password=True, extra=()):
        """Sends one request; returns (status line, headers, body)."""
        pairs = [("REQUEST_METHOD", method), ("REQUEST_URI", path + ("?" + query if query else "")),
                 ("PATH_INFO", path), ("QUERY_STRING", query), ("SCRIPT_NAME", ""),
                 ("SERVER_NAME", "localhost"), ("SERVER_PORT", "3000"),
                 ("SERVER_PROTOCOL", "HTTP/1.1"), ("REMOTE_ADDR", "127.0.0.1"),
                 ("REMOTE_PORT", "50000")]
        if body:
            pairs.append(("CONTENT_LENGTH", str(len(body))))
        pairs.extend(headers)
        if password:
            pairs.append(("FERRY_CONNECT_PASSWORD", self.secret))
        pairs.extend(extra)
        return parse_response(self.raw(encode_block(pairs) + body))

    def wait(self, timeout):
        """Waits for the process to exit; returns its exit code or None on timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def close_owner(self):
        if self.owner_w is not None:
            os.close(self.owner_w)
            self.owner_w = None

    def stop(self):
        self.close_owner()
        if self.wait(5) is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.control.close()
        if self._stderr_file:
            self._stderr_file.close()
            self._stderr_file = None

    def stderr(self):
        if self._stderr_file:
            self._stderr_file.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def wait_for(predicate, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)

