"""Session protocol v2 (docs/protocol.md §4): the ready message, HELLO, many requests on one
connection, requests written ahead, bodies in frames, END's flags, ABORT and soft stops. Every
case runs for each loader whose ready offered "2"; for a v1-only loader it is skipped with that
reason (conftest.py). Request-level cases over v2 are in test_requests.py, faults of the core in
test_session_refusals.py."""

import hashlib
import os
import random
import signal
import socket
import time

import pytest

from . import harness

pytestmark = pytest.mark.v2_only


def assert_serves_a_new_session(w):
    assert w.alive(), "worker died; log:\n" + w.log()
    s = w.session()
    try:
        assert s.get("/pid").body == str(w.pid).encode()
    finally:
        s.close()


def warn_count(w):
    return w.log().count("[warn]")


def wait_for_more_warnings(w, before, timeout=2.0):
    deadline = time.monotonic() + timeout
    while warn_count(w) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    return warn_count(w) > before


# -- negotiation (§4.1) --------------------------------------------------------------------------

def test_ready_has_five_items_and_the_fifth_is_2(spawn):
    w = spawn()
    assert len(w.ready) == 5, w.ready
    assert w.ready == ["ready", str(w.pid), w.address, w.secret, "2"]


def test_a_v2_worker_still_serves_v1_connections(spawn):
    w = spawn()
    w.wire = 1
    assert w.get("/pid").body == str(w.pid).encode()
    s = w.session()
    assert s.get("/hello").body == b"hello world\n"
    s.close()
    assert w.get("/pid").body == str(w.pid).encode()
    assert w.request("POST", "/echo", body=b"v1 body").body == b"v1 body"


def test_a_v1_connection_waits_while_a_session_is_open(spawn):
    """One connection at a time (§4.1): a v1 request made while the session is open is served
    once the session closes."""
    w = spawn()
    s = w.session()
    assert s.get("/pid").body == str(w.pid).encode()
    v1 = w.open_socket()
    try:
        v1.sendall(harness.encode_block(w.pairs("GET", "/hello")))
        v1.shutdown(socket.SHUT_WR)
        time.sleep(0.5)
        assert s.get("/pid").body == str(w.pid).encode(), "the session stopped serving"
        v1.setblocking(False)
        try:
            early = v1.recv(1)
        except BlockingIOError:
            early = None
        assert early is None, "the worker answered a v1 connection while a session was open"
        v1.setblocking(True)
        s.close()
        v1.settimeout(10)
        assert harness.read_v1_response(v1).body == b"hello world\n"
    finally:
        v1.close()


# -- HELLO (§4.1) ----------------------------------------------------------------------------------

BAD_SECRETS = {
    "wrong": lambda secret: "0" * 32 if secret != "0" * 32 else "1" * 32,
    "one_char_off": lambda secret: secret[:-1] + ("0" if secret[-1] != "0" else "1"),
    "prefix": lambda secret: secret[:16],
    "longer": lambda secret: secret + "0",
    "empty": lambda secret: "",
}


@pytest.mark.parametrize("bad", sorted(BAD_SECRETS))
def test_wrong_hello_secret_is_closed_without_reply(spawn, bad):
    w = spawn()
    before = warn_count(w)
    s = w.session(secret=BAD_SECRETS[bad](w.secret))
    # A request right behind the HELLO must not be served either.
    s.send(s.request_frames(1, w.pairs("GET", "/hello")), tolerate_close=True)
    s.expect_closed(5)
    s.close()
    assert wait_for_more_warnings(w, before), "no [warn] line for the refused HELLO:\n" + w.log()
    assert_serves_a_new_session(w)


def test_a_req_without_hello_is_closed_without_reply(spawn):
    w = spawn()
    s = w.session(hello=False)
    s.send(s.request_frames(1, w.pairs("GET", "/hello")), tolerate_close=True)
    s.expect_closed(5)
    s.close()
    assert_serves_a_new_session(w)


@pytest.mark.parametrize("sent", ["nothing", "half_a_hello"])
def test_no_hello_within_the_header_timeout_is_closed(spawn, sent):
    w = spawn()
    s = w.session(hello=False)
    if sent == "half_a_hello":
        s.send(harness.encode_frame(harness.HELLO, 0, w.secret)[:20])
    took = s.expect_closed(harness.HELLO_TIMEOUT + 3)
    s.close()
    assert took >= 1.0, "closed after %.2f s: a core gets %g s to send HELLO" % (
        took, harness.HELLO_TIMEOUT)
    assert_serves_a_new_session(w)


