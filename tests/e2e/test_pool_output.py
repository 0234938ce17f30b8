"""Pool e2e: the worker's stdout and stderr lines appear in the core's log with app and pid."""
import time

import requests

from conftest import app

BASIC = app("tests", "e2e", "apps", "wsgi", "pool_basic")


def test_worker_output_is_logged_with_app_and_pid(ferry):
    f = ferry(BASIC, "--max-pool-size", "1")   # /print runs in the pid /pid named
    pid = int(requests.get(f.url + "/pid", timeout=10).text)
    assert requests.get(f.url + "/print", timeout=10).status_code == 200
    want_out = "[info] app: app=%s pid=%d: pool-e2e-stdout-marker" % (BASIC, pid)
    want_err = "[info] app: app=%s pid=%d: pool-e2e-stderr-marker" % (BASIC, pid)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (want_out in f.log() and want_err in f.log()):
        time.sleep(0.05)
    assert want_out in f.log(), f.log()
    assert want_err in f.log(), f.log()
