"""The WSGI loader with the _ferry extension, as a process driven the way `ferry worker` drives
it: boot and boot errors (the loader's Python part), then PEP 3333 as the extension implements
it in C (environ, wsgi.input, start_response and its checks, write(), the result, close(),
HEAD, file_wrapper, errors), over v1 and over v2, and the runtime's lifecycle as the loader
inherits it (signals, the owner pipe, SIGQUIT with Python tracebacks, the GIL let go while the
worker waits). Every test reaps its loader and leaves no socket file."""

import glob
import hashlib
import os
import re
import signal
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import wsgi_ext_driver as driver  # noqa: E402

MAIN = os.path.join(driver.APPS, "main")
CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "wsgi_ext_cases")


@pytest.fixture(autouse=True)
def no_bytecode(monkeypatch):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")


@pytest.fixture
def start(tmp_path):
    """Starts loaders; each is stopped and checked at the end of the test."""
    started = []

    def _start(app_dir=CASES, env=None, handshake=True):
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
        assert not re.search(r"Sanitizer|runtime error:", err), err
        if loader.address and loader.address.startswith("unix:"):
            assert not os.path.exists(loader.address[5:])


# --- boot -------------------------------------------------------------------------------------

def test_ready_offers_v2_with_pid_and_hex_secret(start):
    loader = start(MAIN, handshake=False)
    msg = loader.handshake()
    assert msg[0] == "ready" and len(msg) == 5 and msg[4] == "2"
    assert msg[1] == str(loader.pid)
    assert msg[2].startswith("abstract:")
    assert re.fullmatch(r"[0-9a-f]{32}", msg[3])
    assert loader.request("GET", "/hello")[2] == b"hello world\n"
    assert "app=wsgi passenger_wsgi.py" in loader.stderr()


def test_without_the_extension_one_line_names_the_interpreter_and_exit_1(start, tmp_path):
    loader = start(MAIN, env={"FERRY_EXT_DIR": str(tmp_path)}, handshake=False)
    assert loader.wait(5) == 1
    err = loader.stderr().strip().splitlines()
    assert len(err) == 1, err
    assert "/usr/bin/python3" in err[0] and sys.version.split()[0] in err[0]
    assert "cannot import the _ferry extension" in err[0] and str(tmp_path) in err[0]


def test_a_broken_extension_file_is_reported_the_same_way(start, tmp_path):
    (tmp_path / "python").mkdir()
    (tmp_path / "python" / "_ferry.abi3.so").write_bytes(b"not an ELF file")
    loader = start(MAIN, env={"FERRY_EXT_DIR": str(tmp_path)}, handshake=False)
    assert loader.wait(5) == 1
    err = loader.stderr()
    assert "cannot import the _ferry extension" in err and "ImportError" in err


def test_socket_file_mode_and_cleanup(start, tmp_path):
    loader = start(MAIN, env={"FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS": "1",
                              "FERRY_INSTANCE_DIR": str(tmp_path)})
    assert loader.address.startswith("unix:%s/" % tmp_path)
    path = loader.address[5:]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert loader.request("GET", "/hello")[2] == b"hello world\n"
    loader.close_owner()
    assert loader.wait(2) == 0
    assert not os.path.exists(path)


@pytest.mark.parametrize("app, summary", [
    ("syntax_error", "SyntaxError in passenger_wsgi.py line 3: invalid syntax"),
    ("no_entry_point", "passenger_wsgi.py defines neither `application` nor `app`"),
    ("missing_dependency", "No module named 'nonexistent_module'"),
])
def test_boot_failure_app_sends_error_and_exits_1(start, app, summary):
    loader = start(os.path.join(driver.APPS, app), handshake=False)
    msg = loader.handshake()
    assert msg[:2] == ["error", summary]
    assert len(msg) == 3
    if app != "no_entry_point":
        assert "Traceback" in msg[2]
    assert loader.wait(5) == 1
    err = loader.stderr()
    assert summary in err and "step=load_app" in err and "[error] wsgi: pid=" in err
    assert driver.read_array_message(loader.control) is None