def test_an_idle_session_outlives_the_header_timeout(spawn):
    """The session lasts for the life of the worker (§4.1): a pause between requests longer
    than the HELLO timeout does not end it."""
    w = spawn()
    s = w.session()
    assert s.get("/pid").body == str(w.pid).encode()
    time.sleep(harness.HELLO_TIMEOUT + 1)
    assert s.get("/pid").body == str(w.pid).encode()


# -- requests on one connection (§4.3) -------------------------------------------------------------

def test_requests_on_one_connection_have_ids_1_2_3_and_one_pid(spawn):
    w = spawn()
    s = w.session()
    for expected_id in range(1, 8):
        fid = s.send_request("GET", "/pid")
        assert fid == expected_id
        r = s.read_response(fid)
        assert (r.status, r.body, r.end_flags) == (200, str(w.pid).encode(), 0)
        assert [name for name, _ in r.frames][0] == "HEAD"


def test_requests_written_ahead_are_answered_in_order(spawn):
    """REQ n+1 is on the wire long before END n: answers come in order, and no frame of n+1
    comes before END n (read_response fails on any other id)."""
    w = spawn()
    s = w.session()
    body = os.urandom(200 * 1024)
    pairs = [w.pairs("GET", "/slow?ms=300"), w.pairs("POST", "/sha256", body_len=len(body)),
             w.pairs("GET", "/pid"), w.pairs("GET", "/hello")]
    wire = b"".join(s.request_frames(s.take_id(), p, body if i == 1 else None, split=16384)
                    for i, p in enumerate(pairs))
    s.send(wire)
    r1 = s.read_response(1)
    assert (r1.status, r1.body, r1.end_flags) == (200, b"slept 300\n", 0)
    r2 = s.read_response(2)
    assert r2.body.decode() == "%d %s\n" % (len(body), hashlib.sha256(body).hexdigest())
    assert s.read_response(3).body == str(w.pid).encode()
    assert s.read_response(4).body == b"hello world\n"
    assert s.quiet_for(0.2), "worker sent frames after the last END"


def test_body_in_many_small_body_frames_is_read_whole(spawn):
    w = spawn()
    s = w.session()
    body = os.urandom(10 * 1024 * 1024)
    rng = random.Random(20261127)
    sizes = []
    left = len(body)
    while left:
        n = min(left, rng.choice((1, 2, 7, 100, 1000, 4096, 8191)))
        sizes.append(n)
        left -= n
    r = s.request("POST", "/sha256", body=body, split=sizes, timeout=60)
    assert r.status == 200 and r.end_flags == 0
    assert r.body.decode() == "%d %s\n" % (len(body), hashlib.sha256(body).hexdigest())
    assert s.get("/pid").body == str(w.pid).encode()


def test_body_frames_of_the_largest_size_are_accepted(spawn):
    w = spawn()
    s = w.session()
    body = os.urandom(harness.FRAME_LIMITS[harness.BODY] + 1)
    r = s.request("POST", "/sha256", body=body, split=[len(body) - 1, 1])
    assert r.body.decode() == "%d %s\n" % (len(body), hashlib.sha256(body).hexdigest())


def test_empty_body_frames_do_not_end_the_body(spawn):
    w = spawn()
    s = w.session()
    body = os.urandom(3000)
    r = s.request("POST", "/sha256", body=body, split=[0, 1000, 0, 0, 1000, 1000, 0])
    assert r.body.decode() == "%d %s\n" % (len(body), hashlib.sha256(body).hexdigest())


def test_a_body_the_app_does_not_read_is_discarded(spawn):
    """The app answers without reading its 4 MiB body; the worker discards the rest up to EOB
    and then serves the request already written behind it. (GET with a body: APPS.md's
    /hello route is GET only, and no other route leaves its body unread.)"""
    w = spawn()
    s = w.session()
    body = os.urandom(4 * 1024 * 1024)
    wire = s.request_frames(s.take_id(), w.pairs("GET", "/hello", body_len=len(body)), body,
                            split=65536)
    wire += s.request_frames(s.take_id(), w.pairs("GET", "/pid"))
    s.send(wire)
    r1 = s.read_response(1)
    assert (r1.status, r1.body, r1.end_flags) == (200, b"hello world\n", 0)
    assert s.read_response(2).body == str(w.pid).encode()
    assert s.get("/hello").body == b"hello world\n"


def test_response_frames_carry_the_head_then_the_body(spawn):
    w = spawn()
    s = w.session()
    r = s.get("/stream?mib=3")
    names = [name for name, _ in r.frames]
    assert names[0] == "HEAD" and names[-1] == "END" and set(names[1:-1]) <= {"DATA"}, names
    assert len(r.body) == 3 * 1024 * 1024
    assert hashlib.sha256(r.body).hexdigest() == harness.stream_pattern_digest(len(r.body))
    assert r.header("Content-Length") is None


