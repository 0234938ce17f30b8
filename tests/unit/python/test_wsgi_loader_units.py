"""In-process unit tests of loaders/python/wsgi_loader.py: wire formats, wsgi.input, the
response side, the accept loop's error rule and app loading. One behaviour per test."""

import errno
import os
import socket
import struct
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import wsgi_loader_driver as driver  # noqa: E402

wl = driver.load_module()


# --- array messages ---------------------------------------------------------------------------

def test_array_message_is_u16_length_then_nul_terminated_items():
    assert wl.encode_array_message(["ready", "42", "", "x"]) == b"\x00\x0cready\x0042\x00\x00x\x00"


def test_array_message_refuses_nul_inside_an_item():
    with pytest.raises(ValueError):
        wl.encode_array_message(["error", "a\0b"])


def test_array_message_refuses_no_items():
    with pytest.raises(ValueError):
        wl.encode_array_message([])


def test_array_message_refuses_payload_past_65535_bytes():
    wl.encode_array_message(["x" * 65534])
    with pytest.raises(ValueError):
        wl.encode_array_message(["x" * 65535])


def test_fit_message_text_escapes_nul_and_truncates_to_budget():
    out = wl.fit_message_text("a\0" + "é" * 1000, 100)
    assert "\0" not in out and out.startswith("a\\0")
    assert len(out.encode("utf-8")) <= 100
    assert out.endswith("[... truncated]")


# --- request block ----------------------------------------------------------------------------

def test_request_block_parses_pairs_with_empty_values():
    assert wl.parse_request_block(b"A\0b\0QUERY_STRING\0\0") == [("A", "b"),
                                                                ("QUERY_STRING", "")]


def test_request_block_empty_is_valid_and_has_no_pairs():
    assert wl.parse_request_block(b"") == []


def test_request_block_refuses_missing_final_nul():
    with pytest.raises(wl.ProtocolError):
        wl.parse_request_block(b"A\0b")


def test_request_block_refuses_odd_item_count():
    with pytest.raises(wl.ProtocolError):
        wl.parse_request_block(b"A\0b\0C\0")


def test_request_block_refuses_empty_name():
    with pytest.raises(wl.ProtocolError):
        wl.parse_request_block(b"\0b\0")


def test_request_block_refuses_more_than_128_kib():
    with pytest.raises(wl.ProtocolError):
        wl.parse_request_block(b"A\0" + b"b" * 131072 + b"\0")


# --- response head ----------------------------------------------------------------------------