@pytest.mark.parametrize("files, summary", [
    ({"wsgi.py": "application = 3\n"}, "wsgi.py defines `application` but it is not callable (int)"),
    ({"app.py": "1 / 0\n"}, "ZeroDivisionError while loading app.py: division by zero"),
    ({"app.py": "import sys\nsys.exit(3)\n"}, "SystemExit while loading app.py: 3"),
    ({"wsgi.py": "x = 1\n", "app.py": "1 / 0\n"}, "wsgi.py defines neither `application` nor `app`"),
    ({"passenger_wsgi.py": "import helper\n", "helper.py": "def f(:\n"},
     "SyntaxError in helper.py line 1: invalid syntax"),
    ({}, "no passenger_wsgi.py, wsgi.py or app.py in "),
])
def test_boot_error_summaries(start, tmp_path, files, summary):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    loader = start(str(tmp_path), handshake=False)
    msg = loader.handshake()
    assert msg[0] == "error" and msg[1].startswith(summary), msg
    assert loader.wait(5) == 1


HELLO_APP = ("def app(environ, start_response):\n"
             "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
             "    return [b'served by app']\n")
FACTORY = ("def make(greeting='factory', twice=False):\n"
           "    def wsgi(environ, start_response):\n"
           "        start_response('200 OK', [])\n"
           "        return [(greeting * (2 if twice else 1)).encode()]\n"
           "    return wsgi\n"
           "class Holder:\n"
           "    inner = staticmethod(make())\n"
           "not_callable = 3\n"
           "def broken():\n"
           "    raise RuntimeError('factory failed')\n")


def test_app_py_with_app_is_served(start, tmp_path):
    (tmp_path / "app.py").write_text(HELLO_APP)
    loader = start(str(tmp_path))
    assert loader.request("GET", "/")[2] == b"served by app"
    assert "app=wsgi app.py" in loader.stderr()


def test_application_wins_over_app(start, tmp_path):
    (tmp_path / "wsgi.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'app']\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'application']\n")
    loader = start(str(tmp_path))
    assert loader.request("GET", "/")[2] == b"application"


@pytest.mark.parametrize("spec, body", [
    ("pkg.web:make()", b"factory"),
    ("pkg.web:make('hi', twice=True)", b"hihi"),
    ("pkg.web:Holder.inner", b"factory"),
    ("pkg.web:application", b"plain"),
    ("pkg.web", b"plain"),
])
def test_app_spec_forms(start, tmp_path, spec, body):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "web.py").write_text(
        FACTORY + "application = make('plain')\n")
    loader = start(str(tmp_path), env={"FERRY_APP": spec})
    assert loader.request("GET", "/")[2] == body
    assert "app=wsgi %s" % spec in loader.stderr()


@pytest.mark.parametrize("spec, summary", [
    ("pkg.web:nothing", "--app pkg.web:nothing: pkg.web has no attribute `nothing`"),
    ("pkg.web:Holder.none", "--app pkg.web:Holder.none: pkg.web.Holder has no attribute `none`"),
    ("pkg.web:not_callable", "--app pkg.web:not_callable is not callable (int)"),
    ("pkg.web:broken()", "RuntimeError while calling the app factory broken(): factory failed"),
    ("pkg.web:make(x)", "--app pkg.web:make(x): the arguments of make must be Python literals"),
    ("pkg.web:make(**{})", "--app pkg.web:make(**{}): ** arguments are not supported"),
    ("pkg.web:1 + 2", "--app pkg.web:1 + 2: not MODULE, MODULE:NAME or MODULE:NAME(ARGS)"),
    (":make", "--app :make: not MODULE, MODULE:NAME or MODULE:NAME(ARGS)"),
    ("pkg.nope:app", "No module named 'pkg.nope'"),
])
def test_app_spec_errors(start, tmp_path, spec, summary):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "web.py").write_text(FACTORY)
    loader = start(str(tmp_path), env={"FERRY_APP": spec}, handshake=False)
    msg = loader.handshake()
    assert msg[:2] == ["error", summary], msg
    assert loader.wait(5) == 1


def test_startup_file(start, tmp_path):
    (tmp_path / "app.py").write_text("raise SystemExit('not this one')\n")
    (tmp_path / "serve_me.py").write_text(HELLO_APP)
    loader = start(str(tmp_path), env={"FERRY_STARTUP_FILE": str(tmp_path / "serve_me.py")})
    assert loader.request("GET", "/")[2] == b"served by app"
    assert "app=wsgi serve_me.py" in loader.stderr()


