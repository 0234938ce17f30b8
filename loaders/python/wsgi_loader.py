#!/usr/bin/python3
"""ferry's WSGI loader: one worker process serving one WSGI application.

Started by `ferry worker APP_DIR --type wsgi` (or a preloader) as
`/usr/bin/python3 loaders/python/wsgi_loader.py` with fd 3 = read end of the owner pipe and
fd 4 = the control channel, and the environment FERRY_APP_ROOT, FERRY_APP_TYPE, FERRY_ENV,
FERRY_OWNER_FD, FERRY_CONTROL_FD (the spawn handshake, docs/protocol.md §5). It loads
`application` from the app root, listens on its own password-protected Unix socket, reports
["ready", pid, address, secret] on the control channel and serves one request at a time
(docs/protocol.md §2, §3) until the owner pipe closes or a signal says stop (the lifecycle
list of docs/protocol.md, "Conformance suite"). See README.md next to this file for the
behaviour in detail. Python 3 standard library only.
"""

import errno
import faulthandler
import hmac
import importlib.util
import os
import re
import secrets
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback

# Wire limits (docs/protocol.md §6).
REQUEST_BLOCK_MAX = 131072
RESPONSE_HEAD_MAX = 131072
ARRAY_PAYLOAD_MAX = 65535
LISTEN_BACKLOG = 50
# A client (the core) sends the whole block at once; a connection that dawdles longer is not
# the core and must not hold the worker. Body reads may wait longer (the core buffers bodies).
HEADER_TIMEOUT_S = 5.0
BODY_TIMEOUT_S = 60.0
# After the response, unread body bytes are drained so that the core sees a clean EOF rather
# than ECONNRESET; this bounds the time spent on it. These timeouts are the same in every loader
# (docs/protocol.md §6, "Shared constants").
DRAIN_TIMEOUT_S = 2.0
IO_CHUNK = 65536
# The first read of a connection: the size prefix, the request block and usually the whole body
# of a small request in one recv.
FIRST_READ = 16384
# Two errors outside a request less than this apart end the worker (docs/protocol.md §6,
# "Shared constants").
ERROR_RETRY_INTERVAL_S = 10.0
# Where `application` is looked for, in this order.
ENTRY_FILES = ("passenger_wsgi.py", "wsgi.py", "app.py")
PASSWORD_VAR = "FERRY_CONNECT_PASSWORD"

PRODUCTION_500_BODY = b"Internal Server Error\n"

_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS_RE = re.compile(r"^[1-9][0-9][0-9] [^\x00-\x08\x0a-\x1f\x7f]*\Z")
# Header lines "Name: value\r\n" joined: token names, values free of control characters.
_HEADER_LINES_RE = re.compile(r"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\x00-\x08\x0a-\x1f\x7f]*\r\n)*")


# ---------------------------------------------------------------------------------------------
# Logging: "<ISO time> [level] wsgi: key=value ...: message", one write(2) per entry.

def _log_value(value):
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\r\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") \
            .replace("\r", "\\r").replace("\t", "\\t") + '"'
    return text


