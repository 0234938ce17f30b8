"""Faults of the core on a v2 session (docs/protocol.md §4.2, §4.4): the worker logs what came,
closes the connection without sending a frame, and then serves a new connection. A fault that
the 12 header bytes show is refused from the header alone: the payload is never sent, and the
connection must close long before any timeout. Every case runs for each loader whose ready
offered "2" and is skipped, with that reason, for a v1-only one."""

import hashlib
import os
import socket
import struct
import time

import pytest

from . import harness
from .harness import ABORT, BODY, DATA, END, EOB, HEAD, HELLO, REQ, encode_frame

pytestmark = pytest.mark.v2_only

# Refused from the header alone, so well before the 5 s the worker gives a slow peer.
HEADER_ALONE_S = 3.0
# Refused once the whole fault has arrived.
REFUSED_S = 5.0


def assert_serves_a_new_session(w):
    assert w.alive(), "worker died; log:\n" + w.log()
    s = w.session()
    try:
        assert s.get("/pid").body == str(w.pid).encode()
    finally:
        s.close()


def refused(w, data, within, shut=False, session=None):
    """Sends <data> after HELLO (on <session> when given, else a new one), optionally shuts the
    write side down, and requires the connection to close within <within> seconds with no byte
    sent back, a log line for it, and a new session served afterwards."""
    s = session or w.session()
    log_before = len(w.log())
    s.send(data, tolerate_close=True)
    if shut:
        s.sock.shutdown(socket.SHUT_WR)
    s.expect_closed(within)
    s.close()
    deadline = time.monotonic() + 2
    while len(w.log()) == log_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(w.log()) > log_before, "the worker logged nothing about the fault"
    assert_serves_a_new_session(w)


def req_payload(w, method="GET", target="/hello", body_len=None):
    return harness.encode_pairs(w.pairs(method, target, body_len=body_len))


# -- the 12 header bytes (§4.2) --------------------------------------------------------------------

@pytest.mark.parametrize("ftype", [0x05, 0x7f, 0x80, 0x84, 0xff], ids=lambda t: "0x%02x" % t)
def test_unknown_type_is_refused_from_the_header(spawn, ftype):
    w = spawn()
    refused(w, encode_frame(ftype, 1, length=16), HEADER_ALONE_S)


@pytest.mark.parametrize("ftype", [HEAD, DATA, END], ids=["HEAD", "DATA", "END"])
def test_a_worker_to_core_frame_from_the_core_is_refused(spawn, ftype):
    w = spawn()
    length = 0 if ftype == END else 18
    refused(w, encode_frame(ftype, 1, length=length), HEADER_ALONE_S)


def test_non_zero_reserved_is_refused_from_the_header(spawn):
    w = spawn()
    refused(w, encode_frame(REQ, 1, reserved=1, length=len(req_payload(w))), HEADER_ALONE_S)


def body_awaited(w):
    """A request whose app is inside a read of its body: REQ(1) POST /sha256 with 10 body bytes
    announced, BODY(1) with 5 of them. The next frame is read while the app waits, before any
    response can exist, so a fault there is always refused without a frame."""
    return (encode_frame(REQ, 1, req_payload(w, "POST", "/sha256", 10))
            + encode_frame(BODY, 1, b"12345"))


def test_flags_on_req_are_refused_from_the_header(spawn):
    w = spawn()
    refused(w, encode_frame(REQ, 1, flags=0x01, length=len(req_payload(w))), HEADER_ALONE_S)


@pytest.mark.parametrize("ftype", [BODY, EOB], ids=["BODY", "EOB"])
def test_flags_on_body_frames_are_refused_from_the_header(spawn, ftype):
    w = spawn()
    length = 5 if ftype == BODY else 0
    refused(w, body_awaited(w) + encode_frame(ftype, 1, flags=0x02, length=length),
            HEADER_ALONE_S)


def test_req_payload_over_128_kib_is_refused_from_the_header(spawn):
    w = spawn()
    refused(w, encode_frame(REQ, 1, length=harness.FRAME_LIMITS[REQ] + 1), HEADER_ALONE_S)


