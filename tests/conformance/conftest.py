"""Fixtures of the conformance suite: every test runs once per loader (c, rack, wsgi) and gets a
`spawn` factory whose workers are stopped and checked after the test: the worker exits within
1 s of its owner pipe closing, leaves no socket file and no zombie, and logged no [alert].

Session protocols (docs/protocol.md §4.1): a test marked `both_wires` runs once over v1 and once
over v2 (`wire` is "v1" or "v2"), one marked `v2_only` over v2 alone; other tests speak v1. A v2
case of a loader whose ready message has four items is skipped with the reason "loader X is
v1-only (four-item ready)" (v1-only loaders are allowed), and the summary ends with a line that
says which protocols each loader offered."""

import os
import shutil
import stat
import tempfile

import pytest

from . import harness


def selected_loaders():
    """FERRY_CONFORMANCE_LOADERS=c,wsgi narrows the run (e.g. while writing a new loader)."""
    names = os.environ.get("FERRY_CONFORMANCE_LOADERS", ",".join(harness.LOADERS))
    return [n.strip() for n in names.split(",") if n.strip()]


# The protocol each loader's ready message offered (1 or 2), learned at its first spawn.
protocols_seen = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "both_wires: run over session protocol v1 and v2")
    config.addinivalue_line("markers", "v2_only: run over session protocol v2 only")


def pytest_generate_tests(metafunc):
    if "loader" in metafunc.fixturenames:
        metafunc.parametrize("loader", selected_loaders())
    if "wire" in metafunc.fixturenames:
        if metafunc.definition.get_closest_marker("both_wires"):
            metafunc.parametrize("wire", ["v1", "v2"])
        elif metafunc.definition.get_closest_marker("v2_only"):
            metafunc.parametrize("wire", ["v2"])


def pytest_terminal_summary(terminalreporter):
    if protocols_seen:
        terminalreporter.write_line("session protocols offered by the ready message: " + ", ".join(
            "%s=%s" % (name, "v1+v2" if proto == 2 else "v1-only (four-item ready)")
            for name, proto in sorted(protocols_seen.items())))


@pytest.fixture
def wire():
    """What the test's requests speak; "v1" unless the test is marked (see the module doc)."""
    return "v1"


def v1_only_reason(loader):
    return "loader %s is v1-only (four-item ready)" % loader


@pytest.fixture(scope="session", autouse=True)
def ferry_binary():
    if not os.access(harness.FERRY_BIN, os.X_OK):
        pytest.fail("FERRY_BIN=%s is not an executable; run `make build` or set FERRY_BIN"
                    % harness.FERRY_BIN)


@pytest.fixture
def sockdir():
    """A short private directory (sun_path holds 108 bytes) used as TMPDIR and instance dir."""
    path = tempfile.mkdtemp(prefix="fyc-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def socket_files(path):
    found = []
    for name in os.listdir(path):
        if stat.S_ISSOCK(os.lstat(os.path.join(path, name)).st_mode):
            found.append(name)
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "call":
        item.conformance_failed = outcome.get_result().failed


@pytest.fixture
def spawn(request, loader, wire, sockdir):
    """spawn(case="main", fallback=False, expect="ready", env=None) -> a started harness.Worker
    whose request() speaks <wire>. Fails the test when the app directory is missing; skips a v2
    case when the loader's ready offered v1 only."""
    workers = []

    def start(case="main", fallback=False, expect="ready", env=None):
        if wire == "v2" and protocols_seen.get(loader) == 1:
            pytest.skip(v1_only_reason(loader))
        app = harness.app_dir(loader, case)
        if not os.path.isdir(app):
            pytest.fail("conformance app %s is missing (loader %s)" % (app, loader))
        w = harness.Worker(app, loader, sockdir, fallback=fallback, env=env)
        workers.append(w)
        got = w.start()
        assert got == expect, "expected %s, got %s %r; log:\n%s" % (
            expect, got, w.error, w.log())
        if got == "ready":
            assert w.pid == w.proc.pid, "ready pid %d is not the process %d" % (w.pid, w.proc.pid)
            protocols_seen[loader] = w.protocol
            if wire == "v2":
                if w.protocol != 2:
                    pytest.skip(v1_only_reason(loader))
                w.wire = 2
        return w

    yield start

    if getattr(request.node, "conformance_failed", False):
        for w in workers:
            print("---- log of worker pid %s (%s) ----\n%s" % (w.pid, w.app, w.log()))
    problems = []
    for w in workers:
        if w.alive():
            zombies = harness.zombie_children(w.proc.pid)
            if zombies:
                problems.append("worker %d has zombie children %r" % (w.proc.pid, zombies))
            w.close_owner()
            if w.wait(1.5) is None:
                problems.append("worker %d still running 1.5 s after its owner pipe closed"
                                % w.proc.pid)
        w.cleanup()
        log = w.log()
        if "[alert]" in log:
            problems.append("worker logged an alert:\n" + log)
        # A sanitizer build's worker (the C runtime, the extension modules) reports here.
        if "ERROR: AddressSanitizer" in log or "runtime error:" in log:
            problems.append("worker logged a sanitizer report:\n" + log)
    left = socket_files(sockdir)
    if left:
        problems.append("socket files left behind: %r" % left)
    if problems:
        pytest.fail("; ".join(problems))
