"""`ferry status` lists the requests in flight (worker pid, method, path without query, age,
bytes sent) and the queued ones (position, age), text and --json (docs/operations.md, "ferry
status"). One worker (--max-pool-size 1 --min-instances 1), no dispatch-ahead (the second request
waits in the queue, not in the busy worker's socket)."""
import json
import os
import subprocess
import threading

import requests

from conftest import FERRY_BIN, wait_for

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "wsgi", "observe")


def status(f, *args):
    r = subprocess.run([FERRY_BIN, "status", "--pid", str(f.pid), *args], capture_output=True,
                       env=dict(os.environ, TMPDIR=f.tmpdir), timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def test_status_shows_a_slow_request_and_one_queued_behind_it(ferry):
    f = ferry(APP, "--max-pool-size", "1", "--min-instances", "1", "--dispatch-ahead", "0")
    assert wait_for(lambda: "worker ready" in f.log(), 20)
    pid = int(requests.get(f.url + "/pid", timeout=10).text)
    results = {}

    def get(name, path):
        results[name] = requests.get(f.url + path, timeout=20)

    slow = threading.Thread(target=get, args=("slow", "/slow?ms=3000"))
    slow.start()
    assert wait_for(lambda: json.loads(status(f, "--json"))["requests"]["in_flight"]["count"] == 1)
    queued = threading.Thread(target=get, args=("queued", "/ok?x=1"))
    queued.start()
    assert wait_for(lambda: json.loads(status(f, "--json"))["requests"]["queued"]["count"] == 1)
    assert wait_for(lambda: json.loads(status(f, "--json"))["requests"]["in_flight"]["listed"][0]
                    ["age_ms"] >= 1000)
    doc = json.loads(status(f, "--json"))["requests"]
    flight = doc["in_flight"]["listed"][0]
    assert flight["pid"] == pid
    assert flight["method"] == "GET" and flight["path"] == "/slow"   # no query
    assert 1000 <= flight["age_ms"] < 3500
    assert flight["bytes_sent"] == 0
    assert len(flight["request_id"]) == 32
    assert doc["in_flight"]["more"] == 0
    q = doc["queued"]["listed"][0]
    assert q["position"] == 1 and q["path"] == "/ok" and 0 <= q["age_ms"] < flight["age_ms"]
    text = status(f)
    assert "in flight: 1 request (oldest first)" in text, text
    assert "queued: 1 request (next in line first)" in text, text
    line = [l for l in text.splitlines() if "/slow" in l][0]
    assert line.split()[0] == str(pid) and flight["request_id"] in line
    slow.join()
    queued.join()
    assert results["slow"].status_code == 200 and results["queued"].status_code == 200
    doc = json.loads(status(f, "--json"))["requests"]
    assert doc["in_flight"]["count"] == 0 and doc["queued"]["count"] == 0
    assert "in flight:" not in status(f)
    assert f.stop() == 0
