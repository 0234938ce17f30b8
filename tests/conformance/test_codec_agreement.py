"""The harness's frame codec (an independent reading of docs/protocol.md §4.2, kept so that the
suite stays black-box for third-party loaders) against ferry's one codec, src/proto/frame.c,
which the core, the C worker and the extension modules use; it is reached here through the
`_ferry` extension's test-facing encode_frame/decode_frame. Both must produce and accept the
same bytes, so a bug in the C codec cannot hide behind the harness agreeing with itself. Needs
the extension built (FERRY_BUILD_DIR); runs once, not per loader."""

import importlib.util
import os
import random

import pytest

from . import harness


def load_ferry_ext():
    d = os.path.join(harness.BUILD_DIR, "src", "ext", "python")
    if not os.path.isdir(d):
        pytest.fail("the _ferry extension is not built in %s (FERRY_BUILD_DIR)" % d)
    for name in sorted(os.listdir(d)):
        if name.startswith("_ferry") and name.endswith(".so"):
            spec = importlib.util.spec_from_file_location("_ferry", os.path.join(d, name))
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
    pytest.fail("no _ferry*.so in %s" % d)


@pytest.fixture(scope="module")
def ext():
    return load_ferry_ext()


def valid_frames(rng):
    """(type, flags, id, payload, direction) for every frame type, with payloads at and around
    their limits."""
    out = []
    for ftype in harness.TO_WORKER + harness.TO_CORE:
        direction = "w" if ftype in harness.TO_WORKER else "c"
        limit = harness.FRAME_LIMITS[ftype]
        sizes = sorted({0, 1, min(limit, 7), limit} if limit else {0})
        flag_sets = [0]
        if ftype == harness.END:
            flag_sets = [0, harness.END_APP_FAILED, harness.END_CLOSING,
                         harness.END_APP_FAILED | harness.END_CLOSING]
        for size in sizes:
            for flags in flag_sets:
                fid = 0 if ftype == harness.HELLO else rng.randrange(1, 2 ** 32)
                out.append((ftype, flags, fid, bytes(rng.randrange(256) for _ in range(size))
                            if size < 4096 else os.urandom(size), direction))
    return out


def test_both_codecs_encode_every_valid_frame_to_the_same_bytes(ext):
    for ftype, flags, fid, payload, _ in valid_frames(random.Random(4)):
        ours = harness.encode_frame(ftype, fid, payload, flags=flags)
        assert ext.encode_frame(ftype, flags, fid, payload) == ours, harness.frame_name(ftype)


def test_the_c_codec_decodes_what_the_harness_encodes_split_anywhere(ext):
    for ftype, flags, fid, payload, direction in valid_frames(random.Random(5)):
        wire = harness.encode_frame(ftype, fid, payload, flags=flags) + b"\x00"  # one more byte
        d = ext.TO_WORKER if direction == "w" else ext.TO_CORE
        assert ext.decode_frame(wire, d) == (ftype, flags, fid, payload, len(wire) - 1)
        for cut in sorted({0, 1, 11, 12, len(wire) - 2}):
            if 0 <= cut < len(wire) - 1:
                assert ext.decode_frame(wire[:cut], d) is None, (harness.frame_name(ftype), cut)


@pytest.mark.parametrize("fault,error", [
    (dict(ftype=0x99, fid=1), "EPROTO"),                     # unknown type
    (dict(ftype=harness.HEAD, fid=1, reserved=1), "EPROTO"),  # RESERVED not 0
    (dict(ftype=harness.DATA, fid=1, flags=1), "EPROTO"),     # flags on DATA
    (dict(ftype=harness.END, fid=1, flags=4), "EPROTO"),      # an END flag that does not exist
    (dict(ftype=harness.HEAD, fid=1, length=131073), "EMSGSIZE"),
    (dict(ftype=harness.END, fid=1, length=1), "EMSGSIZE"),
])
def test_the_c_codec_refuses_what_the_harness_checks_refuse(ext, fault, error):
    f = dict(fault)
    ftype, fid = f.pop("ftype"), f.pop("fid")
    wire = harness.encode_frame(ftype, fid, b"", **f)
    with pytest.raises(harness.FrameError):
        harness.check_worker_header(f.get("length", 0), ftype, f.get("flags", 0),
                                    f.get("reserved", 0))
    with pytest.raises(ValueError) as e:
        ext.decode_frame(wire + b"\x00" * 16, ext.TO_CORE)
    assert str(e.value) == error


def test_a_core_frame_in_the_worker_direction_is_refused_by_both(ext):
    wire = harness.encode_frame(harness.REQ, 1, b"")
    with pytest.raises(harness.FrameError):
        harness.check_worker_header(0, harness.REQ, 0, 0)
    with pytest.raises(ValueError):
        ext.decode_frame(wire, ext.TO_CORE)
