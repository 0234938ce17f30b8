"""The WSGI loader as a process, driven the way `ferry worker` drives it: spawn handshake,
requests on its socket, the conformance app's routes, refusals, signals and the owner pipe.
Every test reaps its loader and leaves no socket file."""

import glob
import os
import re
import signal
import struct
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import wsgi_loader_driver as driver  # noqa: E402

MAIN = os.path.join(driver.APPS, "main")


@pytest.fixture(autouse=True)
def no_bytecode(monkeypatch):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")


@pytest.fixture
def start(tmp_path):
    """Starts loaders; each is stopped and checked at the end of the test."""
    started = []

    def _start(app_dir=MAIN, env=None, handshake=True):
        n = len(started)
        loader = driver.Loader(app_dir, env=env, stderr_path=str(tmp_path / ("stderr%d" % n)))
        started.append(loader)
        if handshake:
            msg = loader.handshake()
            assert msg and msg[0] == "ready", (msg, loader.stderr())
        return loader

    yield _start
    for loader in started:
        loader.stop()
        assert loader.proc.returncode is not None
        err = loader.stderr()
        assert "AssertionError" not in err and "WSGIWarning" not in err, err
        assert "[alert]" not in err, err
        if loader.address and loader.address.startswith("unix:"):
            assert not os.path.exists(loader.address[5:])


# --- handshake --------------------------------------------------------------------------------

def test_ready_message_has_pid_abstract_address_and_hex_secret(start):
    loader = start(handshake=False)
    msg = loader.handshake()
    assert msg[0] == "ready" and len(msg) == 4
    assert msg[1] == str(loader.pid)
    assert re.fullmatch(r"abstract:ferry-wsgi-%d-[0-9a-f]{16}" % loader.pid, msg[2])
    assert re.fullmatch(r"[0-9a-f]{32}", msg[3])
    assert loader.request("GET", "/hello")[2] == b"hello world\n"


def test_secrets_differ_between_workers(start):
    assert start().secret != start().secret


def test_no_abstract_falls_back_to_socket_file_in_instance_dir(start, tmp_path):
    loader = start(env={"FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS": "1",
                        "FERRY_INSTANCE_DIR": str(tmp_path)})
    assert loader.address.startswith("unix:%s/ferry-wsgi-%d-" % (tmp_path, loader.pid))
    path = loader.address[5:]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert loader.request("GET", "/hello")[2] == b"hello world\n"
    loader.close_owner()
    assert loader.wait(2) == 0
    assert not os.path.exists(path)


def test_socket_file_falls_back_to_tmpdir_without_instance_dir(start, tmp_path):
    loader = start(env={"FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS": "1", "TMPDIR": str(tmp_path)})
    assert loader.address.startswith("unix:%s/" % tmp_path)


def test_socket_path_too_long_is_a_boot_error(start, tmp_path):
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    loader = start(env={"FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS": "1",
                        "FERRY_INSTANCE_DIR": str(deep)}, handshake=False)
    msg = loader.handshake()
    assert msg[0] == "error" and "too long" in msg[1]
    assert loader.wait(5) == 1


# --- boot failures ----------------------------------------------------------------------------

@pytest.mark.parametrize("app, summary", [
    ("syntax_error", "SyntaxError in passenger_wsgi.py line 3: invalid syntax"),
    ("no_entry_point", "passenger_wsgi.py does not define `application`"),
    ("missing_dependency", "No module named 'nonexistent_module'"),
])
def test_boot_failure_app_sends_error_and_exits_1(start, app, summary):
    loader = start(os.path.join(driver.APPS, app), handshake=False)
    msg = loader.handshake()
    assert msg[:2] == ["error", summary]
    assert len(msg) == 3
    if app != "no_entry_point":
        assert "Traceback" in msg[2] or "passenger_wsgi.py" in msg[2]
    assert loader.wait(5) == 1
    assert summary in loader.stderr() and "step=load_app" in loader.stderr()
    assert driver.read_array_message(loader.control) is None