def test_a_missing_startup_file_is_a_boot_error(start, tmp_path):
    loader = start(str(tmp_path), env={"FERRY_STARTUP_FILE": str(tmp_path / "gone.py")},
                   handshake=False)
    msg = loader.handshake()
    assert msg[:2] == ["error", "the startup file %s is missing" % (tmp_path / "gone.py")]
    assert loader.wait(5) == 1


def test_relative_app_root_is_a_boot_error(start):
    loader = start("relative/dir", handshake=False)
    msg = loader.handshake()
    assert msg[0] == "error" and "absolute" in msg[1]
    assert loader.wait(5) == 1


def test_a_long_traceback_is_cut_to_fit_the_error_message(start, tmp_path):
    (tmp_path / "app.py").write_text("raise ValueError('x' * 100000)\n")
    loader = start(str(tmp_path), handshake=False)
    msg = loader.handshake()
    assert msg[0] == "error" and msg[1].startswith("ValueError while loading app.py: xxx")
    assert len(msg[1].encode()) <= 4096 and msg[1].endswith("[... truncated]")
    assert len(msg[2].encode()) <= 60000 and msg[2].endswith("[... truncated]")
    assert loader.wait(5) == 1


def test_owner_eof_during_a_hanging_load_exits(start, tmp_path):
    (tmp_path / "wsgi.py").write_text("import time\ntime.sleep(60)\n")
    loader = start(str(tmp_path), handshake=False)
    time.sleep(0.3)
    loader.close_owner()
    assert loader.wait(2) == 0


def test_sigterm_during_a_hanging_load_exits(start, tmp_path):
    (tmp_path / "wsgi.py").write_text("import time\ntime.sleep(60)\n")
    loader = start(str(tmp_path), handshake=False)
    time.sleep(0.3)
    loader.proc.send_signal(signal.SIGTERM)
    assert loader.wait(2) is not None


def test_control_fd_that_is_not_open_exits_1_with_a_log_line(start):
    loader = start(MAIN, env={"FERRY_CONTROL_FD": "97"}, handshake=False)
    assert loader.wait(5) == 1
    assert "FERRY_CONTROL_FD=97 must be open file descriptors" in loader.stderr()


def test_process_state_the_app_sees(start):
    loader = start(env={"FERRY_TEST_LOADER": driver.LOADER})
    # no handshake variables, the loader's directory not on sys.path, _ferry imported
    assert loader.request("GET", "/process")[2] == b"False False False True"


# --- the environ ------------------------------------------------------------------------------

def environ_of(loader, keys, headers=(), query=""):
    body = loader.request("GET", "/environ", query="keys=" + ",".join(keys) +
                          ("&" + query if query else ""), headers=headers)[2]
    return dict(line.split("=", 1) for line in body.decode().splitlines())


def test_environ_values_and_defaults(start):
    loader = start()
    env = environ_of(loader, ["REQUEST_METHOD", "SERVER_PORT", "HTTP_X_A", "CONTENT_TYPE",
                              "wsgi.url_scheme", "FERRY_CONNECT_PASSWORD", "CONTENT_LENGTH"],
                     headers=[("HTTP_X_A", "b c"), ("CONTENT_TYPE", "")])
    assert env == {"REQUEST_METHOD": "'GET'", "SERVER_PORT": "'3000'", "HTTP_X_A": "'b c'",
                   "CONTENT_TYPE": "''", "wsgi.url_scheme": "'http'",
                   "FERRY_CONNECT_PASSWORD": "'<absent>'", "CONTENT_LENGTH": "'<absent>'"}


@pytest.mark.parametrize("value, scheme", [("on", "https"), ("ON", "https"), ("1", "https"),
                                           ("yes", "https"), ("true", "https"),
                                           ("off", "http"), ("", "http")])
def test_url_scheme_follows_https(start, value, scheme):
    env = environ_of(start(), ["wsgi.url_scheme"], headers=[("HTTPS", value)])
    assert env["wsgi.url_scheme"] == repr(scheme)