# -- END's flags (§4.2, §4.3) --------------------------------------------------------------------

def test_an_app_exception_after_the_head_ends_with_app_failed(spawn):
    w = spawn()
    s = w.session()
    r = s.get("/fail-after-head")
    assert r.status == 200
    assert r.body == b"first chunk\n"
    assert r.end_flags == harness.END_APP_FAILED, "END flags 0x%02x" % r.end_flags
    assert s.get("/pid").body == str(w.pid).encode(), "the session did not go on"


def test_an_app_exception_before_the_head_is_500_with_a_normal_end(spawn):
    w = spawn()
    s = w.session()
    r = s.get("/raise")
    assert r.status == 500
    assert r.end_flags == 0, "END flags 0x%02x after the worker's own 500" % r.end_flags
    assert s.get("/pid").body == str(w.pid).encode()


# -- ABORT (§4.3) ----------------------------------------------------------------------------------

def test_abort_during_an_endless_response_ends_it(spawn):
    w = spawn()
    s = w.session()
    fid = s.send_request("GET", "/endless")
    f = s.read_frame(10)
    assert f is not None and (f.type, f.id) == (harness.HEAD, fid), f
    got = 0
    while got < 2 * 1024 * 1024:
        f = s.read_frame(10)
        assert f is not None and (f.type, f.id) == (harness.DATA, fid), f
        got += len(f.payload)
    s.abort(fid)
    deadline = time.monotonic() + 5
    after_abort = 0
    while True:
        f = s.read_frame(deadline=deadline)
        assert f is not None, "connection ended instead of END(%d)" % fid
        assert f.id == fid and f.type in (harness.DATA, harness.END), f[:3]
        if f.type == harness.END:
            break
        after_abort += len(f.payload)
    # What was written before the worker saw ABORT still arrives; 64 MiB more means it did not.
    assert after_abort < 64 * 1024 * 1024, "%d bytes after ABORT" % after_abort
    assert s.get("/pid").body == str(w.pid).encode(), "the session did not go on after ABORT"
    assert s.get("/stream?mib=1").body == bytes(i % 251 for i in range(1 << 20))


def test_abort_before_the_app_writes_still_gets_an_end(spawn):
    w = spawn()
    s = w.session()
    fid = s.send_request("GET", "/slow?ms=500")
    time.sleep(0.1)
    s.abort(fid)
    s.read_response(fid, timeout=5)  # HEAD may or may not come; END must
    assert s.get("/pid").body == str(w.pid).encode()


# -- soft stop (§4.3 Closing) ----------------------------------------------------------------------

def test_sigusr1_during_a_slow_request_ends_with_closing_and_exit_0(spawn):
    w = spawn()
    s = w.session()
    fid = s.send_request("GET", "/slow?ms=1200")
    time.sleep(0.4)
    w.signal(signal.SIGUSR1)
    r = s.read_response(fid, timeout=10)
    assert (r.status, r.body) == (200, b"slept 1200\n")
    assert r.end_flags == harness.END_CLOSING, "END flags 0x%02x" % r.end_flags
    assert s.read_frame(5) is None, "worker sent a frame after END with CLOSING"
    assert w.wait(3) == 0, "exit status after SIGUSR1; log:\n" + w.log()


def test_sigusr1_does_not_start_a_request_written_ahead(spawn):
    """After END(n) with CLOSING the worker exits; REQ n+1, already written, gets no frame (the
    core queues it again, §4.3 Dispatch-ahead)."""
    w = spawn()
    s = w.session()
    s.send(s.request_frames(s.take_id(), w.pairs("GET", "/slow?ms=800"))
           + s.request_frames(s.take_id(), w.pairs("GET", "/pid")))
    time.sleep(0.3)
    w.signal(signal.SIGUSR1)
    r = s.read_response(1, timeout=10)
    assert (r.body, r.end_flags) == (b"slept 800\n", harness.END_CLOSING)
    assert s.read_frame(5) is None, "worker started request 2 after END with CLOSING"
    assert w.wait(3) == 0


def test_sigusr1_while_idle_in_a_session_exits_0_at_a_frame_boundary(spawn):
    w = spawn(fallback=True)
    s = w.session()
    assert s.get("/pid").body == str(w.pid).encode()
    w.signal(signal.SIGUSR1)
    assert w.wait(3) == 0, "exit status after SIGUSR1; log:\n" + w.log()
    assert s.read_frame(3) is None  # ends at a frame boundary; a cut frame raises FrameError
    assert not os.path.exists(w.socket_file())