def test_relative_app_root_is_a_boot_error(start):
    loader = start("relative/dir", handshake=False)
    msg = loader.handshake()
    assert msg[0] == "error" and "absolute" in msg[1]
    assert loader.wait(5) == 1


def test_owner_eof_during_a_hanging_load_exits(start, tmp_path):
    (tmp_path / "wsgi.py").write_text("import time\ntime.sleep(60)\n")
    loader = start(str(tmp_path), handshake=False)
    time.sleep(0.3)
    loader.close_owner()
    assert loader.wait(2) == 0


# --- the conformance routes -------------------------------------------------------------------

def test_hello_is_exact(start):
    status, headers, body = start().request("GET", "/hello")
    assert status == "Status: 200 OK"
    assert headers == [("Content-Type", "text/plain"), ("Content-Length", "12")]
    assert body == b"hello world\n"


def test_env_lists_cgi_and_http_vars_sorted_without_password(start):
    loader = start()
    _s, _h, body = loader.request("GET", "/env", query="a=1&b=%20",
                                  headers=[("HTTP_X_FOO", "bar"), ("CONTENT_TYPE", ""),
                                           ("HTTP_ACCEPT", "*/*")])
    lines = body.decode("latin-1").splitlines()
    assert lines == sorted(lines)
    assert "QUERY_STRING=a=1&b=%20" in lines and "HTTP_X_FOO=bar" in lines
    assert "CONTENT_TYPE=" in lines and "HTTP_ACCEPT=*/*" in lines
    assert loader.secret not in body.decode("latin-1")
    assert not any(line.startswith("FERRY_") for line in lines)


def test_sha256_reads_body_in_pieces(start):
    import hashlib
    data = os.urandom(3 * 65536 + 17)
    _s, _h, body = start().request("POST", "/sha256", body=data)
    assert body == ("%d %s\n" % (len(data), hashlib.sha256(data).hexdigest())).encode()


def test_echo_returns_body_and_content_type(start):
    loader = start()
    status, headers, body = loader.request("POST", "/echo", body=b"x" * 200000,
                                           headers=[("CONTENT_TYPE", "text/x-test")])
    assert status == "Status: 200 OK" and body == b"x" * 200000
    assert ("Content-Type", "text/x-test") in headers
    _s, headers, body = loader.request("POST", "/echo", body=b"abc")
    assert ("Content-Type", "application/octet-stream") in headers and body == b"abc"


