"""The conformance harness: plays the owner of one worker, byte for byte as docs/protocol.md says.

It creates the owner pipe and a socketpair control channel, starts
`ferry worker APP --type T` with them on fds 3 and 4, reads the `ready` (or `error`) array
message itself and learns from it which session protocols the worker speaks (four items: v1;
a fifth item "2": v1 and v2, docs/protocol.md §4.1). It then speaks either protocol to the
worker's socket: v1 sends a request block and body on a connection of its own and reads the head
and body until the worker closes (§2, §3); v2 opens one connection, sends HELLO and then frames
(§4), with its own small frame encoder and decoder written from the spec. Nothing here imports
ferry code: a third-party loader is judged on the wire alone, and the codec here is an
independent reading of docs/protocol.md.
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
from collections import namedtuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FERRY_BIN = os.environ.get("FERRY_BIN", os.path.join(REPO, "build", "ferry"))
BUILD_DIR = os.environ.get("FERRY_BUILD_DIR", os.path.dirname(os.path.abspath(FERRY_BIN)))
LOADERS = ("c", "rack", "wsgi")
REQBLOCK_MAX = 131072
BOOT_TIMEOUT = 30.0

# Session protocol v2, docs/protocol.md §4.2: the 12-byte frame header, the types, END's flags
# and each type's payload limit.
FRAME_HEADER = struct.Struct(">IBBHI")  # LEN, TYPE, FLAGS, RESERVED, ID
HELLO, REQ, BODY, EOB, ABORT = 0x00, 0x01, 0x02, 0x03, 0x04
HEAD, DATA, END = 0x81, 0x82, 0x83
END_APP_FAILED, END_CLOSING = 0x01, 0x02
FRAME_LIMITS = {HELLO: 256, REQ: 131072, BODY: 1048576, EOB: 0, ABORT: 0,
                HEAD: 131072, DATA: 1048576, END: 0}
FRAME_NAMES = {HELLO: "HELLO", REQ: "REQ", BODY: "BODY", EOB: "EOB", ABORT: "ABORT",
               HEAD: "HEAD", DATA: "DATA", END: "END"}
TO_WORKER = (HELLO, REQ, BODY, EOB, ABORT)
TO_CORE = (HEAD, DATA, END)
# No HELLO within this many seconds gets the connection closed (§4.1).
HELLO_TIMEOUT = 5.0


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


def encode_pairs(pairs):
    """The pairs of a request block, name NUL value NUL ..., without the size prefix: the
    payload of a v2 REQ frame (docs/protocol.md §4.2)."""
    return b"".join(to_bytes(k) + b"\0" + to_bytes(v) + b"\0" for k, v in pairs)


def encode_block(pairs):
    """The v1 request block wire form: u32 BE H, then name NUL value NUL ... (§2)."""
    raw = encode_pairs(pairs)
    return struct.pack(">I", len(raw)) + raw


def to_bytes(v):
    return v if isinstance(v, (bytes, bytearray)) else str(v).encode("latin-1")


# -- session protocol v2 frames (docs/protocol.md §4.2) --------------------------------------

Frame = namedtuple("Frame", "type flags id payload")


class FrameError(AssertionError):
    """The worker broke docs/protocol.md §4.2-§4.4; the message says what it sent."""


def encode_frame(ftype, fid, payload=b"", flags=0, reserved=0, length=None):
    """One frame: the 12-byte header, then <payload>. Nothing is checked, so that tests can
    build the faults of §4.4; <length> overrides LEN (a header announcing more than follows)."""
    payload = to_bytes(payload)
    n = len(payload) if length is None else length
    return FRAME_HEADER.pack(n, ftype, flags, reserved, fid) + payload


def frame_name(ftype):
    return FRAME_NAMES.get(ftype, "type 0x%02x" % ftype)


def check_worker_header(length, ftype, flags, reserved):
    """What a core checks in the 12 header bytes of a worker's frame, before it reads the
    payload (§4.2, §4.4): a worker → core type, RESERVED 0, no flags but END's two, LEN within
    the type's limit. Raises FrameError."""
    if ftype not in TO_CORE:
        raise FrameError("worker sent %s, which %s" % (
            frame_name(ftype), "travels core → worker" if ftype in TO_WORKER else "is unknown"))
    if reserved:
        raise FrameError("worker sent %s with RESERVED 0x%04x" % (frame_name(ftype), reserved))
    allowed = END_APP_FAILED | END_CLOSING if ftype == END else 0
    if flags & ~allowed:
        raise FrameError("worker sent %s with flags 0x%02x" % (frame_name(ftype), flags))
    if length > FRAME_LIMITS[ftype]:
        raise FrameError("worker sent %s with LEN %d, over its limit %d" % (
            frame_name(ftype), length, FRAME_LIMITS[ftype]))


