"""Pool e2e: a worker SIGKILLed in the middle of a request: that request gets 502, the death is
logged at error level with the signal, and the next request is served (by a new worker)."""
import os
import signal
import stat
import threading
import time

import requests

from conftest import app

BASIC = app("tests", "e2e", "apps", "wsgi", "pool_basic")


def test_worker_killed_mid_request_gives_502_then_200(ferry):
    f = ferry(BASIC, "--max-pool-size", "1")   # the slow request goes to the pid killed
    pid = int(requests.get(f.url + "/pid", timeout=10).text)
    results = {}

    def slow():
        results["r"] = requests.get(f.url + "/slow?ms=3000", timeout=10)
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    t.join()
    assert results["r"].status_code == 502
    r = requests.get(f.url + "/pid", timeout=15)
    assert r.status_code == 200
    assert int(r.text) != pid
    # Logged at error with the signal, whether the exit or the front's report came first.
    assert "[error] pool: app=%s pid=%d status=0 signal=9: worker " % (BASIC, pid) in f.log(), \
        f.log()


def test_idle_worker_killed_is_replaced(ferry):
    f = ferry(BASIC)
    pid = int(requests.get(f.url + "/pid", timeout=10).text)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "worker died while idle" not in f.log():
        time.sleep(0.05)
    r = requests.get(f.url + "/pid", timeout=15)
    assert r.status_code == 200
    assert int(r.text) != pid


def _socket_files(root):
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                found.append(path)
    return found


def test_unreachable_idle_worker_is_skipped_not_502(ferry):
    """A worker that cannot be connected to (here: its socket file removed behind its back; in
    life: it died while idle and its exit is not processed yet) got none of the request, so the
    request goes to another worker instead of becoming a 502."""
    # v1: a connection per request, so the removed socket file is found at the next connect (a
    # v2 session stays connected and never looks at the file again).
    f = ferry(BASIC, "--max-pool-size", "1", "--min-instances", "1", "--session-protocol", "1",
              env={"FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS": "1"})
    pid = int(requests.get(f.url + "/pid", timeout=10).text)
    # the worker's socket file (the admin socket is a file in this mode too)
    socks = [p for p in _socket_files(f.tmpdir) if os.path.basename(p).startswith("ferry-worker")]
    assert len(socks) == 1, _socket_files(f.tmpdir)
    os.unlink(socks[0])
    r = requests.get(f.url + "/pid", timeout=15)
    assert r.status_code == 200
    assert int(r.text) != pid
    assert "worker unreachable" in f.log(), f.log()