def test_stream_pattern_and_no_content_length(start):
    status, headers, body = start().request("GET", "/stream", query="mib=3")
    assert status == "Status: 200 OK"
    assert headers == [("Content-Type", "application/octet-stream")]
    assert len(body) == 3 << 20
    assert body == bytes(i % 251 for i in range(251)) * (len(body) // 251) + \
        bytes(i % 251 for i in range(len(body) % 251))


def test_stream_of_1_gib_runs_in_bounded_memory(start):
    loader = start()
    with loader.connect(timeout=60) as sock:
        sock.sendall(driver.encode_block([
            ("REQUEST_METHOD", "GET"), ("PATH_INFO", "/stream"), ("QUERY_STRING", "mib=1024"),
            ("SERVER_NAME", "x"), ("SERVER_PORT", "1"), ("FERRY_CONNECT_PASSWORD", loader.secret)]))
        total = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            piece = sock.recv(1 << 20)
            if not piece:
                break
            total += len(piece)
    head_len = len(b"Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
    assert total == (1024 << 20) + head_len
    assert driver.vm_hwm_kib(loader.pid) < 64 * 1024


def test_cookies_are_two_headers_in_order(start):
    _s, headers, body = start().request("GET", "/cookies")
    assert [v for k, v in headers if k == "Set-Cookie"] == ["a=1; Path=/", "b=2; Path=/"]
    assert body == b"cookies\n"


@pytest.mark.parametrize("code", ["204", "304"])
def test_status_without_body(start, code):
    status, headers, body = start().request("GET", "/status/" + code)
    assert status.startswith("Status: %s " % code) and headers == [] and body == b""


def test_status_with_body(start):
    status, _h, body = start().request("GET", "/status/503")
    assert status == "Status: 503 Service Unavailable" and body == b"status 503\n"


def test_slow_sleeps(start):
    t0 = time.monotonic()
    _s, _h, body = start().request("GET", "/slow", query="ms=200")
    assert body == b"slept 200\n" and time.monotonic() - t0 >= 0.2


def test_pid_is_worker_pid(start):
    loader = start()
    assert loader.request("GET", "/pid")[2] == str(loader.pid).encode()


def test_close_is_called_also_for_head(start):
    loader = start()
    assert loader.request("GET", "/close-count")[2] == b"0"
    assert loader.request("GET", "/close-tracked")[2] == b"tracked\n"
    assert loader.request("HEAD", "/close-tracked")[2] == b""
    assert loader.request("GET", "/close-count")[2] == b"2"


def test_unknown_route_is_404(start):
    status, _h, body = start().request("GET", "/nope")
    assert status == "Status: 404 Not Found" and body == b"not found\n"


def test_head_sends_head_with_content_length_and_no_body(start):
    status, headers, body = start().request("HEAD", "/hello")
    assert status == "Status: 200 OK" and ("Content-Length", "12") in headers and body == b""


def test_head_of_a_stream_sends_no_body(start):
    status, _h, body = start().request("HEAD", "/stream", query="mib=100")
    assert status == "Status: 200 OK" and body == b""


# --- application errors -----------------------------------------------------------------------

def test_raise_gives_generic_500_in_production_and_worker_goes_on(start):
    loader = start()
    status, headers, body = loader.request("GET", "/raise")
    assert status == "Status: 500 Internal Server Error"
    assert body == b"Internal Server Error\n"
    assert ("Content-Length", str(len(body))) in headers
    assert loader.request("GET", "/hello")[2] == b"hello world\n"
    err = loader.stderr()
    assert "[error] wsgi:" in err and "RuntimeError: raised on purpose by /raise" in err


def test_raise_gives_traceback_in_development(start):
    loader = start(env={"FERRY_ENV": "development"})
    status, _h, body = loader.request("GET", "/raise")
    assert status == "Status: 500 Internal Server Error"
    assert b"Traceback" in body and b"raised on purpose by /raise" in body


def test_raise_on_head_sends_500_without_body(start):
    status, _h, body = start().request("HEAD", "/raise")
    assert status == "Status: 500 Internal Server Error" and body == b""


APP_CASES = '''
import sys
closed = []
class Body:
    def __init__(self, pieces, fail_at=None):
        self.pieces, self.fail_at = pieces, fail_at
    def __iter__(self):
        for i, p in enumerate(self.pieces):
            if i == self.fail_at:
                raise ValueError("failed mid-body")
            yield p
    def close(self):
        closed.append(1)

def lazy(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    yield b"lazy"

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/mid-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"first", b"second"], fail_at=1)
    if path == "/inject":
        start_response("200 OK", [("X-A", "b\\r\\nInjected: 1")])
        return [b"x"]
    if path == "/str-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["text"]
    if path == "/no-start":
        return [b"x"]
    if path == "/lazy":
        return lazy(environ, start_response)
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"via write, ")
        return [b"then iterable"]
    if path == "/exc-info":
        try:
            raise KeyError("k")
        except KeyError:
            start_response("200 OK", [("Content-Type", "text/plain")])
            start_response("503 Busy", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced"]
    if path == "/close-raises":
        class B(list):
            def close(self):
                raise OSError("close failed")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return B([])
    if path == "/closed":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(closed)).encode()]
    if path == "/partial-read":
        environ["wsgi.input"].read(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"read 10"]
    if path == "/path":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode("latin-1")]
    if path.startswith("/caf"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [ascii(environ["PATH_INFO"]).encode("ascii")]
    if path == "/exit":
        sys.exit(5)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"nf"]
'''


@pytest.fixture
def cases_app(tmp_path):
    app_dir = tmp_path / "cases"
    app_dir.mkdir()
    (app_dir / "passenger_wsgi.py").write_text(APP_CASES)
    return str(app_dir)


def test_exception_after_head_closes_connection_and_calls_close(start, cases_app):
    loader = start(cases_app)
    status, _h, body = loader.request("GET", "/mid-body")
    assert status == "Status: 200 OK" and body == b"first"
    assert loader.request("GET", "/closed")[2] == b"1"
    assert "after the head was sent" in loader.stderr()


@pytest.mark.parametrize("path", ["/inject", "/str-body", "/no-start", "/close-raises", "/exit"])
def test_bad_app_behaviour_gives_500_and_worker_goes_on(start, cases_app, path):
    loader = start(cases_app)
    status, headers, body = loader.request("GET", path)
    assert status == "Status: 500 Internal Server Error", (status, headers, body)
    assert not any(k == "Injected" for k, _v in headers)
    assert loader.request("GET", "/closed")[0] == "Status: 200 OK"


def test_generator_app_head_gets_its_headers(start, cases_app):
    loader = start(cases_app)
    assert loader.request("HEAD", "/lazy") == ("Status: 200 OK", [
        ("Content-Type", "text/plain"), ("Content-Length", "4")], b"")
    assert loader.request("GET", "/lazy")[2] == b"lazy"


def test_path_info_bytes_reach_the_app_as_latin1_str(start, cases_app):
    loader = start(cases_app)
    # "/café" in UTF-8 on the wire: PEP 3333 native strings decode each byte as Latin-1.
    assert loader.request("GET", "/caf\xc3\xa9")[2] == ascii("/caf\xc3\xa9").encode("ascii")


def test_write_callable_then_iterable(start, cases_app):
    assert start(cases_app).request("GET", "/write")[2] == b"via write, then iterable"


def test_exc_info_replaces_status_before_head(start, cases_app):
    status, _h, body = start(cases_app).request("GET", "/exc-info")
    assert status == "Status: 503 Busy" and body == b"replaced"


def test_unread_body_is_drained_so_the_core_sees_a_clean_eof(start, cases_app):
    loader = start(cases_app)
    with loader.connect() as sock:
        data = b"y" * (4 << 20)
        block = driver.encode_block([
            ("REQUEST_METHOD", "POST"), ("PATH_INFO", "/partial-read"), ("SERVER_NAME", "x"),
            ("SERVER_PORT", "1"), ("CONTENT_LENGTH", str(len(data))),
            ("FERRY_CONNECT_PASSWORD", loader.secret)])
        sender = threading.Thread(target=sock.sendall, args=(block + data,))
        sender.start()
        chunks = []
        while True:
            piece = sock.recv(65536)   # ConnectionResetError here would fail the test
            if not piece:
                break
            chunks.append(piece)
        sender.join(10)
    assert b"".join(chunks).endswith(b"read 10")


# --- refused requests -------------------------------------------------------------------------

def good_pairs(loader):
    return [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/hello"), ("SERVER_NAME", "x"),
            ("SERVER_PORT", "1"), ("FERRY_CONNECT_PASSWORD", loader.secret)]


@pytest.mark.parametrize("kind", ["wrong_password", "missing_password", "oversized",
                                  "odd_count", "no_final_nul", "empty_name", "truncated",
                                  "empty"])
def test_malformed_or_unauthorised_request_is_closed_unanswered(start, kind):
    loader = start()
    if kind == "wrong_password":
        data = driver.encode_block(good_pairs(loader)[:-1] + [("FERRY_CONNECT_PASSWORD",
                                                               "0" * 32)])
    elif kind == "missing_password":
        data = driver.encode_block(good_pairs(loader)[:-1])
    elif kind == "oversized":
        data = struct.pack(">I", 131073) + b"A\0" * 10
    elif kind == "odd_count":
        data = struct.pack(">I", 6) + b"A\0B\0C\0"
    elif kind == "no_final_nul":
        data = struct.pack(">I", 3) + b"A\0B"
    elif kind == "empty_name":
        data = struct.pack(">I", 3) + b"\0v\0"
    elif kind == "truncated":
        data = struct.pack(">I", 100) + b"A\0"
    else:
        data = b""
    assert loader.raw(data) == b""
    assert loader.request("GET", "/hello")[2] == b"hello world\n"
    assert driver.wait_for(lambda: "[warn] wsgi:" in loader.stderr())
    assert loader.secret not in loader.stderr()


def test_password_matching_a_prefix_is_wrong(start):
    loader = start()
    pairs = good_pairs(loader)[:-1] + [("FERRY_CONNECT_PASSWORD", loader.secret[:-1])]
    assert loader.raw(driver.encode_block(pairs)) == b""


def test_silent_connection_does_not_block_the_worker_forever(start):
    loader = start()
    with loader.connect() as idle:
        t0 = time.monotonic()
        idle.settimeout(10)
        assert idle.recv(1) == b""    # closed after the header timeout
        assert 4 <= time.monotonic() - t0 < 8
    assert loader.request("GET", "/hello")[2] == b"hello world\n"


def test_bad_content_length_gets_400(start):
    loader = start()
    status, _h, body = loader.request("POST", "/echo", extra=[("CONTENT_LENGTH", "12x")])
    assert status == "Status: 400 Bad Request" and body == b"bad request\n"


# --- lifecycle: owner pipe and signals --------------------------------------------------------

def slow_request_in_background(loader, ms):
    result = {}

    def run():
        try:
            result["response"] = loader.request("GET", "/slow", query="ms=%d" % ms)
        except (OSError, AssertionError) as exc:   # AssertionError: closed without a head
            result["error"] = exc
    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.3)
    return thread, result


def test_owner_eof_while_idle_exits_within_1s(start):
    loader = start()
    t0 = time.monotonic()
    loader.close_owner()
    assert loader.wait(1) == 0 and time.monotonic() - t0 < 1


def test_owner_eof_during_a_request_exits_within_1s(start):
    loader = start(env={"FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS": "1"})
    thread, result = slow_request_in_background(loader, 5000)
    t0 = time.monotonic()
    loader.close_owner()
    assert loader.wait(1) is not None and time.monotonic() - t0 < 1
    thread.join(5)
    assert "response" not in result
    assert not os.path.exists(loader.address[5:])


def test_sigterm_during_a_request_exits_now(start, tmp_path):
    loader = start(env={"FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS": "1",
                        "FERRY_INSTANCE_DIR": str(tmp_path)})
    thread, result = slow_request_in_background(loader, 5000)
    t0 = time.monotonic()
    loader.proc.send_signal(signal.SIGTERM)
    assert loader.wait(1) is not None and time.monotonic() - t0 < 1
    thread.join(5)
    assert "response" not in result
    assert glob.glob(str(tmp_path / "*.sock")) == []


def test_sigusr1_while_idle_exits_0_at_once(start, tmp_path):
    loader = start(env={"FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS": "1",
                        "FERRY_INSTANCE_DIR": str(tmp_path)})
    loader.proc.send_signal(signal.SIGUSR1)
    assert loader.wait(1) == 0
    assert glob.glob(str(tmp_path / "*.sock")) == []


def test_sigusr1_during_a_request_finishes_it_then_exits_0(start):
    loader = start()
    thread, result = slow_request_in_background(loader, 800)
    loader.proc.send_signal(signal.SIGUSR1)
    thread.join(5)
    assert result["response"][2] == b"slept 800\n"
    assert loader.wait(2) == 0


def test_sighup_is_ignored(start):
    loader = start()
    loader.proc.send_signal(signal.SIGHUP)
    time.sleep(0.2)
    assert loader.proc.poll() is None
    assert loader.request("GET", "/hello")[2] == b"hello world\n"


def test_sigquit_dumps_all_threads_and_goes_on(start):
    loader = start()
    thread, result = slow_request_in_background(loader, 600)
    loader.proc.send_signal(signal.SIGQUIT)
    thread.join(5)
    assert result["response"][2] == b"slept 600\n"
    err = loader.stderr()
    assert "Current thread" in err and "in slow" in err   # the request's stack
    assert "in _watch" in err                              # and every other thread
    assert loader.proc.poll() is None


def test_accepting_many_connections_in_a_row_leaks_no_fd(start):
    loader = start()
    for _ in range(5):
        loader.request("GET", "/hello")
    def open_fds():
        return len(os.listdir("/proc/%d/fd" % loader.pid))

    def settled_fds():
        # The loader closes a connection just after the client has read the response, so a
        # count taken at once may still include it: wait (bounded) for the count to settle.
        deadline = time.monotonic() + 2.0
        count = open_fds()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            again = open_fds()
            if again == count:
                return count
            count = again
        return count

    before = settled_fds()
    for _ in range(50):
        loader.request("GET", "/hello")
    assert settled_fds() <= before


def test_hello_wsgi_example_says_hello_with_python_version(start):
    loader = start(os.path.join(driver.REPO, "examples", "hello-wsgi"))
    status, headers, body = loader.request("GET", "/")
    assert status == "Status: 200 OK"
    assert ("Content-Type", "text/html; charset=utf-8") in headers
    assert b"Hello from ferry" in body and sys.version.split()[0].encode() in body
    assert loader.request("GET", "/elsewhere")[0] == "Status: 404 Not Found"


def test_many_sigusr1_during_a_request_still_finish_it_and_exit_0(start):
    loader = start()
    thread, result = slow_request_in_background(loader, 800)
    for _ in range(200):
        loader.proc.send_signal(signal.SIGUSR1)
    thread.join(5)
    assert result["response"][2] == b"slept 800\n"
    assert loader.wait(2) == 0


def test_control_fd_that_is_not_open_exits_1_with_a_log_line(start):
    loader = start(env={"FERRY_CONTROL_FD": "97"}, handshake=False)
    assert loader.wait(5) == 1
    assert "FERRY_CONTROL_FD='97' is not an open file descriptor" in loader.stderr()


def test_owner_fd_that_is_not_open_is_a_boot_error(start):
    loader = start(env={"FERRY_OWNER_FD": "98"}, handshake=False)
    msg = loader.handshake()
    assert msg[:2] == ["error", "FERRY_OWNER_FD='98' is not an open file descriptor"]
    assert loader.wait(5) == 1


def test_control_channel_closed_before_ready_exits_1(start, tmp_path):
    (tmp_path / "wsgi.py").write_text("import time\ntime.sleep(0.5)\n"
                                      "def application(e, s):\n    return []\n")
    loader = start(str(tmp_path), env={"FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS": "1",
                                       "FERRY_INSTANCE_DIR": str(tmp_path)}, handshake=False)
    loader.control.close()
    assert loader.wait(5) == 1
    assert "cannot send ready" in loader.stderr()
    assert glob.glob(str(tmp_path / "*.sock")) == []


def test_500_with_unread_body_ends_with_a_clean_eof(start):
    loader = start()
    with loader.connect() as sock:
        data = b"z" * (2 << 20)
        block = driver.encode_block([
            ("REQUEST_METHOD", "POST"), ("PATH_INFO", "/raise"), ("SERVER_NAME", "x"),
            ("SERVER_PORT", "1"), ("CONTENT_LENGTH", str(len(data))),
            ("FERRY_CONNECT_PASSWORD", loader.secret)])
        sender = threading.Thread(target=sock.sendall, args=(block + data,))
        sender.start()
        chunks = []
        while True:
            piece = sock.recv(65536)   # ConnectionResetError here would fail the test
            if not piece:
                break
            chunks.append(piece)
        sender.join(10)
    assert b"".join(chunks).startswith(b"Status: 500 Internal Server Error\r\n")
