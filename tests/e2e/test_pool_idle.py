"""Pool e2e: idle workers past --pool-idle-time are stopped (down to --min-instances), and the
next request spawns a new one."""
import time

import requests

from conftest import app

BASIC = app("tests", "e2e", "apps", "wsgi", "pool_basic")


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_idle_worker_is_stopped_and_respawned_on_demand(ferry):
    f = ferry(BASIC, "--pool-idle-time", "1", "--min-instances", "0")
    pid = int(requests.get(f.url + "/pid", timeout=10).text)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    assert not pid_alive(pid), "the idle worker was stopped"
    assert "pid=%d idle_s=1: stopping an idle worker" % pid in f.log()
    r = requests.get(f.url + "/pid", timeout=15)
    assert r.status_code == 200
    assert int(r.text) != pid
