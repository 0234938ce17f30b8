"""Test driver for the WSGI loader on the C runtime (loaders/python/wsgi_loader.py + the _ferry
extension of src/ext/python/): starts the loader the way `ferry worker` does (fd 3 = owner pipe
read end, fd 4 = control channel, FERRY_* environment, FERRY_EXT_DIR = the build's src/ext),
reads the spawn handshake and sends requests over session protocol v1 (docs/protocol.md §2, §3)
or v2 (§4, framed with the extension's own codec, _ferry.encode_frame / decode_frame).

The build is FERRY_BUILD_DIR, else the directory of FERRY_BIN, else <repo>/build."""

import importlib.machinery
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
BUILD_DIR = os.environ.get("FERRY_BUILD_DIR") or (
    os.path.dirname(os.path.abspath(os.environ["FERRY_BIN"])) if os.environ.get("FERRY_BIN")
    else os.path.join(REPO, "build"))
EXT_DIR = os.path.join(BUILD_DIR, "src", "ext")

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

_ext = []


def import_ferry_ext():
    """The _ferry module of the build, imported into the test process (for its codec; nothing
    here boots a worker)."""
    if not _ext:
        spec = importlib.machinery.PathFinder.find_spec("_ferry",
                                                        [os.path.join(EXT_DIR, "python")])
        assert spec is not None, "no _ferry extension in %s/python: build first" % EXT_DIR
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _ext.append(module)
    return _ext[0]


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


def block_payload(pairs):
    """The request block (name NUL value NUL ...) from (name, value) str/bytes pairs."""
    out = b""
    for name, value in pairs:
        name = name.encode("latin-1") if isinstance(name, str) else name
        value = value.encode("latin-1") if isinstance(value, str) else value
        out += name + b"\0" + value + b"\0"
    return out


def encode_block(pairs):
    """The v1 request block with its u32 BE size prefix."""
    payload = block_payload(pairs)
    return struct.pack(">I", len(payload)) + payload


def parse_response(data):
    """Splits a raw response into (status line, [(name, value)], body)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, "no end of head in %r" % data[:200]
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
    return lines[0], headers, body


def request_pairs(method, path, query="", body=b"", headers=()):
    pairs = [("REQUEST_METHOD", method), ("REQUEST_URI", path + ("?" + query if query else "")),
             ("PATH_INFO", path), ("QUERY_STRING", query), ("SCRIPT_NAME", ""),
             ("SERVER_NAME", "localhost"), ("SERVER_PORT", "3000"),
             ("SERVER_PROTOCOL", "HTTP/1.1"), ("REMOTE_ADDR", "127.0.0.1"),
             ("REMOTE_PORT", "50000")]
    if body:
        pairs.append(("CONTENT_LENGTH", str(len(body))))
    pairs.extend(headers)
    return pairs


class Session:
    """One v2 session (docs/protocol.md §4): HELLO, then requests one after another."""

    def __init__(self, loader, timeout=15.0):
        self.ext = import_ferry_ext()
        self.sock = loader.connect(timeout)
        self.sock.sendall(self.ext.encode_frame(self.ext.FRAME_HELLO, 0, 0,
                                                loader.secret.encode()))
        self.secret = loader.secret
        self.next_id = 1
        self.buf = b""

    def frame(self):
        """The next frame from the worker: (type, flags, id, payload), or None at EOF."""
        while True:
            got = self.ext.decode_frame(self.buf, self.ext.TO_CORE)
            if got is not None:
                ftype, flags, fid, payload, used = got
                self.buf = self.buf[used:]
                return ftype, flags, fid, payload
            piece = self.sock.recv(1 << 20)
            if not piece:
                return None
            self.buf += piece

    def request(self, method, path, query="", body=b"", headers=()):
        """Returns (status line, headers, body, END flags)."""
        ext = self.ext
        rid = self.next_id
        self.next_id += 1
        out = ext.encode_frame(ext.FRAME_REQ, 0, rid,
                               block_payload(request_pairs(method, path, query, body, headers)
                                             + [("FERRY_CONNECT_PASSWORD", self.secret)]))
        for at in range(0, len(body), 1 << 20):
            out += ext.encode_frame(ext.FRAME_BODY, 0, rid, body[at:at + (1 << 20)])
        self.sock.sendall(out + ext.encode_frame(ext.FRAME_EOB, 0, rid))
        head, data = None, []
        while True:
            f = self.frame()
            assert f is not None, "the worker closed the session inside request %d" % rid
            ftype, flags, fid, payload = f
            assert fid == rid, (fid, rid)
            if ftype == ext.FRAME_HEAD:
                head = payload
            elif ftype == ext.FRAME_DATA:
                data.append(payload)
            else:
                assert ftype == ext.FRAME_END, ftype
                status, headers_, _ = parse_response(head)
                return status, headers_, b"".join(data), flags

    def close(self):
        self.sock.close()


class Loader:
    """One loader process. Use as a context manager; stop() reaps it."""

    def __init__(self, app_dir, env=None, stderr_path=None):
        self.app_dir = app_dir
        owner_r, self.owner_w = os.pipe()
        self.control, control_child = socket.socketpair()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        environ.update({"FERRY_APP_ROOT": app_dir, "FERRY_APP_TYPE": "wsgi",
                        "FERRY_ENV": "production", "FERRY_OWNER_FD": "3",
                        "FERRY_CONTROL_FD": "4", "FERRY_EXT_DIR": EXT_DIR})
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
        self.ready = None

    def handshake(self):
        """Reads the first control message and returns it (["ready", ...] or ["error", ...])."""
        msg = read_array_message(self.control)
        if msg and msg[0] == "ready":
            self.ready = msg
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
        """Sends one v1 request; returns (status line, headers, body)."""
        pairs = request_pairs(method, path, query, body, headers)
        if password:
            pairs.append(("FERRY_CONNECT_PASSWORD", self.secret))
        pairs.extend(extra)
        return parse_response(self.raw(encode_block(pairs) + body))

    def session(self):
        return Session(self)

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


def proc_status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for %d" % (field, pid))


def cpu_ticks(pid):
    """utime + stime of <pid> in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