def split_sizes(total, split):
    """The payload sizes of the BODY frames that carry <total> body bytes: <split> is None (1 MiB
    frames, the largest allowed), an int (frames of that size, the last one shorter) or a list
    of sizes that add up to <total>."""
    if split is None:
        split = FRAME_LIMITS[BODY]
    if isinstance(split, int):
        assert split > 0
        return [min(split, total - off) for off in range(0, total, split)]
    sizes = list(split)
    assert sum(sizes) == total, "BODY frame sizes add up to %d, not %d" % (sum(sizes), total)
    return sizes


class Response:
    def __init__(self, status, reason, headers, body, first_line, end_flags=None, frames=None):
        self.status = status  # None over v2 when END came without HEAD
        self.reason = reason
        self.headers = headers  # list of (name, value), in order, repeats kept
        self.body = body
        self.first_line = first_line
        self.end_flags = end_flags  # v2: the flags of END; None over v1
        self.frames = frames or []  # v2: (name, payload length) of each frame, in order

    @property
    def app_failed(self):
        return bool(self.end_flags and self.end_flags & END_APP_FAILED)

    @property
    def closing(self):
        return bool(self.end_flags and self.end_flags & END_CLOSING)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


def parse_head(head):
    lines = bytes(head).decode("latin-1").split("\r\n")
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


def read_v1_response(s, sink=None):
    """Reads a v1 response (§3) from <s> until the worker closes it."""
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


