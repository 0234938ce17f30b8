"""The test-facing frame codec of the _ferry extension (encode_frame / decode_frame, thin
wrappers of src/proto/frame.h): the hex dump of docs/protocol.md §4.5, round trips, "need more",
and the refusals, by name. Runs in the test process (nothing boots a worker)."""

import os
import struct
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import wsgi_ext_driver as driver  # noqa: E402

ext = driver.import_ferry_ext()


def test_header_layout_is_length_type_flags_reserved_id():
    frame = ext.encode_frame(ext.FRAME_REQ, 0, 7, b"A\0b\0")
    assert frame == struct.pack(">IBBHI", 4, 0x01, 0, 0, 7) + b"A\0b\0"
    assert ext.FRAME_HEADER_LEN == 12


def test_round_trip_of_every_type_in_its_direction():
    cases = [(ext.FRAME_HELLO, 0, 0, b"secret", ext.TO_WORKER),
             (ext.FRAME_REQ, 0, 1, b"X\0y\0", ext.TO_WORKER),
             (ext.FRAME_BODY, 0, 1, b"body", ext.TO_WORKER),
             (ext.FRAME_EOB, 0, 1, b"", ext.TO_WORKER),
             (ext.FRAME_ABORT, 0, 1, b"", ext.TO_WORKER),
             (ext.FRAME_HEAD, 0, 1, b"Status: 200 OK\r\n\r\n", ext.TO_CORE),
             (ext.FRAME_DATA, 0, 1, b"x" * 1000, ext.TO_CORE),
             (ext.FRAME_END, ext.END_APP_FAILED | ext.END_CLOSING, 4294967295, b"", ext.TO_CORE)]
    for ftype, flags, fid, payload, direction in cases:
        frame = ext.encode_frame(ftype, flags, fid, payload)
        assert ext.decode_frame(frame + b"next", direction) == \
            (ftype, flags, fid, payload, 12 + len(payload))


def test_incomplete_header_or_payload_needs_more():
    frame = ext.encode_frame(ext.FRAME_DATA, 0, 3, b"0123456789")
    for cut in range(len(frame)):
        assert ext.decode_frame(frame[:cut], ext.TO_CORE) is None


@pytest.mark.parametrize("frame, direction, name", [
    (struct.pack(">IBBHI", 0, 0x83, 0, 0, 1), 0, "EPROTO"),       # END towards the worker
    (struct.pack(">IBBHI", 0, 0x01, 0, 0, 1), 1, "EPROTO"),       # REQ towards the core
    (struct.pack(">IBBHI", 0, 0x42, 0, 0, 1), 0, "EPROTO"),       # unknown type
    (struct.pack(">IBBHI", 0, 0x03, 0, 1, 1), 0, "EPROTO"),       # reserved not 0
    (struct.pack(">IBBHI", 0, 0x02, 1, 0, 1), 0, "EPROTO"),       # flags on BODY
    (struct.pack(">IBBHI", 0, 0x83, 4, 0, 1), 1, "EPROTO"),       # unknown END flag
    (struct.pack(">IBBHI", 1048577, 0x02, 0, 0, 1), 0, "EMSGSIZE"),  # BODY over 1 MiB
    (struct.pack(">IBBHI", 257, 0x00, 0, 0, 0), 0, "EMSGSIZE"),   # HELLO over 256
    (struct.pack(">IBBHI", 1, 0x03, 0, 0, 1), 0, "EMSGSIZE"),     # EOB with a payload
])
def test_refusals_are_known_from_the_header_alone(frame, direction, name):
    with pytest.raises(ValueError) as err:
        ext.decode_frame(frame, direction)   # the header only: no payload present
    assert str(err.value) == name


def test_encoder_refuses_what_the_decoder_would():
    with pytest.raises(ValueError, match="EPROTO"):
        ext.encode_frame(0x42, 0, 1, b"")
    with pytest.raises(ValueError, match="EPROTO"):
        ext.encode_frame(ext.FRAME_DATA, 1, 1, b"")
    with pytest.raises(ValueError, match="EMSGSIZE"):
        ext.encode_frame(ext.FRAME_EOB, 0, 1, b"x")
    with pytest.raises(ValueError, match="EMSGSIZE"):
        ext.encode_frame(ext.FRAME_BODY, 0, 1, b"x" * 1048577)
    with pytest.raises(ValueError, match="EPROTO"):
        ext.encode_frame(ext.FRAME_DATA, 0, 1 << 32, b"")
    with pytest.raises(ValueError):
        ext.decode_frame(b"", 2)


def test_log_levels_and_fields_are_checked():
    with pytest.raises(ValueError, match="unknown log level"):
        ext.log("loud", "message")
    with pytest.raises(TypeError):
        ext.log("info")
