"""Fixtures of the conformance suite: every test runs once per loader (c, rack, wsgi) and gets a
`spawn` factory whose workers are stopped and checked after the test: the worker exits within
1 s of its owner pipe closing, leaves no socket file and no zombie, and logged no [alert]."""

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


def pytest_generate_tests(metafunc):
    if "loader" in metafunc.fixturenames:
        metafunc.parametrize("loader", selected_loaders())


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
def spawn(request, loader, sockdir):
    """spawn(case="main", fallback=False, expect="ready", env=None) -> a started harness.Worker.
    Fails the test when the app directory is missing."""
    workers = []

    def start(case="main", fallback=False, expect="ready", env=None):
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
    left = socket_files(sockdir)
    if left:
        problems.append("socket files left behind: %r" % left)
    if problems:
        pytest.fail("; ".join(problems))