def test_req_payload_of_exactly_128_kib_is_served(spawn):
    w = spawn()
    raw = req_payload(w)
    pad = harness.FRAME_LIMITS[REQ] - len(raw) - len(b"HTTP_X_PAD\0") - 1
    payload = raw + b"HTTP_X_PAD\0" + b"p" * pad + b"\0"
    assert len(payload) == harness.FRAME_LIMITS[REQ]
    s = w.session()
    s.send(encode_frame(REQ, 1, payload) + encode_frame(EOB, 1))
    assert s.read_response(1).body == b"hello world\n"


def test_hello_over_256_bytes_is_refused_from_the_header(spawn):
    w = spawn()
    s = w.session(hello=False)
    refused(w, encode_frame(HELLO, 0, length=harness.FRAME_LIMITS[HELLO] + 1), HEADER_ALONE_S,
            session=s)


def test_body_frame_over_1_mib_is_refused_from_the_header(spawn):
    w = spawn()
    size = 4 * 1024 * 1024
    data = encode_frame(REQ, 1, req_payload(w, "POST", "/sha256", size))
    refused(w, data + encode_frame(BODY, 1, length=harness.FRAME_LIMITS[BODY] + 1),
            HEADER_ALONE_S)


@pytest.mark.parametrize("ftype", [EOB, ABORT], ids=["EOB", "ABORT"])
def test_empty_types_with_a_payload_are_refused_from_the_header(spawn, ftype):
    w = spawn()
    refused(w, body_awaited(w) + encode_frame(ftype, 1, length=4), HEADER_ALONE_S)


# -- the order of frames (§4.3, §4.4) --------------------------------------------------------------

@pytest.mark.parametrize("first_id", [0, 2])
def test_a_first_request_whose_id_is_not_1_is_refused(spawn, first_id):
    w = spawn()
    refused(w, encode_frame(REQ, first_id, req_payload(w)) + encode_frame(EOB, first_id),
            REFUSED_S)


def test_a_request_id_that_skips_one_is_refused(spawn):
    w = spawn()
    s = w.session()
    assert s.get("/pid").body == str(w.pid).encode()
    refused(w, encode_frame(REQ, 3, req_payload(w)) + encode_frame(EOB, 3), REFUSED_S, session=s)


def test_body_past_content_length_is_refused(spawn):
    w = spawn()
    data = (encode_frame(REQ, 1, req_payload(w, "POST", "/sha256", 5))
            + encode_frame(BODY, 1, b"sixsix") + encode_frame(EOB, 1))
    refused(w, data, REFUSED_S)


@pytest.mark.parametrize("where", ["in_the_header", "in_the_payload"])
def test_a_frame_cut_by_the_end_of_the_connection_is_refused(spawn, where):
    w = spawn()
    whole = encode_frame(REQ, 1, req_payload(w))
    cut = whole[:6] if where == "in_the_header" else whole[:len(whole) // 2]
    refused(w, cut, REFUSED_S, shut=True)


MALFORMED_BLOCKS = {
    "odd_item_count": lambda raw: raw + b"DANGLING\0",
    "no_final_nul": lambda raw: raw[:-1],
    "empty_name": lambda raw: raw + b"\0value\0",
}


@pytest.mark.parametrize("fault", sorted(MALFORMED_BLOCKS))
def test_a_malformed_block_in_req_is_refused(spawn, fault):
    """REQ carries the block of §2, refused as in v1."""
    w = spawn()
    payload = MALFORMED_BLOCKS[fault](req_payload(w))
    refused(w, encode_frame(REQ, 1, payload) + encode_frame(EOB, 1), REFUSED_S)


def test_a_stalled_frame_does_not_hold_the_worker_forever(spawn):
    """A REQ whose payload stops coming: the worker gives up (a few seconds, at most 12) and
    serves the next connection."""
    w = spawn()
    s = w.session()
    s.send(encode_frame(REQ, 1, req_payload(w))[:40])
    s.expect_closed(12)
    s.close()
    assert_serves_a_new_session(w)


def test_the_worker_serves_on_after_a_fault_mid_session(spawn):
    """A fault after good requests ends only that session; the next one starts again at id 1."""
    w = spawn()
    s = w.session()
    body = os.urandom(100000)
    r = s.request("POST", "/sha256", body=body)
    assert r.body.decode() == "%d %s\n" % (len(body), hashlib.sha256(body).hexdigest())
    refused(w, struct.pack(">IBBHI", 0, 0x42, 0, 0, 2), HEADER_ALONE_S, session=s)
    s = w.session()
    assert s.send_request("GET", "/hello") == 1
    assert s.read_response(1).body == b"hello world\n"
