"""The constants every loader shares (docs/protocol.md §6, "Shared constants") cannot drift.

The table in docs/protocol.md names each value once and says where each loader defines it.
`test_loader_defines_each_shared_constant_as_documented` reads that table and checks that the
loader's source still holds exactly that definition, with the table's value. The two timeouts a
client can observe are also checked black-box: a stalled request block is refused after the
request-block timeout (not the body timeout, and whatever FERRY_WORKER_READ_TIMEOUT_MS says),
and a body the app left unread is drained for the drain timeout, then the connection closes.
"""

import os
import re
import time

import pytest

from . import harness

PROTOCOL_DOC = os.path.join(harness.REPO, "docs", "protocol.md")
# The table's column for each loader of harness.LOADERS.
COLUMNS = {"c": "C worker", "rack": "Rack loader", "wsgi": "WSGI loader"}


def shared_constants():
    """{constant name: {"value": float, "unit": "s" | "bytes" | "", loader column: cell}}, from
    the "Shared constants" table. A cell is (definition, path) or None for "—"."""
    with open(PROTOCOL_DOC, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^### Shared constants\n(.*?)(?=^#{2,3} )", text, re.S | re.M)
    assert m, "docs/protocol.md has no \"### Shared constants\" subsection"
    rows = [line for line in m.group(1).splitlines() if line.startswith("|")]
    assert len(rows) > 2, "the Shared constants table is empty"
    header = [c.strip() for c in rows[0].strip().strip("|").split("|")]
    assert header[:3] == ["constant", "value", "meaning"], header
    table = {}
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == len(header), line
        value = re.fullmatch(r"(\d+(?:\.\d+)?)(?: (s|bytes))?", cells[1])
        assert value, "bad value %r in row %r" % (cells[1], cells[0])
        row = {"value": float(value.group(1)), "unit": value.group(2) or ""}
        for name, cell in zip(header[3:], cells[3:]):
            if cell.startswith("—"):
                row[name] = None
                continue
            found = re.fullmatch(r"`([^`]+)` in `([^`]+)`", cell)
            assert found, "cell %r of row %r is neither `definition` in `path` nor —" % (
                cell, cells[0])
            row[name] = (found.group(1), found.group(2))
        table[cells[0]] = row
    return table


def definition_pattern(definition):
    """A regex for <definition> ("#define NAME VALUE" or "NAME = VALUE") on a line of its own,
    any spacing, optionally followed by a comment; and the value it sets, in the table's unit."""
    m = re.fullmatch(r"#define (\w+) ([\w.]+)", definition) or \
        re.fullmatch(r"(\w+) = ([\w.]+)", definition)
    assert m, "cannot read the definition %r" % definition
    name, raw = m.groups()
    if definition.startswith("#define"):
        pattern = r"^[ \t]*#[ \t]*define[ \t]+%s[ \t]+%s(?![\w.])" % (name, re.escape(raw))
    else:
        pattern = r"^[ \t]*%s[ \t]*=[ \t]*%s(?![\w.])" % (name, re.escape(raw))
    number = float(raw.rstrip("uUlL").replace("_", ""))
    if name.endswith("_MS"):
        number /= 1000.0
    return re.compile(pattern, re.M), name, number


def expected(loader, constant):
    """The documented value of <constant> and <loader>'s cell, or skip for an undocumented
    loader (a third-party one: add a column to the table)."""
    if loader not in COLUMNS:
        pytest.skip("docs/protocol.md names no constants for loader %s" % loader)
    row = shared_constants()[constant]
    return row["value"], row[COLUMNS[loader]]


def test_the_table_has_a_column_for_every_loader():
    for constant, row in shared_constants().items():
        for loader, column in COLUMNS.items():
            assert column in row, "no %s column (loader %s) for %s" % (column, loader, constant)


def test_loader_defines_each_shared_constant_as_documented(loader):
    if loader not in COLUMNS:
        pytest.skip("docs/protocol.md names no constants for loader %s" % loader)
    problems = []
    for constant, row in shared_constants().items():
        cell = row[COLUMNS[loader]]
        if cell is None:
            continue
        definition, path = cell
        pattern, name, number = definition_pattern(definition)
        if abs(number - row["value"]) > 1e-9:
            problems.append("%s: the table says %g but shows %s" % (constant, row["value"],
                                                                     definition))
            continue
        full = os.path.join(harness.REPO, path)
        try:
            with open(full, encoding="utf-8") as f:
                source = f.read()
        except FileNotFoundError:
            problems.append("%s: %s does not exist" % (constant, path))
            continue
        hits = pattern.findall(source)
        if len(hits) != 1:
            others = [line.strip() for line in source.splitlines()
                      if re.search(r"\b%s\b" % name, line)][:3]
            problems.append("%s: %s holds %d definitions `%s` (lines naming %s: %r)"
                            % (constant, path, len(hits), definition, name, others))
    assert not problems, "\n".join(problems)


def test_a_stalled_request_block_is_refused_after_the_request_block_timeout(spawn, loader):
    timeout, _ = expected(loader, "request-block timeout")
    body_timeout, _ = expected(loader, "body read timeout")
    assert timeout < body_timeout
    # A variable some loader once read to change its read timeouts: no loader honours it.
    w = spawn(env={"FERRY_WORKER_READ_TIMEOUT_MS": "200"})
    s = w.connect()
    try:
        s.sendall(b"\x00\x00\x01\x00partial")
        t0 = time.monotonic()
        s.settimeout(timeout + 10)
        assert s.recv(10) == b"", "a stalled block got a reply"
        waited = time.monotonic() - t0
    finally:
        s.close()
    assert timeout * 0.8 <= waited < timeout + 3, \
        "refused after %.1f s; the request-block timeout is %g s" % (waited, timeout)
    assert w.get("/hello").status == 200


def test_a_body_left_unread_is_drained_for_the_drain_timeout(spawn, loader):
    timeout, cell = expected(loader, "body drain timeout")
    if cell is None:
        pytest.skip("loader %s reads the whole body before the app runs" % loader)
    w = spawn()
    s = w.connect()
    try:
        s.sendall(harness.encode_block(w.pairs("GET", "/hello", body_len=1000000)))
        s.sendall(b"0123456789")   # of a million: /hello reads none of it
        s.settimeout(10)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        assert b"hello world\n" in got, got
        # EOF: the response is complete and the worker drains. It reads what we send until the
        # drain timeout, then closes, and the next write fails.
        t0 = time.monotonic()
        closed_after = None
        while time.monotonic() - t0 < timeout + 10:
            try:
                s.send(b"x")
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - t0
                break
            time.sleep(0.05)
    finally:
        s.close()
    assert closed_after is not None, "the worker kept draining past %g s" % (timeout + 10)
    assert timeout * 0.75 <= closed_after < timeout + 2.5, \
        "closed %.1f s after the response; the drain timeout is %g s" % (closed_after, timeout)
    assert w.get("/hello").status == 200