def test_script_name_slash_becomes_empty_and_query_string_defaults(start):
    loader = start()
    pairs = [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/environ"),
             ("QUERY_STRING", "keys=SCRIPT_NAME"), ("SCRIPT_NAME", "/"),
             ("FERRY_CONNECT_PASSWORD", loader.secret)]
    assert driver.parse_response(loader.raw(driver.encode_block(pairs)))[2] == b"SCRIPT_NAME=''"
    # without QUERY_STRING and SCRIPT_NAME the keys exist, empty (the route reads keys from
    # QUERY_STRING, so it cannot be absent here: /types checks it is a str like every value)
    pairs = [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/types"),
             ("FERRY_CONNECT_PASSWORD", loader.secret)]
    assert driver.parse_response(loader.raw(driver.encode_block(pairs)))[2] == \
        b"(1, 0) True False True False True"


def test_the_first_of_a_repeated_name_wins(start):
    loader = start()
    env = environ_of(loader, ["HTTP_X_R"], headers=[("HTTP_X_R", "first"), ("HTTP_X_R", "2")])
    assert env["HTTP_X_R"] == "'first'"


def test_path_info_bytes_reach_the_app_as_latin1_str(start):
    # "/café" in UTF-8 on the wire: PEP 3333 native strings decode each byte as Latin-1.
    assert start().request("GET", "/caf\xc3\xa9")[2] == ascii("/caf\xc3\xa9").encode("ascii")


# --- wsgi.input -------------------------------------------------------------------------------

BODY = b"line one\nline two\nthree\n\nlast without newline"


@pytest.mark.parametrize("ops, expected", [
    ("R", [BODY]),
    ("N", [BODY]),
    ("r5,r5,R", [b"line ", b"one\nl", BODY[10:]]),
    ("r0,r1000,R", [b"", BODY, b""]),
    ("l,l,l,l,l,l", [b"line one\n", b"line two\n", b"three\n", b"\n",
                     b"last without newline", b""]),
    ("l3,l,l0", [b"lin", b"e one\n", b""]),
    ("L", [[b"line one\n", b"line two\n", b"three\n", b"\n", b"last without newline"]]),
    ("L10", [[b"line one\n", b"line two\n"]]),
    ("r4,i", [b"line", [b" one\n", b"line two\n", b"three\n", b"\n",
                        b"last without newline"]]),
    ("l,r3,l,R", [b"line one\n", b"lin", b"e two\n", BODY[18:]]),
])
def test_input_operations(start, ops, expected):
    loader = start()
    for wire in ("v1", "v2"):
        if wire == "v1":
            body = loader.request("POST", "/input", query="ops=" + ops, body=BODY)[2]
        else:
            session = loader.session()
            body = session.request("POST", "/input", query="ops=" + ops, body=BODY)[2]
            session.close()
        assert body.decode().split("\n") == [repr(x) for x in expected], wire


def test_input_never_reads_past_content_length(start):
    loader = start()
    pairs = driver.request_pairs("POST", "/input", "ops=R,R") + [
        ("CONTENT_LENGTH", "5"), ("FERRY_CONNECT_PASSWORD", loader.secret)]
    reply = loader.raw(driver.encode_block(pairs) + b"12345" + b"beyond the body")
    assert driver.parse_response(reply)[2] == b"b'12345'\nb''"


def test_large_body_in_pieces_over_both_wires(start):
    loader = start(MAIN)
    data = os.urandom(3 * 65536 + 17)
    want = ("%d %s\n" % (len(data), hashlib.sha256(data).hexdigest())).encode()
    assert loader.request("POST", "/sha256", body=data)[2] == want
    session = loader.session()
    assert session.request("POST", "/sha256", body=data)[2] == want
    session.close()


def test_input_of_a_finished_request_raises(start, tmp_path):
    (tmp_path / "app.py").write_text(
        "kept = []\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    if kept:\n"
        "        try:\n"
        "            kept[0].read()\n"
        "        except ValueError as exc:\n"
        "            return [str(exc).encode()]\n"
        "    kept.append(environ['wsgi.input'])\n"
        "    return [b'kept']\n")
    loader = start(str(tmp_path))
    assert loader.request("GET", "/")[2] == b"kept"
    assert loader.request("GET", "/")[2] == b"wsgi.input of a request that is over"


