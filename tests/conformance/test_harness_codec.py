"""The harness's own v2 frame codec against the example of docs/protocol.md §4.5: it must encode
the core's bytes of that hex dump exactly and decode the worker's into the response it shows.
The harness is an independent reading of the spec; this keeps the reading and the spec's
example from drifting apart. It needs no worker and runs once, not per loader."""

import os
import re
import socket

from . import harness

DUMP_LINE = re.compile(r"^([0-9a-f]{8})  ((?:[0-9a-f]{2} )+)")


def section_4_5_dumps():
    """{"core → worker": bytes, "worker → core": bytes} from the hex dump of §4.5; the offsets
    of each part must follow on from one another."""
    with open(os.path.join(harness.REPO, "docs", "protocol.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("### 4.5"):]
    block = section[section.index("```") + 3:]
    block = block[:block.index("```")]
    dumps = {}
    part = None
    for line in block.splitlines():
        if line.strip() in ("core → worker", "worker → core"):
            part = line.strip()
            dumps[part] = b""
            continue
        m = DUMP_LINE.match(line)
        if m:
            assert part is not None, line
            assert int(m.group(1), 16) == len(dumps[part]), "offset of %r" % line
            dumps[part] += bytes.fromhex(m.group(2))
    assert set(dumps) == {"core → worker", "worker → core"}, dumps.keys()
    return dumps


class Peer:
    """Stands in for a Worker: the session's socket is one end of a socketpair."""

    secret = "0123456789abcdef0123456789abcdef"

    def open_socket(self, timeout):
        ours, self.other = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.settimeout(timeout)
        return ours


def test_the_harness_encodes_the_core_side_of_section_4_5():
    expected = section_4_5_dumps()["core → worker"]
    wire = (harness.encode_frame(harness.HELLO, 0, Peer.secret)
            + harness.encode_frame(harness.REQ, 1, harness.encode_pairs(
                [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/")]))
            + harness.encode_frame(harness.EOB, 1))
    assert wire == expected


def test_the_harness_decodes_the_worker_side_of_section_4_5():
    peer = Peer()
    s = harness.Session(peer)
    try:
        peer.other.sendall(section_4_5_dumps()["worker → core"])
        peer.other.shutdown(socket.SHUT_WR)
        r = s.read_response(1, timeout=5)
        assert (r.status, r.reason, r.headers, r.body, r.end_flags) == (200, "OK", [], b"hello", 0)
        assert [name for name, _ in r.frames] == ["HEAD", "DATA", "END"]
        assert s.read_frame(1) is None
    finally:
        s.close()
        peer.other.close()