def format_log_line(level, message, fields, now=None):
    """Returns one log line (str, ending in a newline) in ferry's format. <fields> is a list of
    (key, value) pairs shown as key=value after pid=; values with spaces are quoted."""
    if now is None:
        now = time.time()
    secs = int(now)
    millis = int((now - secs) * 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%03dZ" % millis
    parts = ["pid=%d" % os.getpid()]
    parts.extend("%s=%s" % (key, _log_value(value)) for key, value in fields)
    return "%s [%s] wsgi: %s: %s\n" % (stamp, level, " ".join(parts), message)


def log(level, message, *fields, detail=None):
    """Writes a log entry to stderr (fd 2). <fields> are (key, value) pairs; <detail>, when
    given, is multi-line text (a traceback) appended indented under the line."""
    text = format_log_line(level, message, fields)
    if detail:
        text += "".join("    " + line + "\n" for line in detail.rstrip("\n").split("\n"))
    data = text.encode("utf-8", "backslashreplace")
    while data:
        try:
            written = os.write(2, data)
        except InterruptedError:
            continue
        except OSError:
            return
        data = data[written:]


# ---------------------------------------------------------------------------------------------
# Wire formats (docs/protocol.md §1–§3).

class ProtocolError(Exception):
    """A request that breaks the wire format: refused, closed without a reply, logged."""


def encode_array_message(items):
    """Encodes an array message: u16 BE payload length, then each item followed by NUL.
    <items> are str (UTF-8) or bytes. Raises ValueError when an item holds a NUL, there is no
    item, or the payload passes 65535 bytes."""
    if not items:
        raise ValueError("an array message needs at least one item")
    payload = bytearray()
    for item in items:
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        if b"\0" in data:
            raise ValueError("array message items cannot contain NUL")
        payload += data + b"\0"
    if len(payload) > ARRAY_PAYLOAD_MAX:
        raise ValueError("array message payload of %d bytes passes %d"
                         % (len(payload), ARRAY_PAYLOAD_MAX))
    return struct.pack(">H", len(payload)) + bytes(payload)


def fit_message_text(text, budget):
    """Makes <text> safe for an array message item: NUL escaped, at most <budget> UTF-8 bytes
    (cut at a character boundary, marked with a trailing note)."""
    text = text.replace("\0", "\\0")
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= budget:
        return data.decode("utf-8")
    note = "\n[... truncated]"
    return data[:max(0, budget - len(note))].decode("utf-8", "ignore") + note


def parse_request_block(block):
    """Parses the request header block (without its size prefix) into a list of (name, value)
    str pairs (bytes decoded as latin-1, once for the whole block). Raises ProtocolError for a
    block that does not end in NUL, an odd item count or an empty name. An empty block is valid
    (no pairs)."""
    if len(block) > REQUEST_BLOCK_MAX:
        raise ProtocolError("header block of %d bytes passes %d" % (len(block), REQUEST_BLOCK_MAX))
    if not block:
        return []
    if block[-1] != 0:
        raise ProtocolError("header block does not end in NUL")
    items = block[:-1].decode("latin-1").split("\0")
    if len(items) % 2 != 0:
        raise ProtocolError("header block has an odd item count (%d)" % len(items))
    names = items[0::2]
    if "" in names:
        raise ProtocolError("header block has an empty name")
    return list(zip(names, items[1::2]))


def check_status(status):
    """Checks a WSGI status line ("200 OK"); returns it or raises TypeError/ValueError."""
    if type(status) is not str:
        raise TypeError("WSGI status must be str, got %r" % (type(status).__name__,))
    if not _STATUS_RE.match(status):
        raise ValueError("invalid WSGI status %r (want three digits, a space and a reason)"
                         % (status,))
    return status


def check_headers(headers):
    """Checks WSGI response headers: a list of (str, str) tuples with token names and values
    free of control characters (no header injection into the response head). Returns them or
    raises TypeError/ValueError."""
    if type(headers) is not list:
        raise TypeError("WSGI response headers must be a list, got %r" % (type(headers).__name__,))
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise TypeError("WSGI response header %r is not a (name, value) tuple" % (item,))
        name, value = item
        if type(name) is not str or type(value) is not str:
            raise TypeError("WSGI response header %r: name and value must be str" % (item,))
        if not _TOKEN_RE.match(name):
            raise ValueError("invalid response header name %r" % (name,))
        if _BAD_VALUE_RE.search(value):
            raise ValueError("response header %s has a control character in its value %r"
                             % (name, value))
        try:
            name.encode("latin-1")
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("response header %s is not Latin-1 (PEP 3333 wants latin-1 "
                             "native strings)" % (name,)) from None
    return headers


def encode_response_head(status, headers):
    """Returns the response head bytes: "Status: <status>\\r\\n", one "Name: value\\r\\n" per
    header in order, then "\\r\\n". Inputs must have passed check_status/check_headers."""
    lines = ["Status: %s\r\n" % status]
    lines.extend("%s: %s\r\n" % (name, value) for name, value in headers)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def checked_response_head(status, headers):
    """check_headers + encode_response_head for a status that passed check_status: one regular
    expression over all header lines at once instead of two per header (the per-request cost
    of start_response); anything it does not accept goes through check_headers, which raises
    the precise TypeError/ValueError."""
    if type(headers) is list:
        try:
            if all(type(name) is str and type(value) is str for name, value in headers):
                text = "".join(["%s: %s\r\n" % item for item in headers])
                # one line per header: a CRLF inside a value would make two valid-looking ones
                if text.count("\n") == len(headers) and _HEADER_LINES_RE.fullmatch(text):
                    return ("Status: %s\r\n%s\r\n" % (status, text)).encode("latin-1")
        except (TypeError, ValueError, UnicodeEncodeError):
            pass
    return encode_response_head(status, check_headers(headers))


def is_development():
    return os.environ.get("FERRY_ENV", "production") == "development"


# ---------------------------------------------------------------------------------------------
# Request body: wsgi.input.

class RequestBody:
    """wsgi.input: <length> bytes: <prefix> (what arrived with the request block), then the
    rest from <sock>, lazily (read when the app asks), never past the body. read(size),
    readline(size), readlines(hint), iteration. A body cut short by the peer ends early (logged
    once)."""

    def __init__(self, sock, length, timeout=BODY_TIMEOUT_S, prefix=b""):
        self._sock = sock
        self._timeout = timeout      # seconds a read may wait for the next byte
        # received, not yet handed to the app: first what came with the request block (bytes
        # past the body, which the core never sends, are dropped)
        self._buf = bytearray(prefix[:length])
        self._left = length - len(self._buf)   # bytes still in the socket
        self.truncated = False

    @property
    def unread_in_socket(self):
        return self._left

    def _recv(self, max_bytes, timeout=None):
        """Receives up to <max_bytes> (≤ what is left), waiting at most <timeout> seconds for
        the first byte. Returns the bytes, b"" at the end. Raises TimeoutError."""
        want = min(max_bytes, self._left)
        if want <= 0:
            return b""
        if timeout is None:
            timeout = self._timeout
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        if not poller.poll(max(0, int(timeout * 1000))):
            raise TimeoutError(errno.ETIMEDOUT, "request body read timed out")
        while True:
            try:
                data = self._sock.recv(want)
                break
            except InterruptedError:
                continue
        if not data:
            if not self.truncated:
                log("warn", "request body cut short by the peer", ("missing_bytes", self._left))
            self.truncated = True
            self._left = 0
            return b""
        self._left -= len(data)
        return data

    def read(self, size=-1):
        if size is None or size < 0:
            chunks = [bytes(self._buf)]
            self._buf.clear()
            while self._left > 0:
                data = self._recv(max(IO_CHUNK, min(self._left, 1 << 20)))
                if not data:
                    break
                chunks.append(data)
            return b"".join(chunks)
        while len(self._buf) < size and self._left > 0:
            data = self._recv(max(size - len(self._buf), 0))
            if not data:
                break
            self._buf += data
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    def readline(self, size=-1):
        if size is None:
            size = -1
        start = 0
        while True:
            newline = self._buf.find(b"\n", start)
            if newline >= 0:
                end = newline + 1
                break
            if 0 <= size <= len(self._buf) or self._left <= 0:
                end = len(self._buf)
                break
            start = len(self._buf)
            data = self._recv(IO_CHUNK)
            if not data:
                end = len(self._buf)
                break
            self._buf += data
        if size >= 0:
            end = min(end, size)
        out = bytes(self._buf[:end])
        del self._buf[:end]
        return out

    def readlines(self, hint=-1):
        if hint is None:
            hint = -1
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def drain(self, deadline):
        """Reads and discards what is left of the body, until <deadline> (monotonic)."""
        self._buf.clear()
        while self._left > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if not self._recv(min(self._left, 1 << 20), timeout=remaining):
                return


class FileWrapper:
    """wsgi.file_wrapper: iterates a file-like object in <block_size> pieces; close() closes
    it."""

    def __init__(self, filelike, block_size=8192):
        self.filelike = filelike
        self.block_size = block_size
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        while True:
            data = self.filelike.read(self.block_size)
            if not data:
                return
            yield data


# ---------------------------------------------------------------------------------------------
# Response.

class ClientGone(Exception):
    """The core closed the connection while the response was being written."""


class Response:
    """The response side of one request: start_response, write(), the head and body pieces.
    The head is sent with the first non-empty body piece, at the first write() call, or by
    finish(); for HEAD requests no body byte is ever sent."""

    def __init__(self, sock, is_head):
        self._sock = sock
        self.is_head = is_head
        self.status = None
        self.headers = None
        self.head = None             # the encoded head, built by start_response
        self.head_sent = False
        self.body_bytes = 0

    def start_response(self, status, headers, exc_info=None):
        """PEP 3333 start_response. With <exc_info>: re-raises it when the head is already sent,
        else replaces status and headers. Without: a second call is an error."""
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise RuntimeError("start_response called a second time without exc_info")
        status = check_status(status)
        head = checked_response_head(status, headers)
        self.status = status
        self.headers = list(headers)
        self.head = head
        return self.write

    def _send(self, data):
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise ClientGone(str(exc)) from None

    def _head_bytes(self):
        head = self.head
        if len(head) > RESPONSE_HEAD_MAX:
            raise ValueError("response head of %d bytes passes %d"
                             % (len(head), RESPONSE_HEAD_MAX))
        return head

    def write(self, data):
        """The write() callable: sends the head if not sent yet, then <data> (not for HEAD)."""
        if self.status is None:
            raise RuntimeError("write() called before start_response")
        self.send_piece(data, force_head=True)

    def send_piece(self, data, force_head=False):
        """Sends one body piece (bytes-like), preceded by the head when it has not gone yet and
        the piece is non-empty (or <force_head>)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("WSGI body pieces must be bytes, got %s" % (type(data).__name__,))
        if not data and not force_head:
            return
        if self.status is None:
            raise RuntimeError("the application sent a body before calling start_response")
        out = b""
        if not self.head_sent:
            out = self._head_bytes()
        if not self.is_head and data:
            self.body_bytes += len(data)
            if out and len(data) <= IO_CHUNK:
                out += bytes(data)
            else:
                if out:
                    self._send(out)
                    self.head_sent = True
                    out = b""
                self._send(data)
        if out:
            self._send(out)
        self.head_sent = True

    def finish(self):
        """Ends a successful response: sends the head if it has not gone yet."""
        if self.head_sent:
            return
        if self.status is None:
            raise RuntimeError("the application returned without calling start_response")
        self._send(self._head_bytes())
        self.head_sent = True

    def send_error(self, body):
        """Sends a 500 with <body> (text/plain); only while the head has not gone."""
        head = ("Status: 500 Internal Server Error\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Length: %d\r\n\r\n" % len(body)).encode("latin-1")
        self._send(head if self.is_head else head + body)
        self.head_sent = True
        self.status = "500 Internal Server Error"


def call_close(result):
    """Calls result.close() when it exists. Returns None, or the exc_info of its failure."""
    close = getattr(result, "close", None)
    if close is None:
        return None
    try:
        close()
    except Exception:
        return sys.exc_info()
    return None


# ---------------------------------------------------------------------------------------------
# The worker.

def _timeval(seconds):
    """<seconds> as the struct timeval of SO_RCVTIMEO, at least 1 µs (0 would mean no limit)."""
    usec = max(1, int(seconds * 1000000))
    return struct.pack("@ll", usec // 1000000, usec % 1000000)


class RequestRefused(Exception):
    """A connection refused before the app saw it (malformed, wrong password, too slow)."""


class Worker:
    """One worker: an application, a listening socket and its secret, and the accept loop."""

    def __init__(self, application, listen_sock, secret, clock=time.monotonic):
        self.application = application
        self.listen_sock = listen_sock
        self.secret = secret.encode("ascii") if isinstance(secret, str) else secret
        self.clock = clock
        self.soft_stop = False
        self.wake_fd = None           # read end of the wake pipe (SIGUSR1 while idle)
        self.requests_served = 0
        self.current = None           # (method, uri) of the running request, for logs

    # --- reading the request -----------------------------------------------------------------

    @staticmethod
    def _recv_once(conn, max_bytes, what):
        """One recv of at most <max_bytes>; b"" at EOF. Raises RequestRefused."""
        while True:
            try:
                return conn.recv(max_bytes)
            except InterruptedError:
                continue
            except (socket.timeout, BlockingIOError):
                raise RequestRefused("timed out reading the %s" % what) from None
            except OSError as exc:
                raise RequestRefused("reading the %s failed: %s" % (what, exc)) from None

    def _recv_exact(self, conn, size, what, deadline, already=0):
        """Receives exactly <size> more bytes of the <what>, of which <already> came before,
        by <deadline> (monotonic)."""
        chunks = []
        got = 0
        while got < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RequestRefused("timed out reading the %s" % what)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(left))
            data = self._recv_once(conn, min(size - got, 1 << 20), what)
            if not data:
                raise RequestRefused("connection closed inside the %s (%d of %d bytes)"
                                     % (what, already + got, already + size))
            if got == 0 and len(data) == size:
                return data
            chunks.append(data)
            got += len(data)
        return b"".join(chunks)

    def read_request(self, conn):
        """Reads and checks the request block from <conn> (a blocking socket). Returns the
        (name, value) str pairs without the password, and the body bytes that arrived with the
        block. Raises RequestRefused (logged by the caller, no reply)."""
        # A receive timeout on the blocking socket bounds each read without the poll() that
        # settimeout() would add before every recv; a block that comes in pieces gets what is
        # left of HEADER_TIMEOUT_S for each further read, so the whole block is bounded.
        deadline = time.monotonic() + HEADER_TIMEOUT_S
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(HEADER_TIMEOUT_S))
        # One recv takes the size, the block and often the whole body (one syscall, not two).
        first = self._recv_once(conn, FIRST_READ, "header size")
        if not first:
            raise RequestRefused("connection closed before a request")
        if len(first) < 4:
            first += self._recv_exact(conn, 4 - len(first), "header size", deadline,
                                      already=len(first))
        (size,) = struct.unpack(">I", first[:4])
        if size > REQUEST_BLOCK_MAX:
            raise RequestRefused("header block of %d bytes passes %d" % (size, REQUEST_BLOCK_MAX))
        block = first[4:4 + size]
        if len(block) < size:
            block += self._recv_exact(conn, size - len(block), "header block", deadline,
                                      already=len(block))
        rest = first[4 + size:]
        try:
            pairs = parse_request_block(block)
        except ProtocolError as exc:
            raise RequestRefused("malformed header block: %s" % exc) from None
        password = None
        for name, value in pairs:
            if name == PASSWORD_VAR:
                password = value
                break
        if password is None:
            raise RequestRefused("request without %s" % PASSWORD_VAR)
        if not hmac.compare_digest(password.encode("latin-1"), self.secret):
            raise RequestRefused("wrong %s" % PASSWORD_VAR)
        return [pair for pair in pairs if pair[0] != PASSWORD_VAR], rest

    def build_environ(self, pairs, body):
        """Builds the PEP 3333 environ from the request variables (first value of a repeated
        name wins) and <body> (wsgi.input)."""
        environ = dict(reversed(pairs))
        if environ.setdefault("SCRIPT_NAME", "") == "/":
            environ["SCRIPT_NAME"] = ""
        environ.setdefault("QUERY_STRING", "")
        https = environ.get("HTTPS", "").lower() in ("on", "1", "yes", "true")
        environ["wsgi.version"] = (1, 0)
        environ["wsgi.url_scheme"] = "https" if https else "http"
        environ["wsgi.input"] = body
        environ["wsgi.errors"] = sys.stderr
        environ["wsgi.multithread"] = False
        environ["wsgi.multiprocess"] = True
        environ["wsgi.run_once"] = False
        environ["wsgi.file_wrapper"] = FileWrapper
        return environ

    # --- serving one connection -------------------------------------------------------------

    def handle_connection(self, conn):
        """Serves one accepted connection and closes it. Errors of the request (refused, the
        app's exceptions, the core going away) are handled and logged here."""
        try:
            try:
                pairs, body_start = self.read_request(conn)
            except RequestRefused as exc:
                log("warn", "connection refused without a reply: %s" % exc)
                return
            content_length = 0
            for name, value in pairs:
                if name == "CONTENT_LENGTH":
                    if value != "" and not (value.isdigit() and value.isascii()):
                        log("warn", "bad CONTENT_LENGTH: answering 400", ("value", value))
                        self._send_quietly(conn, b"Status: 400 Bad Request\r\n"
                                           b"Content-Type: text/plain\r\n"
                                           b"Content-Length: 12\r\n\r\nbad request\n")
                        return
                    content_length = int(value) if value else 0
                    break
            # Writes may wait on a slow HTTP client (backpressure); body reads have their own
            # timeout (they poll before each recv).
            body = RequestBody(conn, content_length, prefix=body_start)
            environ = self.build_environ(pairs, body)
            self.run_application(conn, environ, body)
        finally:
            self.current = None
            conn.close()

    @staticmethod
    def _send_quietly(conn, data):
        try:
            conn.sendall(data)
        except OSError:
            pass

    def run_application(self, conn, environ, body):
        method = environ.get("REQUEST_METHOD", "")
        uri = environ.get("REQUEST_URI", environ.get("PATH_INFO", ""))
        self.current = (method, uri)
        response = Response(conn, is_head=(method == "HEAD"))
        result = None
        error = None
        gone = None
        try:
            result = self.application(environ, response.start_response)
            if response.is_head:
                # The body is not sent; a generator app calls start_response only when it is
                # first iterated, so pull pieces (discarded) until it has.
                if response.status is None:
                    for _piece in result:
                        if response.status is not None:
                            break
            else:
                for piece in result:
                    response.send_piece(piece)
        except ClientGone as exc:
            gone = exc
        except BaseException:
            error = sys.exc_info()
        close_error = call_close(result)
        if close_error is not None:
            log("error", "result.close() raised", ("method", method), ("uri", uri),
                detail="".join(traceback.format_exception(*close_error)))
            if error is None and gone is None and not response.head_sent:
                error = close_error
            close_error = None
        if gone is None and error is None:
            try:
                response.finish()
            except ClientGone as exc:
                gone = exc
            except Exception:
                error = sys.exc_info()
        if gone is not None:
            log("info", "the core closed the connection during the response: %s" % gone,
                ("method", method), ("uri", uri))
            return
        if error is not None:
            answered = self.report_app_error(response, error, method, uri)
            error = None
            if not answered:
                return   # closed mid-body: the core must see the truncation
        self.end_connection(conn, body)

    def report_app_error(self, response, error, method, uri):
        """Logs the app's exception <error> and answers 500 when the head has not gone yet.
        Returns True when the 500 was sent."""
        text = "".join(traceback.format_exception(*error))
        if response.head_sent:
            log("error", "exception in the application after the head was sent: closing the "
                "connection", ("method", method), ("uri", uri), detail=text)
            return False
        log("error", "exception in the application: answering 500", ("method", method),
            ("uri", uri), detail=text)
        if is_development():
            body = ("Internal Server Error\n\n" + text).encode("utf-8", "backslashreplace")
        else:
            body = PRODUCTION_500_BODY
        try:
            response.send_error(body)
        except ClientGone:
            return False
        return True

    def end_connection(self, conn, body):
        """After a complete response, when the app left part of the body unread: EOF to the
        core first, then drain the rest (so the core's writes and reads end cleanly, not with
        ECONNRESET). Otherwise the close that follows is the EOF (one syscall fewer)."""
        if body.unread_in_socket == 0:
            return
        try:
            conn.shutdown(socket.SHUT_WR)
            body.drain(time.monotonic() + DRAIN_TIMEOUT_S)
        except OSError:
            pass

    # --- the loop ----------------------------------------------------------------------------

    def serve(self):
        """Accepts and serves connections until a soft stop (returns 0) or two errors outside a
        request less than 10 s apart (returns 1)."""
        poller = select.poll()
        poller.register(self.listen_sock.fileno(), select.POLLIN)
        if self.wake_fd is not None:
            poller.register(self.wake_fd, select.POLLIN)
        # A non-blocking listener lets the loop take a waiting connection at once and poll only
        # when none is there (one syscall fewer per request under load). Accepted sockets are
        # blocking all the same: accept4 does not pass the listener's O_NONBLOCK on.
        self.listen_sock.setblocking(False)
        last_error = None
        while True:
            if self.soft_stop:
                return 0
            conn = None
            try:
                try:
                    conn, _addr = self.listen_sock.accept()
                except BlockingIOError:
                    for fd, _mask in poller.poll():
                        if fd == self.wake_fd and b"U" in os.read(self.wake_fd, 64):
                            self.soft_stop = True
                    continue
            except Exception as exc:
                now = self.clock()
                if last_error is not None and now - last_error < ERROR_RETRY_INTERVAL_S:
                    log("error", "error outside a request again within %d s: exiting: %s"
                        % (ERROR_RETRY_INTERVAL_S, exc))
                    return 1
                last_error = now
                log("error", "error outside a request: retrying: %s" % exc)
                continue
            if conn is None:
                continue
            try:
                self.handle_connection(conn)
            except Exception as exc:
                now = self.clock()
                log("alert", "loader error while serving a request",
                    detail=traceback.format_exc())
                if last_error is not None and now - last_error < ERROR_RETRY_INTERVAL_S:
                    log("error", "error outside a request again within %d s: exiting: %s"
                        % (ERROR_RETRY_INTERVAL_S, exc))
                    return 1
                last_error = now
                continue
            self.requests_served += 1


# ---------------------------------------------------------------------------------------------
# Boot: loading the app, the socket, the handshake, signals and the owner pipe.

class BootError(Exception):
    """The app cannot boot: <summary> is one line for the pool's error page, <details> the
    traceback; <step> names the step that failed (for the log)."""

    def __init__(self, step, summary, details=""):
        super().__init__(summary)
        self.step = step
        self.summary = summary
        self.details = details


def _shown_path(path, app_root):
    try:
        rel = os.path.relpath(path, app_root)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def load_application(app_root):
    """Imports `application` from passenger_wsgi.py, else wsgi.py, else app.py in <app_root>
    (which goes first on sys.path and becomes the cwd). Returns the callable or raises
    BootError with a summary that names what went wrong."""
    try:
        os.chdir(app_root)
    except OSError as exc:
        raise BootError("load_app", "cannot enter the app root %s: %s"
                        % (app_root, exc.strerror)) from None
    if app_root not in sys.path:
        sys.path.insert(0, app_root)
    for name in ENTRY_FILES:
        path = os.path.join(app_root, name)
        if os.path.isfile(path):
            break
    else:
        raise BootError("load_app", "no %s in %s" % (", ".join(ENTRY_FILES[:-1]) + " or "
                                                      + ENTRY_FILES[-1], app_root))
    module_name = name[:-3]
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        where = _shown_path(exc.filename or path, app_root)
        raise BootError("load_app", "%s in %s line %s: %s"
                        % (type(exc).__name__, where, exc.lineno, exc.msg),
                        traceback.format_exc()) from None
    except ImportError as exc:
        sys.modules.pop(module_name, None)
        summary = str(exc) or "%s while loading %s" % (type(exc).__name__, name)
        raise BootError("load_app", summary, traceback.format_exc()) from None
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        raise BootError("load_app", "%s while loading %s: %s" % (type(exc).__name__, name, exc),
                        traceback.format_exc()) from None
    application = getattr(module, "application", None)
    if application is None:
        raise BootError("load_app", "%s does not define `application`" % name)
    if not callable(application):
        raise BootError("load_app", "%s defines `application` but it is not callable (%s)"
                        % (name, type(application).__name__))
    return application


def socket_file_dir():
    return os.environ.get("FERRY_INSTANCE_DIR") or os.environ.get("TMPDIR") or "/tmp"


def listen():
    """Creates the listening socket (backlog 50): abstract '\\0ferry-wsgi-<pid>-<random>'
    unless FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS=1 or the abstract namespace is unavailable, else
    a socket file (mode 0600) in $FERRY_INSTANCE_DIR, $TMPDIR or /tmp. Returns (socket,
    address, path or None). Raises BootError."""
    name = "ferry-wsgi-%d-%s" % (os.getpid(), secrets.token_hex(8))
    if os.environ.get("FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS") != "1":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind("\0" + name)
            sock.listen(LISTEN_BACKLOG)
            return sock, "abstract:" + name, None
        except OSError as exc:
            sock.close()
            log("warn", "abstract socket unavailable (%s): using a socket file" % exc.strerror)
    path = os.path.join(socket_file_dir(), name + ".sock")
    if len(os.fsencode(path)) > 107:
        raise BootError("listen", "socket path %s is too long for a Unix socket" % path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise BootError("listen", "cannot listen on %s: %s" % (path, exc.strerror)) from None
    return sock, "unix:" + path, path


def write_message(fd, items):
    """Writes one array message on <fd>, completely."""
    data = encode_array_message(items)
    while data:
        try:
            written = os.write(fd, data)
        except InterruptedError:
            continue
        data = data[written:]


class Process:
    """Process-wide state: the socket file to remove on every exit path, the owner pipe watcher
    and the signal plumbing."""

    def __init__(self):
        self.socket_path = None
        self.worker = None

    def cleanup(self):
        path = self.socket_path
        self.socket_path = None
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass

    def hard_exit(self, why, code=0):
        log("notice", "%s: exiting now" % why)
        self.cleanup()
        os._exit(code)

    def install_signals(self):
        """SIGTERM: exit now. SIGUSR1: finish the current request, then exit. SIGHUP and SIGINT
        ignored (the core stops workers). SIGQUIT: all threads' tracebacks to stderr. A
        wakeup fd lets the watcher thread act even while the main thread runs app code."""
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda signum, frame: self.hard_exit("SIGTERM"))
        signal.signal(signal.SIGUSR1, self._on_sigusr1)
        faulthandler.register(signal.SIGQUIT, file=sys.stderr, all_threads=True, chain=False)
        self.sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def _on_sigusr1(self, signum, frame):
        if self.worker is not None:
            self.worker.soft_stop = True
            if self.worker.current is not None:
                method, uri = self.worker.current
                log("notice", "SIGUSR1: exiting after the current request", ("method", method),
                    ("uri", uri))

    def start_watcher(self, owner_fd):
        """Starts the daemon thread that exits the process when the owner pipe reaches EOF (also
        while the app runs) and reacts to signals through the wakeup fd. It runs with the
        handled signals blocked, so they interrupt the main thread instead."""
        handled = {signal.SIGTERM, signal.SIGUSR1, signal.SIGQUIT, signal.SIGHUP, signal.SIGINT}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, handled)
        try:
            thread = threading.Thread(target=self._watch, args=(owner_fd,),
                                      name="ferry-owner-watcher", daemon=True)
            thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _watch(self, owner_fd):
        poller = select.poll()
        poller.register(owner_fd, select.POLLIN)
        poller.register(self.sig_r, select.POLLIN)
        while True:
            try:
                for fd, _mask in poller.poll():
                    if fd == owner_fd:
                        self._on_owner_readable(owner_fd)
                    elif fd == self.sig_r:
                        self._on_signal_bytes()
            except Exception:
                # This thread is what guarantees the exit on owner EOF: it must not die.
                log("alert", "owner pipe watcher error", detail=traceback.format_exc())
                time.sleep(0.1)

    def _on_owner_readable(self, owner_fd):
        try:
            data = os.read(owner_fd, 512)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.hard_exit("owner pipe closed")

    def _on_signal_bytes(self):
        try:
            signums = os.read(self.sig_r, 64)
        except (BlockingIOError, InterruptedError):
            return
        if int(signal.SIGTERM) in signums:
            self.hard_exit("SIGTERM")
        if int(signal.SIGUSR1) in signums:
            try:
                os.write(self.wake_w, b"U")
            except BlockingIOError:
                pass   # a wake-up is already pending


def fd_from_env(name, default):
    value = os.environ.get(name, str(default))
    try:
        fd = int(value)
        os.fstat(fd)
    except (ValueError, OSError):
        raise BootError("handshake", "%s=%r is not an open file descriptor" % (name, value)) \
            from None
    return fd


def main():
    proc = Process()
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass
    faulthandler.enable(file=sys.stderr, all_threads=True)
    # The loader's own directory must not shadow the app's modules.
    loader_dir = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != loader_dir]

    try:
        control_fd = fd_from_env("FERRY_CONTROL_FD", 4)
    except BootError as exc:
        log("error", exc.summary, ("step", exc.step))
        return 1
    app_root = os.environ.get("FERRY_APP_ROOT", "")
    try:
        owner_fd = fd_from_env("FERRY_OWNER_FD", 3)
        os.set_inheritable(owner_fd, False)
        os.set_inheritable(control_fd, False)
        for name in ("FERRY_OWNER_FD", "FERRY_CONTROL_FD"):
            os.environ.pop(name, None)
        proc.install_signals()
        proc.start_watcher(owner_fd)
        if not app_root or not os.path.isabs(app_root):
            raise BootError("load_app", "FERRY_APP_ROOT must be an absolute path, got %r"
                            % (app_root,))
        application = load_application(app_root)
        sock, address, proc.socket_path = listen()
    except BootError as exc:
        log("error", exc.summary, ("app", app_root), ("step", exc.step), detail=exc.details)
        try:
            write_message(control_fd, ["error", fit_message_text(exc.summary, 4096),
                                       fit_message_text(exc.details, 60000)])
        except OSError as write_exc:
            log("error", "cannot report the boot error on the control channel: %s" % write_exc)
        proc.cleanup()
        return 1

    secret = secrets.token_hex(16)
    worker = Worker(application, sock, secret)
    worker.wake_fd = proc.wake_r
    proc.worker = worker
    try:
        write_message(control_fd, ["ready", str(os.getpid()), address, secret])
        os.close(control_fd)
    except OSError as exc:
        log("error", "cannot send ready on the control channel: %s" % exc, ("app", app_root),
            ("step", "handshake"))
        proc.cleanup()
        return 1
    log("info", "ready", ("app", app_root), ("address", address))
    try:
        code = worker.serve()
    finally:
        sock.close()
        proc.cleanup()
    if code == 0:
        log("notice", "stopped after %d requests" % worker.requests_served, ("app", app_root))
    return code


if __name__ == "__main__":
    sys.exit(main())