# --- start_response ---------------------------------------------------------------------------

@pytest.mark.parametrize("case, message", [
    ("status-bytes", "TypeError: WSGI status must be str, got 'bytes'"),
    ("status-short", "ValueError: invalid WSGI status '200' (want three digits, a space and a "
                     "reason)"),
    ("status-letters", "ValueError: invalid WSGI status '2x0 OK' (want three digits, a space "
                       "and a reason)"),
    ("status-zero", "ValueError: invalid WSGI status '099 Low' (want three digits, a space and "
                    "a reason)"),
    ("status-newline", "ValueError: invalid WSGI status '200 OK\\r\\nX: y' (want three digits, "
                       "a space and a reason)"),
    ("status-euro", "ValueError: WSGI status '200 \u20ac' is not Latin-1 (PEP 3333 wants "
                    "latin-1 native strings)"),
    ("headers-tuple", "TypeError: WSGI response headers must be a list, got 'tuple'"),
    ("header-list", "TypeError: WSGI response header ['A', 'b'] is not a (name, value) tuple"),
    ("header-triple", "TypeError: WSGI response header ('A', 'b', 'c') is not a (name, value) "
                      "tuple"),
    ("header-bytes", "TypeError: WSGI response header (b'A', 'b'): name and value must be str"),
    ("header-name", "ValueError: invalid response header name 'A B'"),
    ("header-empty-name", "ValueError: invalid response header name ''"),
    ("header-crlf", "ValueError: response header X-A has a control character in its value "
                    "'b\\r\\nInjected: 1'"),
    ("header-nul", "ValueError: response header X-A has a control character in its value "
                   "'b\\x00c'"),
    ("header-euro", "ValueError: response header X-A is not Latin-1 (PEP 3333 wants latin-1 "
                    "native strings)"),
])
def test_start_response_checks_its_arguments(start, case, message):
    status, _h, body = start().request("GET", "/bad-call", query="case=" + case)
    assert status == "Status: 200 OK"
    assert body.decode("utf-8") == message


def test_a_second_start_response_without_exc_info_raises(start):
    assert start().request("GET", "/twice")[2] == \
        b"start_response called a second time without exc_info"


def test_exc_info_replaces_status_before_the_head(start):
    status, _h, body = start().request("GET", "/exc-info")
    assert status == "Status: 503 Busy" and body == b"replaced"


def test_exc_info_after_the_head_reraises_and_cuts_the_response(start):
    loader = start()
    status, _h, body = loader.request("GET", "/exc-info-late")
    assert status == "Status: 200 OK" and body == b"sent"
    assert "KeyError: 'late'" in loader.stderr()
    session = loader.session()
    _s, _h, body, flags = session.request("GET", "/exc-info-late")
    assert body == b"sent" and flags & driver.import_ferry_ext().END_APP_FAILED
    session.close()


def test_the_apps_reason_phrase_is_forwarded(start):
    status, _h, body = start().request("GET", "/reason")
    assert status == "Status: 299 Fine Thanks \xe9" and body == b"reason"


def test_write_callable_takes_bytes_like_pieces_then_the_iterable(start):
    assert start().request("GET", "/write")[2] == \
        b"via write, bytearray, memoryview, then iterable"


def test_generator_app_head_gets_its_headers(start):
    loader = start()
    assert loader.request("HEAD", "/lazy") == ("Status: 200 OK", [
        ("Content-Type", "text/plain"), ("Content-Length", "4")], b"")
    assert loader.request("GET", "/lazy")[2] == b"lazy"


def test_file_wrapper_iterates_in_blocks_and_closes_the_file(start):
    loader = start()
    with open(os.path.join(CASES, "passenger_wsgi.py"), "rb") as f:
        assert loader.request("GET", "/file-wrapper")[2] == f.read()
    assert loader.request("GET", "/file-closed")[2] == b"1 True"


# --- errors -----------------------------------------------------------------------------------

