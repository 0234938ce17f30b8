"""A tiny raw HTTP/1.1 client for the tests of the HTTP front: send exact bytes, read exactly one
response (framed by Content-Length, chunked, or the close), see whether the server closed."""

import socket
import time


class Response:
    def __init__(self, status, head, headers, body):
        self.status = status
        self.head = head          # the raw head bytes, without the empty line
        self.headers = headers    # [(lower-case name, value)]
        self.body = body

    def get(self, name):
        values = [v for n, v in self.headers if n == name.lower()]
        return values[0] if values else None

    def all(self, name):
        return [v for n, v in self.headers if n == name.lower()]


class Conn:
    """One client connection to 127.0.0.1:<port>."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.timeout = timeout

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError("timed out; have %r" % self.buf[:300]) from None
        if not data:
            raise EOFError("server closed; have %r" % self.buf[:300])
        self.buf += data

    def _take_line(self, deadline):
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_response(self, head_request=False, timeout=None):
        """Reads one response; skips 1xx interim responses unless they are all there is."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            while b"\r\n\r\n" not in self.buf:
                self._fill(deadline)
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            assert lines[0].startswith(b"HTTP/1.1 "), head[:200]
            status = int(lines[0][9:12])
            headers = []
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers.append((name.decode().lower(), value.strip().decode("latin-1")))
            if 100 <= status < 200:
                continue
            break
        resp = Response(status, head, headers, b"")
        te = resp.get("transfer-encoding")
        cl = resp.get("content-length")
        assert not (te and cl), "both Content-Length and Transfer-Encoding: %r" % head
        if head_request or status in (204, 304):
            return resp
        if te is not None:
            assert te == "chunked", head
            body = b""
            while True:
                size = int(self._take_line(deadline).split(b";")[0], 16)
                if size == 0:
                    assert self._take_line(deadline) == b""
                    break
                while len(self.buf) < size + 2:
                    self._fill(deadline)
                body += self.buf[:size]
                assert self.buf[size:size + 2] == b"\r\n"
                self.buf = self.buf[size + 2:]
            resp.body = body
        elif cl is not None:
            n = int(cl)
            while len(self.buf) < n:
                self._fill(deadline)
            resp.body, self.buf = self.buf[:n], self.buf[n:]
        else:
            try:
                while True:
                    self._fill(deadline)
            except EOFError:
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def closed_by_server(self, timeout=3.0):
        """True when the server closes the connection (EOF or reset) within <timeout> and sends
        nothing more."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    return False
                if not data:
                    return self.buf == b""
                self.buf += data
        except ConnectionResetError:
            return self.buf == b""
        return False

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
