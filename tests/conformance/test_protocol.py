"""Bad request blocks (docs/protocol.md §2): the worker closes the connection without a reply,
logs it, and serves the next request. Every case checks the worker is the same process
afterwards."""

import struct
import time

from . import harness


def assert_still_serving(w):
    assert w.alive(), "worker died; log:\n" + w.log()
    r = w.get("/pid")
    assert r.status == 200 and r.body == str(w.pid).encode()


def block(pairs):
    return harness.encode_block(pairs)


def test_wrong_password_is_refused_without_reply(spawn):
    w = spawn()
    pairs = w.pairs("GET", "/hello", password=False) + [("FERRY_CONNECT_PASSWORD", "0" * 32)]
    assert w.send_raw(block(pairs)) == b""
    time.sleep(0.1)
    assert "password" in w.log().lower(), "no log line for the refused connection:\n" + w.log()
    assert_still_serving(w)


def test_password_with_one_wrong_character_is_refused(spawn):
    w = spawn()
    bad = w.secret[:-1] + ("0" if w.secret[-1] != "0" else "1")
    pairs = w.pairs("GET", "/hello", password=False) + [("FERRY_CONNECT_PASSWORD", bad)]
    assert w.send_raw(block(pairs)) == b""
    assert_still_serving(w)


def test_missing_password_is_refused(spawn):
    w = spawn()
    assert w.send_raw(block(w.pairs("GET", "/hello", password=False))) == b""
    assert_still_serving(w)


def test_password_prefix_is_refused(spawn):
    w = spawn()
    pairs = w.pairs("GET", "/hello", password=False) + [("FERRY_CONNECT_PASSWORD", w.secret[:16])]
    assert w.send_raw(block(pairs)) == b""
    assert_still_serving(w)


def test_truncated_header_block_is_refused(spawn):
    w = spawn()
    full = block(w.pairs("GET", "/hello"))
    assert w.send_raw(full[: len(full) // 2]) == b""
    assert_still_serving(w)


def test_truncated_size_prefix_is_refused(spawn):
    w = spawn()
    assert w.send_raw(b"\x00\x00") == b""
    assert_still_serving(w)


def test_empty_connection_is_ignored(spawn):
    w = spawn()
    assert w.send_raw(b"") == b""
    assert_still_serving(w)


def test_header_block_over_128_kib_is_refused(spawn):
    w = spawn()
    size = harness.REQBLOCK_MAX + 1
    pairs = w.pairs("GET", "/hello")
    raw = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs)
    filler = b"HTTP_X_PAD\0" + b"p" * (size - len(raw) - len(b"HTTP_X_PAD\0") - 1) + b"\0"
    payload = raw + filler
    assert len(payload) == size
    assert w.send_raw(struct.pack(">I", size) + payload) == b""
    assert_still_serving(w)


def test_header_block_of_exactly_128_kib_is_accepted(spawn):
    w = spawn()
    pairs = w.pairs("GET", "/hello")
    raw = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs)
    pad = harness.REQBLOCK_MAX - len(raw) - len(b"HTTP_X_PAD\0") - 1
    payload = raw + b"HTTP_X_PAD\0" + b"p" * pad + b"\0"
    assert len(payload) == harness.REQBLOCK_MAX
    out = w.send_raw(struct.pack(">I", len(payload)) + payload)
    assert out.endswith(b"hello world\n"), out[:200]


def test_odd_item_count_is_refused(spawn):
    w = spawn()
    raw = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in w.pairs("GET", "/hello"))
    raw += b"DANGLING\0"
    assert w.send_raw(struct.pack(">I", len(raw)) + raw) == b""
    assert_still_serving(w)


def test_block_not_ending_in_nul_is_refused(spawn):
    w = spawn()
    raw = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in w.pairs("GET", "/hello"))
    raw = raw[:-1]
    assert w.send_raw(struct.pack(">I", len(raw)) + raw) == b""
    assert_still_serving(w)


def test_empty_header_name_is_refused(spawn):
    w = spawn()
    raw = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in w.pairs("GET", "/hello"))
    raw += b"\0value\0"
    assert w.send_raw(struct.pack(">I", len(raw)) + raw) == b""
    assert_still_serving(w)


def test_stuck_client_does_not_hold_the_worker_forever(spawn):
    w = spawn()
    s = w.connect()
    try:
        s.sendall(b"\x00\x00\x01\x00partial")
        s.settimeout(15)
        t0 = time.monotonic()
        assert s.recv(10) == b""  # the worker gives up and closes
        assert time.monotonic() - t0 < 12
    finally:
        s.close()
    assert_still_serving(w)