def test_raise_gives_generic_500_and_a_log_line_with_the_traceback(start):
    loader = start()
    status, headers, body = loader.request("GET", "/raise")
    assert status == "Status: 500 Internal Server Error"
    assert body == b"Internal Server Error\n"
    assert ("Content-Type", "text/plain; charset=utf-8") in headers
    assert ("Content-Length", str(len(body))) in headers
    assert loader.request("GET", "/hello")[2] == b"hello world\n"
    err = loader.stderr()
    assert re.search(r"\[error\] wsgi: pid=%d method=GET uri=/raise: exception in the "
                     r"application: answering 500\n    Traceback \(most recent call last\):\n"
                     % loader.pid, err), err
    assert "    RuntimeError: raised on purpose by /raise" in err


def test_raise_gives_the_traceback_in_development(start):
    loader = start(env={"FERRY_ENV": "development"})
    status, _h, body = loader.request("GET", "/raise")
    assert status == "Status: 500 Internal Server Error"
    assert body.startswith(b"Internal Server Error\n\nTraceback (most recent call last):\n")
    assert b"raised on purpose by /raise" in body


def test_raise_on_head_sends_500_without_body(start):
    status, _h, body = start().request("HEAD", "/raise")
    assert status == "Status: 500 Internal Server Error" and body == b""


@pytest.mark.parametrize("path", ["/inject", "/str-body", "/no-start", "/close-raises", "/exit"])
def test_bad_app_behaviour_gives_500_and_worker_goes_on(start, path):
    loader = start()
    status, headers, body = loader.request("GET", path)
    assert status == "Status: 500 Internal Server Error", (status, headers, body)
    assert not any(k == "Injected" for k, _v in headers)
    assert loader.request("GET", "/hello")[0] == "Status: 200 OK"


def test_exception_after_head_cuts_the_response_and_calls_close(start):
    loader = start()
    before = int(loader.request("GET", "/closed")[2])
    status, _h, body = loader.request("GET", "/mid-body")
    assert status == "Status: 200 OK" and body == b"first"
    session = loader.session()
    _s, _h, body, flags = session.request("GET", "/mid-body")
    assert body == b"first" and flags & driver.import_ferry_ext().END_APP_FAILED
    _s, _h, body, flags = session.request("GET", "/closed")
    assert int(body) == before + 2 and flags == 0
    session.close()
    assert "after the head was sent" in loader.stderr()


def test_errors_over_v2_end_the_request_not_the_session(start):
    loader = start()
    session = loader.session()
    status, _h, body, flags = session.request("GET", "/raise")
    assert status == "Status: 500 Internal Server Error" and flags == 0
    assert session.request("GET", "/hello")[2] == b"hello world\n"
    session.close()


# --- the runtime underneath: lifecycle, threads, signals ---------------------------------------

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


def test_app_threads_run_while_the_worker_waits_for_requests(start):
    loader = start()
    assert loader.request("GET", "/ticker")[2] == b"started"
    first = int(loader.request("GET", "/ticks")[2])
    time.sleep(0.5)   # the worker is idle in the runtime: the GIL must be free
    assert int(loader.request("GET", "/ticks")[2]) >= first + 10


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


def test_sigusr1_during_a_request_finishes_it_then_exits_0(start):
    loader = start()
    thread, result = slow_request_in_background(loader, 800)
    for _ in range(50):
        loader.proc.send_signal(signal.SIGUSR1)
    thread.join(5)
    assert result["response"][2] == b"slept"
    assert loader.wait(2) == 0
    assert re.search(r"wsgi: pid=%d app=\S+: stopped after 1 requests" % loader.pid,
                     loader.stderr())


def test_sighup_and_sigint_are_ignored(start):
    loader = start()
    loader.proc.send_signal(signal.SIGHUP)
    loader.proc.send_signal(signal.SIGINT)
    assert loader.request("GET", "/hello")[2] == b"hello world\n"
    assert loader.proc.poll() is None


def test_sigquit_writes_every_python_thread_then_the_runtime_line(start):
    loader = start()
    loader.request("GET", "/ticker")
    thread, result = slow_request_in_background(loader, 600)
    loader.proc.send_signal(signal.SIGQUIT)
    thread.join(5)
    assert result["response"][2] == b"slept"
    err = loader.stderr()
    assert "Current thread" in err and 'passenger_wsgi.py", line' in err
    assert "in application" in err and "in tick" in err   # the request's stack and the ticker's
    assert "SIGQUIT: pid=%d busy=/slow" % loader.pid in err
    assert loader.proc.poll() is None
