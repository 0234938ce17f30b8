"""Pool e2e: --memory-limit MB (docs/operations.md, "Workers"). A worker whose PSS passes the
limit is replaced: an idle one at once, a busy one after its current request, which completes
normally. Each worker's PSS is read every 5 s, so every wait here is bounded at a few
intervals."""
import threading

import requests

from conftest import app, wait_for
from test_admin import cli, status_json

BASIC = app("tests", "e2e", "apps", "wsgi", "pool_basic")
LIMITED = ("--memory-limit", "64", "--min-instances", "1", "--max-pool-size", "1")


def get_pid(f):
    r = requests.get(f.url + "/pid", timeout=10)
    assert r.status_code == 200
    return r.text


def test_idle_worker_past_the_limit_is_replaced(ferry):
    f = ferry(BASIC, *LIMITED)
    first = get_pid(f)
    r = requests.get(f.url + "/grow?mb=100", timeout=20)
    assert (r.status_code, r.text) == (200, first)
    # The next PSS read (at most 5 s away) finds the idle worker past 64 MiB.
    assert wait_for(lambda: "pid=%s status=0 signal=0: worker stopped (memory limit)" % first
                    in f.log(), timeout=15), f.log()
    assert get_pid(f) != first
    log = f.log()
    line = [ln for ln in log.splitlines() if "pid=%s pss_kib=" % first in ln]
    assert len(line) == 1, log
    assert "[notice] pool:" in line[0]
    assert line[0].endswith(" limit_kib=65536: memory limit passed; replacing the worker"), line
    pss_kib = int(line[0].split("pss_kib=")[1].split()[0])
    assert pss_kib > 100 * 1024
    doc = status_json(f)
    assert doc["pool"]["memory_limit_kib"] == 65536
    assert doc["pool"]["memory_limit_replacements"] == 1
    assert doc["pool"]["spawns_started"] == 2
    human = cli(f, "status", "--pid", str(f.pid))
    assert human.returncode == 0, human.stderr
    assert "memory     limit 64.0 MiB PSS per worker; 1 workers replaced for it" in human.stdout


def test_busy_worker_past_the_limit_finishes_its_request_first(ferry):
    f = ferry(BASIC, *LIMITED)
    first = get_pid(f)
    result = {}

    def slow():
        # Past the limit at once, then busy for 7 s: longer than one check interval.
        result["r"] = requests.get(f.url + "/grow?mb=100&ms=7000", timeout=30)

    t = threading.Thread(target=slow)
    t.start()
    assert wait_for(lambda: "pid=%s pss_kib=" % first in f.log(), timeout=10), f.log()
    assert "memory limit passed; replacing the worker after its current request" in f.log()
    assert "worker stopped (memory limit)" not in f.log()
    assert status_json(f)["pool"]["busy"] == 1
    t.join(timeout=30)
    assert not t.is_alive()
    r = result["r"]
    assert (r.status_code, r.text) == (200, first)
    assert wait_for(lambda: "pid=%s status=0 signal=0: worker stopped (memory limit)" % first
                    in f.log(), timeout=15), f.log()
    assert get_pid(f) != first
    assert status_json(f)["pool"]["memory_limit_replacements"] == 1


def test_worker_under_the_limit_is_kept(ferry):
    f = ferry(BASIC, "--memory-limit", "512", "--min-instances", "1", "--max-pool-size", "1")
    first = get_pid(f)
    assert requests.get(f.url + "/grow?mb=16", timeout=20).status_code == 200
    # Long enough for at least one PSS read of the worker after it grew (every 5 s).
    wait_for(lambda: False, timeout=6.5)
    assert get_pid(f) == first
    assert "memory limit passed" not in f.log()
    doc = status_json(f)
    assert doc["pool"]["memory_limit_kib"] == 512 * 1024
    assert doc["pool"]["memory_limit_replacements"] == 0
    assert doc["pool"]["spawns_started"] == 1


def test_no_limit_by_default(ferry):
    f = ferry(BASIC, "--max-pool-size", "1")
    doc = status_json(f)
    assert doc["pool"]["memory_limit_kib"] == 0
    assert doc["pool"]["memory_limit_replacements"] == 0
    human = cli(f, "status", "--pid", str(f.pid))
    assert human.returncode == 0, human.stderr
    assert "memory     limit" not in human.stdout
