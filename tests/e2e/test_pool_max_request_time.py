"""Pool e2e: a request past --max-request-time gets 504; the worker gets SIGQUIT (backtrace in
the log) and is replaced, so the next request is served by another pid."""
import re
import time

import requests

from conftest import app

BASIC = app("tests", "e2e", "apps", "wsgi", "pool_basic")


def test_slow_request_gets_504_and_the_worker_is_replaced(ferry):
    # one worker: the slow request runs in the pid /pid named
    f = ferry(BASIC, "--max-request-time", "1", "--max-pool-size", "1")
    before = requests.get(f.url + "/pid", timeout=10)
    assert before.status_code == 200
    r = requests.get(f.url + "/slow?ms=5000", timeout=10)
    assert r.status_code == 504
    after = requests.get(f.url + "/pid", timeout=15)
    assert after.status_code == 200
    assert after.text != before.text, "the timed-out worker was replaced"
    log = f.log()
    assert "pid=%s: request passed max request time; SIGQUIT" % before.text in log, log
    # SIGKILL follows SIGQUIT after 1 s; its exit is logged at error with the signal.
    want = "[error] pool: app=%s pid=%s status=" % (BASIC, before.text)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and want not in f.log():
        time.sleep(0.05)
    assert want in f.log(), f.log()
    # The SIGQUIT made the worker dump its threads (Python: faulthandler) into the log.
    assert re.search(r"app: app=%s pid=%s: .*passenger_wsgi\.py\", line \d+ in application"
                     % (re.escape(BASIC), before.text), f.log()), f.log()
