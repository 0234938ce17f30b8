"""Worker lifecycle (docs/protocol.md §5 handshake; the lifecycle list of its "Conformance
suite"): signals, the owner pipe, socket modes, idle CPU, and boot failures. Cases that make
requests run over session protocol v1 and v2 (docs/protocol.md §4); the v2-only soft stops
(END with CLOSING) are in test_session.py."""

import os
import re
import signal
import stat
import threading
import time

import pytest

from . import harness


def test_ready_message_carries_pid_address_and_secret(spawn):
    w = spawn()
    assert re.fullmatch(r"[0-9a-f]{32}", w.secret), w.secret
    assert w.address.startswith("abstract:"), w.address
    assert w.secret not in open("/proc/%d/environ" % w.pid, "rb").read().decode("latin-1")


@pytest.mark.both_wires
@pytest.mark.parametrize("fallback", [False, True], ids=["abstract", "file"])
def test_socket_modes_serve_and_clean_up(spawn, sockdir, fallback):
    w = spawn(fallback=fallback)
    if fallback:
        path = w.socket_file()
        assert path is not None and w.address.startswith("unix:"), w.address
        assert os.path.dirname(path) == sockdir
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    else:
        assert w.address.startswith("abstract:"), w.address
        assert os.listdir(sockdir) == [os.path.basename(w.log_path)]
    assert w.get("/hello").body == b"hello world\n"
    w.close_owner()
    assert w.wait(1.5) is not None
    if fallback:
        assert not os.path.exists(w.socket_file())


@pytest.mark.parametrize("fallback", [False, True], ids=["abstract", "file"])
def test_owner_pipe_closed_while_idle_exits_within_1s(spawn, fallback):
    w = spawn(fallback=fallback)
    t0 = time.monotonic()
    w.close_owner()
    assert w.wait(1.0) is not None, "still running 1 s after the owner pipe closed"
    assert time.monotonic() - t0 < 1.0
    if fallback:
        assert not os.path.exists(w.socket_file())


@pytest.mark.both_wires
@pytest.mark.parametrize("fallback", [False, True], ids=["abstract", "file"])
def test_owner_pipe_closed_while_busy_exits_within_1s(spawn, fallback):
    w = spawn(fallback=fallback)
    pending = w.begin("GET", "/slow?ms=8000")
    try:
        time.sleep(0.3)  # the app is now sleeping inside the request
        t0 = time.monotonic()
        w.close_owner()
        assert w.wait(1.0) is not None, "still running 1 s after the owner pipe closed"
        assert time.monotonic() - t0 < 1.0
    finally:
        pending.close()
    if fallback:
        assert not os.path.exists(w.socket_file())


@pytest.mark.both_wires
def test_sigusr1_during_a_slow_request_finishes_it_then_exits_0(spawn):
    w = spawn()
    result = {}

    def run():
        result["resp"] = w.get("/slow?ms=1200")

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.4)
    w.signal(signal.SIGUSR1)
    t.join(10)
    assert not t.is_alive()
    r = result["resp"]
    assert (r.status, r.body) == (200, b"slept 1200\n")
    assert w.wait(3) == 0, "exit status after SIGUSR1; log:\n" + w.log()


def test_sigusr1_while_idle_exits_0(spawn):
    w = spawn(fallback=True)
    w.signal(signal.SIGUSR1)
    assert w.wait(2) == 0
    assert not os.path.exists(w.socket_file())


@pytest.mark.both_wires
def test_sigterm_exits_at_once(spawn):
    w = spawn(fallback=True)
    pending = w.begin("GET", "/slow?ms=8000")
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        w.signal(signal.SIGTERM)
        assert w.wait(1.0) is not None, "still running 1 s after SIGTERM"
        assert time.monotonic() - t0 < 1.0
    finally:
        pending.close()
    assert not os.path.exists(w.socket_file())


@pytest.mark.both_wires
def test_sighup_is_ignored(spawn):
    w = spawn()
    w.signal(signal.SIGHUP)
    time.sleep(0.2)
    assert w.alive()
    assert w.get("/hello").body == b"hello world\n"


@pytest.mark.both_wires
def test_sigquit_logs_and_continues(spawn):
    w = spawn()
    before = len(w.log())
    w.signal(signal.SIGQUIT)
    deadline = time.monotonic() + 3
    while len(w.log()) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(w.log()) > before, "SIGQUIT wrote nothing to the log"
    assert w.alive()
    assert w.get("/hello").body == b"hello world\n"


@pytest.mark.both_wires
def test_sigquit_writes_the_stack_of_every_thread(spawn):
    """docs/protocol.md, "Conformance suite" (lifecycle): SIGQUIT writes the backtrace of every
    thread, not only the one that took the signal: a thread parked by the app must show up by
    its function's name."""
    w = spawn()
    assert w.get("/park-thread").body == b"parked\n"
    time.sleep(0.2)
    w.signal(signal.SIGQUIT)
    deadline = time.monotonic() + 5
    while "conformance_parked_thread" not in w.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "conformance_parked_thread" in w.log(), w.log()[-3000:]
    assert w.alive()
    assert w.get("/hello").body == b"hello world\n"


@pytest.mark.both_wires
def test_idle_worker_does_not_spin(spawn):
    w = spawn()
    w.get("/hello")
    time.sleep(0.2)
    before = harness.cpu_ticks(w.pid)
    time.sleep(0.5)
    used = harness.cpu_ticks(w.pid) - before
    hz = os.sysconf("SC_CLK_TCK")
    assert used <= hz // 20, "idle worker used %d ticks of CPU in 0.5 s" % used


@pytest.mark.both_wires
def test_no_zombie_and_no_stray_fds_after_requests(spawn):
    w = spawn()
    for _ in range(5):
        w.get("/hello")
    assert harness.zombie_children(w.pid) == []
    fds = os.listdir("/proc/%d/fd" % w.pid)
    assert len(fds) < 64, "worker holds %d fds" % len(fds)


# What a useful summary or details mention, whatever the language.
BOOT_HINTS = {
    "syntax_error": r"syntax|parse|invalid ELF|unexpected",
    "no_entry_point": r"ferry_app_init|application|\brun\b|entry point",
    "missing_dependency": r"no module named|cannot load such file|undefined symbol|not found",
}


@pytest.mark.parametrize("case", sorted(BOOT_HINTS))
def test_boot_failure_reports_error_and_exits(spawn, sockdir, case):
    w = spawn(case=case, expect="error", fallback=True)
    name, summary, details = w.error
    assert name == "error"
    assert len(summary.strip()) >= 10, "summary too short: %r" % summary
    assert re.search(BOOT_HINTS[case], summary + "\n" + details, re.I), (summary, details)
    rc = w.wait(5)
    assert rc is not None and rc != 0, "exit status %r after a boot failure" % rc
    assert [n for n in os.listdir(sockdir) if not n.endswith(".log")] == []