class Worker:
    """One `ferry worker` process and the owner side of its handshake.

    <protocol> is what the ready message offered (1, or 2 for a fifth item "2"); <wire> is what
    request(), get() and begin() speak: 1 (a connection per request) unless a test sets 2 (one
    session, opened at the first request and kept)."""

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
        self.ready = None
        self.protocol = None
        self.wire = 1
        self.error = None
        self.sessions = []
        self.request_session = None
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
        # The loaders under test run in Debian's interpreters (the ones the extensions are built
        # for), whatever python3 comes first on PATH (docs/configuration.md, "Interpreters").
        env.setdefault("FERRY_PYTHON", "/usr/bin/python3")
        env.setdefault("FERRY_RUBY", "/usr/bin/ruby")
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
            # docs/protocol.md §5 step 4 and §4.1: four items, or a fifth "2" from a worker that
            # also speaks v2; items after the fifth are for later versions and ignored.
            assert len(msg) >= 4, msg
            if len(msg) == 4:
                self.protocol = 1
            elif msg[4] == "2":
                self.protocol = 2
            else:
                raise HandshakeError("ready offers session protocol %r; docs/protocol.md §4.1 "
                                     "knows only \"2\"" % msg[4])
            self.ready = msg
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
        for s in self.sessions:
            s.close()
        self.sessions = []
        self.request_session = None

    def socket_file(self):
        if self.address and self.address.startswith("unix:"):
            return self.address[len("unix:"):]
        return None

    # -- connections -----------------------------------------------------------------------
    def open_socket(self, timeout=10):
        """A new stream connection to the worker's address."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            if self.address.startswith("abstract:"):
                s.connect("\0" + self.address[len("abstract:"):])
            elif self.address.startswith("unix:"):
                s.connect(self.address[len("unix:"):])
            else:
                raise AssertionError("bad address %r" % self.address)
        except BaseException:
            s.close()
            raise
        return s

    def connect(self, timeout=10):
        """A v1 connection. The session that request() keeps over v2 is closed first: the worker
        serves one connection at a time (docs/protocol.md §4.1), so a v1 connection would wait
        behind it."""
        self.drop_request_session()
        return self.open_socket(timeout)

    def session(self, hello=True, secret=None, timeout=10):
        """A new v2 session (docs/protocol.md §4); sends HELLO with <secret> (default: the
        worker's) unless <hello> is false. Closed by cleanup() at the latest."""
        s = Session(self, timeout)
        self.sessions.append(s)
        if hello:
            s.hello(secret)
        return s

    def drop_request_session(self):
        if self.request_session is not None:
            self.request_session.close()
            self.request_session = None

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
        """v1: sends raw bytes, shuts down the write side, returns everything the worker sent."""
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

    # -- requests over the worker's wire ---------------------------------------------------
    def request(self, method, target, headers=(), body=None, timeout=30, sink=None,
                complete=True):
        """Sends one request over <wire>; returns a Response. With <sink>, body bytes are handed
        to sink(chunk) as they arrive instead of being kept (bounded memory for big responses).
        Over v2 a response must end with an END without APP_FAILED unless <complete> is false;
        after an END with CLOSING the session is dropped (the worker exits)."""
        if self.wire == 2:
            return self.begin(method, target, headers, body, timeout).finish(
                timeout, sink, complete)
        block = encode_block(self.pairs(method, target, headers,
                                        None if body is None else len(body)))
        s = self.connect(timeout)
        try:
            s.sendall(block)
            if body:
                view = memoryview(body)
                for i in range(0, len(body), 1 << 20):
                    s.sendall(view[i:i + (1 << 20)])
            s.shutdown(socket.SHUT_WR)
            return read_v1_response(s, sink)
        finally:
            s.close()

    def get(self, target, **kw):
        return self.request("GET", target, **kw)

    def begin(self, method, target, headers=(), body=None, timeout=30):
        """Sends one request over <wire> without waiting for the answer: the returned Pending's
        finish() reads it; its close() gives up on it."""
        if self.wire == 2:
            if self.request_session is None:
                self.request_session = self.session(timeout=timeout)
            s = self.request_session
            return Pending(self, session=s, fid=s.send_request(method, target, headers, body))
        block = encode_block(self.pairs(method, target, headers,
                                        None if body is None else len(body)))
        s = self.connect(timeout)
        try:
            s.sendall(block + (body or b""))
            s.shutdown(socket.SHUT_WR)
        except BaseException:
            s.close()
            raise
        return Pending(self, sock=s)


class Pending:
    """A request sent and not read yet (Worker.begin): over v1 its own connection, over v2 an id
    on the worker's request session."""

    def __init__(self, worker, sock=None, session=None, fid=None):
        self.worker = worker
        self.sock = sock
        self.session = session
        self.fid = fid

    def finish(self, timeout=30, sink=None, complete=True):
        if self.sock is not None:
            try:
                self.sock.settimeout(timeout)
                return read_v1_response(self.sock, sink)
            finally:
                self.close()
        r = self.session.read_response(self.fid, timeout, sink)
        if complete and r.app_failed:
            raise FrameError("END(%d) says APP_FAILED for a complete response" % self.fid)
        if r.closing and self.worker.request_session is self.session:
            self.worker.drop_request_session()
        return r

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Session:
    """The core's side of one v2 session connection (docs/protocol.md §4). Worker.session()
    opens one. Frames are read exactly (a 12-byte header, then its payload) and checked as a
    core checks them: the header before the payload (§4.2), the order of one response and its
    id (§4.3, §4.4)."""

    def __init__(self, worker, timeout=10):
        self.worker = worker
        self.sock = worker.open_socket(timeout)
        self.next_id = 1
        self.received = 0  # bytes the worker sent on this connection, in all

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- writing ---------------------------------------------------------------------------
    def send(self, data, tolerate_close=False):
        """Writes raw bytes. With <tolerate_close>, a worker that has already closed the
        connection (EPIPE, ECONNRESET) is no error: negative tests expect it to."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            if not tolerate_close:
                raise

    def send_frame(self, ftype, fid, payload=b"", flags=0):
        self.send(encode_frame(ftype, fid, payload, flags))

    def hello(self, secret=None):
        self.send_frame(HELLO, 0, self.worker.secret if secret is None else secret)

    def take_id(self):
        """The next request id: 1, 2, ...; 1 again after 0xffffffff (§4.3)."""
        fid = self.next_id
        self.next_id = fid % 0xffffffff + 1
        return fid

    def request_frames(self, fid, pairs, body=None, split=None, eob=True):
        """The bytes of one request: REQ(fid), BODY frames carrying <body> in the sizes of
        split_sizes(), then EOB unless <eob> is false."""
        out = [encode_frame(REQ, fid, encode_pairs(pairs))]
        if body:
            view = memoryview(body)
            off = 0
            for n in split_sizes(len(body), split):
                out.append(encode_frame(BODY, fid, view[off:off + n].tobytes()))
                off += n
        if eob:
            out.append(encode_frame(EOB, fid))
        return b"".join(out)

    def send_request(self, method, target, headers=(), body=None, split=None, eob=True,
                     fid=None):
        """Sends REQ, BODY* and EOB for one request (CONTENT_LENGTH = len(<body>) when there is
        one) and returns its id, the next one unless <fid> is given."""
        if fid is None:
            fid = self.take_id()
        pairs = self.worker.pairs(method, target, headers, None if body is None else len(body))
        self.send(self.request_frames(fid, pairs, body, split, eob))
        return fid

    def abort(self, fid):
        self.send_frame(ABORT, fid)

    # -- reading ---------------------------------------------------------------------------
    def recv_exact(self, n, deadline):
        """<n> bytes, or None when the connection ends before the first of them. Raises
        FrameError when it ends after some, TimeoutError at <deadline>."""
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("worker sent %d of %d bytes before the deadline" % (got, n))
            self.sock.settimeout(left)
            try:
                k = self.sock.recv_into(view[got:])
            except socket.timeout:
                continue
            except ConnectionResetError:
                k = 0
            if k == 0:
                if got == 0:
                    return None
                raise FrameError("connection ended inside a frame (%d of %d bytes)" % (got, n))
            got += k
            self.received += k
        return buf

    def read_frame(self, timeout=30, deadline=None):
        """The next frame, or None when the connection ends at a frame boundary."""
        if deadline is None:
            deadline = time.monotonic() + timeout
        header = self.recv_exact(FRAME_HEADER.size, deadline)
        if header is None:
            return None
        length, ftype, flags, reserved, fid = FRAME_HEADER.unpack(header)
        check_worker_header(length, ftype, flags, reserved)
        payload = b""
        if length:
            payload = self.recv_exact(length, deadline)
            if payload is None:
                raise FrameError("connection ended after the header of %s(%d)"
                                 % (frame_name(ftype), fid))
        return Frame(ftype, flags, fid, payload)

    def read_response(self, fid, timeout=30, sink=None):
        """Reads HEAD(fid), DATA(fid)* and END(fid). Any other id, a second HEAD, DATA before
        HEAD or the connection ending first is a FrameError (§4.4). An END without HEAD gives a
        Response whose status is None."""
        deadline = time.monotonic() + timeout
        head = None
        kept = []
        frames = []
        while True:
            f = self.read_frame(deadline=deadline)
            if f is None:
                raise FrameError("connection ended before END(%d); frames of it: %r"
                                 % (fid, frames))
            frames.append((frame_name(f.type), len(f.payload)))
            if f.id != fid:
                raise FrameError("%s(%d) came while request %d has no END; before it: %r"
                                 % (frame_name(f.type), f.id, fid, frames[:-1]))
            if f.type == HEAD:
                if head is not None:
                    raise FrameError("second HEAD(%d)" % fid)
                head = bytes(f.payload)
            elif f.type == DATA:
                if head is None:
                    raise FrameError("DATA(%d) before HEAD" % fid)
                if sink is None:
                    kept.append(f.payload)
                else:
                    sink(f.payload)
            else:
                break
        if head is None:
            return Response(None, None, [], b"", None, f.flags, frames)
        # §4.2: the payload is the head of §3, its empty line included, and nothing after it.
        if not head.endswith(b"\r\n\r\n") or head.find(b"\r\n\r\n") != len(head) - 4:
            raise FrameError("HEAD(%d) is not one head ending in its empty line: %r"
                             % (fid, head[:300]))
        status, reason, hdrs, first = parse_head(head[:-4])
        return Response(status, reason, hdrs, b"".join(kept), first, f.flags, frames)

    def request(self, method, target, headers=(), body=None, split=None, timeout=30,
                sink=None):
        fid = self.send_request(method, target, headers, body, split)
        return self.read_response(fid, timeout, sink)

    def get(self, target, **kw):
        return self.request("GET", target, **kw)

    def expect_closed(self, timeout):
        """Waits until the worker closes the connection and fails if it sends any byte first (a
        refusal has no reply, §4.1, §4.4). Returns the seconds the close took."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        data = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection still open after %.1f s (worker sent %r)"
                                     % (timeout, data[:200]))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            data += chunk
        self.received += len(data)
        assert data == b"", "worker wrote %d bytes before closing: %r" % (len(data), data[:200])
        return time.monotonic() - t0

    def quiet_for(self, seconds):
        """True when the worker sends nothing and keeps the connection open for <seconds>."""
        ready, _, _ = select.select([self.sock], [], [], seconds)
        return not ready


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


__all__ = ["Worker", "Session", "Pending", "Response", "Frame", "FrameError", "app_dir",
           "LOADERS", "REQBLOCK_MAX", "encode_block", "encode_pairs", "encode_frame",
           "split_sizes", "proc_status", "cpu_ticks", "zombie_children", "stream_pattern_digest",
           "signal", "FERRY_BIN", "HELLO", "REQ", "BODY", "EOB", "ABORT", "HEAD", "DATA", "END",
           "END_APP_FAILED", "END_CLOSING", "FRAME_LIMITS", "HELLO_TIMEOUT"]