def test_response_head_is_status_line_headers_in_order_and_empty_line():
    head = wl.encode_response_head("200 OK", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    assert head == b"Status: 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"


@pytest.mark.parametrize("status", ["200", "2000 OK", "abc OK", "200 OK\r\nX: y", "099 Low",
                                    b"200 OK"])
def test_check_status_refuses_malformed_status(status):
    with pytest.raises((TypeError, ValueError)):
        wl.check_status(status)


BAD_HEADERS = [
    [("X-A", "b\r\nInjected: yes")], [("X A", "b")], [("", "b")], [("X-A", "\0")],
    [("X-A", "snowman ☃")], [("X-A",)], [["X-A", "b"]], (("X-A", "b"),), [("X-A", 1)],
    [("X-A\n", "b")], [("X-A:", "b")], [("X-A", "b\n")], [("X-A", "ok"), ("Y", "b\rc")],
    [(1, "b")], [("X-A", "b", "c")]]


@pytest.mark.parametrize("headers", BAD_HEADERS)
def test_check_headers_refuses_injection_and_bad_types(headers):
    with pytest.raises((TypeError, ValueError)):
        wl.check_headers(headers)


@pytest.mark.parametrize("headers", BAD_HEADERS)
def test_checked_response_head_refuses_what_check_headers_refuses(headers):
    with pytest.raises((TypeError, ValueError)):
        wl.checked_response_head("200 OK", headers)


@pytest.mark.parametrize("headers", [
    [], [("X-A", "a\tb é")], [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-E", "")]])
def test_checked_response_head_equals_the_checked_encoding(headers):
    assert (wl.checked_response_head("201 Created", headers)
            == wl.encode_response_head("201 Created", wl.check_headers(headers)))


def test_check_status_refuses_a_trailing_newline():
    with pytest.raises(ValueError):
        wl.check_status("200 OK\n")


def test_check_headers_accepts_tab_and_latin1_values():
    assert wl.check_headers([("X-A", "a\tb é")]) == [("X-A", "a\tb é")]


# --- wsgi.input -------------------------------------------------------------------------------

@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def make_body(pair, data, length=None, extra=b""):
    reader, writer = pair
    writer.sendall(data + extra)
    writer.shutdown(socket.SHUT_WR)
    return wl.RequestBody(reader, len(data) if length is None else length)


def test_input_read_without_size_returns_exactly_content_length(pair):
    body = make_body(pair, b"hello", extra=b"NEXT")
    assert body.read() == b"hello"
    assert body.read() == b""


def test_input_read_with_size_returns_full_pieces_then_rest(pair):
    body = make_body(pair, b"abcdefg")
    assert body.read(3) == b"abc"
    assert body.read(3) == b"def"
    assert body.read(3) == b"g"
    assert body.read(3) == b""


def test_input_readline_splits_lines_and_honours_size(pair):
    body = make_body(pair, b"one\ntwo\nthree")
    assert body.readline() == b"one\n"
    assert body.readline(2) == b"tw"
    assert body.readline() == b"o\n"
    assert body.readline() == b"three"
    assert body.readline() == b""


def test_input_readlines_and_iteration_yield_all_lines(pair):
    body = make_body(pair, b"a\nb\nc")
    assert body.readlines() == [b"a\n", b"b\n", b"c"]
    reader, writer = socket.socketpair()
    try:
        writer.sendall(b"x\ny\n")
        assert list(wl.RequestBody(reader, 4)) == [b"x\n", b"y\n"]
    finally:
        reader.close()
        writer.close()


def test_input_readlines_stops_after_hint(pair):
    body = make_body(pair, b"a\nb\nc\n")
    assert body.readlines(1) == [b"a\n"]


def test_input_is_lazy_nothing_read_until_asked(pair):
    reader, writer = pair
    writer.sendall(b"abc")
    body = wl.RequestBody(reader, 3)
    assert body.unread_in_socket == 3
    assert reader.recv(3, socket.MSG_PEEK) == b"abc"


def test_input_cut_short_by_peer_returns_what_arrived(pair):
    body = make_body(pair, b"abc", length=10)
    assert body.read() == b"abc"
    assert body.truncated


def test_input_read_times_out_when_the_peer_sends_nothing(pair):
    body = wl.RequestBody(pair[0], 5, timeout=0.05)
    with pytest.raises(TimeoutError):
        body.read(5)


# --- the response side ------------------------------------------------------------------------

def recv_all(sock):
    sock.settimeout(5)
    chunks = []
    while True:
        piece = sock.recv(65536)
        if not piece:
            return b"".join(chunks)
        chunks.append(piece)


def test_response_sends_head_with_first_non_empty_piece(pair):
    resp = wl.Response(pair[0], is_head=False)
    resp.start_response("200 OK", [("Content-Type", "text/plain")])
    resp.send_piece(b"")
    assert not resp.head_sent
    resp.send_piece(b"hi")
    assert resp.head_sent
    pair[0].close()
    assert recv_all(pair[1]) == b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhi"


def test_response_for_head_request_sends_no_body(pair):
    resp = wl.Response(pair[0], is_head=True)
    resp.start_response("200 OK", [("Content-Length", "2")])
    resp.send_piece(b"hi")
    resp.write(b"more")
    pair[0].close()
    assert recv_all(pair[1]) == b"Status: 200 OK\r\nContent-Length: 2\r\n\r\n"


def test_start_response_twice_without_exc_info_is_an_error(pair):
    resp = wl.Response(pair[0], is_head=False)
    resp.start_response("200 OK", [])
    with pytest.raises(RuntimeError):
        resp.start_response("500 Oops", [])


def test_start_response_with_exc_info_replaces_status_before_head_sent(pair):
    resp = wl.Response(pair[0], is_head=False)
    resp.start_response("200 OK", [])
    try:
        raise KeyError("x")
    except KeyError:
        resp.start_response("503 Busy", [("X-A", "b")], sys.exc_info())
    assert resp.status == "503 Busy" and resp.headers == [("X-A", "b")]


def test_start_response_with_exc_info_reraises_after_head_sent(pair):
    resp = wl.Response(pair[0], is_head=False)
    resp.start_response("200 OK", [])
    resp.write(b"x")
    try:
        raise KeyError("original")
    except KeyError:
        info = sys.exc_info()
    with pytest.raises(KeyError, match="original"):
        resp.start_response("500 Oops", [], info)


def test_write_before_start_response_is_an_error(pair):
    with pytest.raises(RuntimeError):
        wl.Response(pair[0], is_head=False).write(b"x")


def test_body_piece_of_type_str_is_refused(pair):
    resp = wl.Response(pair[0], is_head=False)
    resp.start_response("200 OK", [])
    with pytest.raises(TypeError):
        resp.send_piece("text")


def test_finish_without_start_response_is_an_error(pair):
    with pytest.raises(RuntimeError):
        wl.Response(pair[0], is_head=False).finish()


def test_head_past_128_kib_is_refused(pair):
    resp = wl.Response(pair[0], is_head=False)
    resp.start_response("200 OK", [("X-Big", "a" * 131072)])
    with pytest.raises(ValueError):
        resp.finish()


def test_send_to_closed_peer_raises_client_gone(pair):
    resp = wl.Response(pair[0], is_head=False)
    resp.start_response("200 OK", [])
    pair[1].close()
    with pytest.raises(wl.ClientGone):
        resp.write(b"x" * 1000000)


# --- the accept loop: errors outside a request ------------------------------------------------

class FailingListener:
    """A non-blocking listening socket whose accept() always fails (EMFILE), or finds nothing
    waiting (EAGAIN) once <readable> is False; poll() sees it as <readable>."""

    def __init__(self):
        self.r, self.w = os.pipe()
        os.write(self.w, b"x")
        self.accepts = 0
        self.readable = True
        self.blocking = True

    def fileno(self):
        return self.r

    def setblocking(self, flag):
        self.blocking = flag

    def accept(self):
        assert not self.blocking, "the loop accepts on a non-blocking listener"
        self.accepts += 1
        if not self.readable:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        raise OSError(errno.EMFILE, "Too many open files")

    def close(self):
        os.close(self.r)
        os.close(self.w)


def test_loop_exits_on_second_error_within_10_seconds(capfd):
    listener = FailingListener()
    try:
        times = iter([100.0, 105.0])
        worker = wl.Worker(lambda e, s: [], listener, "0" * 32, clock=lambda: next(times))
        assert worker.serve() == 1
        assert listener.accepts == 2
    finally:
        listener.close()
    err = capfd.readouterr().err
    assert "[error] wsgi:" in err and "retrying" in err and "exiting" in err


def test_loop_retries_when_errors_are_more_than_10_seconds_apart():
    listener = FailingListener()
    try:
        times = iter([100.0, 111.0, 122.0, 125.0])
        worker = wl.Worker(lambda e, s: [], listener, "0" * 32, clock=lambda: next(times))
        assert worker.serve() == 1
        assert listener.accepts == 4
    finally:
        listener.close()


def test_loop_returns_0_on_soft_stop_from_wake_pipe():
    listener = FailingListener()
    wake_r, wake_w = os.pipe()
    try:
        os.write(wake_w, b"U")
        worker = wl.Worker(lambda e, s: [], listener, "0" * 32)
        worker.wake_fd = wake_r
        os.read(listener.r, 1)   # not readable: only the wake pipe is
        listener.readable = False
        assert worker.serve() == 0
        assert listener.accepts == 1   # found nothing waiting, polled, saw the wake pipe
    finally:
        listener.close()
        os.close(wake_r)
        os.close(wake_w)


# --- loading the app --------------------------------------------------------------------------

@pytest.fixture
def isolated(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    monkeypatch.chdir(os.getcwd())


def write_app(tmp_path, name, source):
    (tmp_path / name).write_text(source)
    return str(tmp_path)


def test_load_prefers_passenger_wsgi_then_wsgi_then_app(tmp_path, isolated):
    write_app(tmp_path, "app.py", "application = 'app'.upper\n")
    write_app(tmp_path, "wsgi.py", "application = 'wsgi'.upper\n")
    assert wl.load_application(str(tmp_path))() == "WSGI"
    write_app(tmp_path, "passenger_wsgi.py", "application = 'passenger'.upper\n")
    assert wl.load_application(str(tmp_path))() == "PASSENGER"


def test_load_puts_app_root_on_sys_path_and_cwd(tmp_path, isolated):
    write_app(tmp_path, "helper_mod_for_test.py", "VALUE = 7\n")
    write_app(tmp_path, "app.py", "import os, helper_mod_for_test\n"
                                  "CWD = os.getcwd()\n"
                                  "application = lambda e, s: helper_mod_for_test.VALUE\n")
    assert wl.load_application(str(tmp_path))(None, None) == 7
    assert os.getcwd() == str(tmp_path)


def test_load_without_entry_file_names_the_files(tmp_path, isolated):
    with pytest.raises(wl.BootError, match="no passenger_wsgi.py, wsgi.py or app.py in"):
        wl.load_application(str(tmp_path))


def test_load_of_non_callable_application_is_refused(tmp_path, isolated):
    write_app(tmp_path, "wsgi.py", "application = 42\n")
    with pytest.raises(wl.BootError, match="wsgi.py defines `application` but it is not callable"):
        wl.load_application(str(tmp_path))


def test_load_reports_exception_type_file_and_message(tmp_path, isolated):
    write_app(tmp_path, "passenger_wsgi.py", "x = 1 / 0\n")
    with pytest.raises(wl.BootError) as info:
        wl.load_application(str(tmp_path))
    assert info.value.summary == \
        "ZeroDivisionError while loading passenger_wsgi.py: division by zero"
    assert "Traceback" in info.value.details


def test_load_reports_syntax_error_in_an_imported_module_by_its_file(tmp_path, isolated):
    write_app(tmp_path, "broken_mod_for_test.py", "\ndef f(:\n")
    write_app(tmp_path, "passenger_wsgi.py", "import broken_mod_for_test\n")
    with pytest.raises(wl.BootError, match=r"^SyntaxError in broken_mod_for_test.py line 2: "):
        wl.load_application(str(tmp_path))


def test_load_reports_sys_exit_during_import(tmp_path, isolated):
    write_app(tmp_path, "app.py", "import sys\nsys.exit(3)\n")
    with pytest.raises(wl.BootError, match="SystemExit while loading app.py: 3"):
        wl.load_application(str(tmp_path))


def test_log_line_has_ferry_format():
    line = wl.format_log_line("warn", "something happened", [("uri", "/a b"), ("n", 3)],
                              now=0.5)
    assert line == '1970-01-01T00:00:00.500Z [warn] wsgi: pid=%d uri="/a b" n=3: ' \
                   'something happened\n' % os.getpid()


def test_struct_prefix_matches_driver_encoding():
    block = driver.encode_block([("A", "b")])
    assert struct.unpack(">I", block[:4])[0] == len(block) - 4


# --- reading the request block -----------------------------------------------------------------

def test_request_block_that_stops_arriving_is_refused_after_the_header_timeout(pair, monkeypatch):
    monkeypatch.setattr(wl, "HEADER_TIMEOUT_S", 0.2)
    server, client = pair
    client.sendall(b"\0\0")
    worker = wl.Worker(lambda environ, start_response: [], None, "pw")
    with pytest.raises(wl.RequestRefused, match="timed out reading the header size"):
        worker.read_request(server)


def test_request_block_that_trickles_is_refused_when_the_header_timeout_is_spent(pair,
                                                                                 monkeypatch):
    monkeypatch.setattr(wl, "HEADER_TIMEOUT_S", 0.5)
    server, client = pair
    block = driver.encode_block([("A", "b")])
    client.sendall(block[:3])
    worker = wl.Worker(lambda environ, start_response: [], None, "pw")
    sent = 3
    t0 = time.monotonic()

    def trickle():
        nonlocal sent
        while sent < len(block):   # one byte every 0.2 s: each read is quick, the whole is not
            time.sleep(0.2)
            try:
                client.sendall(block[sent:sent + 1])
            except OSError:
                return
            sent += 1

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    with pytest.raises(wl.RequestRefused, match="timed out reading the header"):
        worker.read_request(server)
    assert time.monotonic() - t0 < 1.5
    server.close()
    feeder.join(5)


def test_request_block_password_is_checked_and_removed():
    worker = wl.Worker(lambda environ, start_response: [], None, "pw")
    for password, ok in ((b"pw", True), (b"px", False)):
        server, client = socket.socketpair()
        try:
            block = b"A\0b\0FERRY_CONNECT_PASSWORD\0" + password + b"\0"
            client.sendall(struct.pack(">I", len(block)) + block)
            if ok:
                assert worker.read_request(server) == ([("A", "b")], b"")
            else:
                with pytest.raises(wl.RequestRefused, match="wrong"):
                    worker.read_request(server)
        finally:
            server.close()
            client.close()


def test_body_bytes_that_come_with_the_block_are_read_first(pair):
    server, client = pair
    block = b"CONTENT_LENGTH\0" + b"10\0FERRY_CONNECT_PASSWORD\0pw\0"
    client.sendall(struct.pack(">I", len(block)) + block + b"hello")
    worker = wl.Worker(lambda environ, start_response: [], None, "pw")
    pairs, start = worker.read_request(server)
    assert pairs == [("CONTENT_LENGTH", "10")] and start == b"hello"
    body = wl.RequestBody(server, 10, prefix=start)
    assert body.unread_in_socket == 5
    assert body.read(3) == b"hel"
    client.sendall(b" world")
    assert body.read() == b"lo worl"
    assert body.unread_in_socket == 0


def test_block_arriving_in_pieces_is_put_together(pair):
    server, client = pair
    block = b"A\0b\0FERRY_CONNECT_PASSWORD\0pw\0"
    wire = struct.pack(">I", len(block)) + block + b"xy"
    worker = wl.Worker(lambda environ, start_response: [], None, "pw")
    done = []
    reader = threading.Thread(target=lambda: done.append(worker.read_request(server)))
    reader.start()
    for i in range(len(wire)):
        client.sendall(wire[i:i + 1])
        time.sleep(0.002)
    reader.join(5)
    # what came with the block's last piece, if anything, is the start of the body
    assert len(done) == 1 and done[0][0] == [("A", "b")] and b"xy".startswith(done[0][1])


def test_header_block_cut_short_says_how_much_came(pair):
    server, client = pair
    block = b"A\0b\0FERRY_CONNECT_PASSWORD\0pw\0"
    client.sendall(struct.pack(">I", len(block)) + block[:5])
    client.shutdown(socket.SHUT_WR)
    worker = wl.Worker(lambda environ, start_response: [], None, "pw")
    with pytest.raises(wl.RequestRefused,
                       match=r"closed inside the header block \(5 of %d bytes\)" % len(block)):
        worker.read_request(server)


def test_environ_first_value_of_a_repeated_name_wins():
    worker = wl.Worker(lambda environ, start_response: [], None, "pw")
    env = worker.build_environ([("A", "1"), ("SCRIPT_NAME", "/"), ("A", "2")], None)
    assert env["A"] == "1" and env["SCRIPT_NAME"] == "" and env["QUERY_STRING"] == ""
