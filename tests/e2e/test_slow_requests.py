"""Slow-request timelines (docs/operations.md, "Slow requests"): --slow-request-threshold MS logs
a request that took longer at warn with key=value durations that add up to its total, and
`ferry status --slow` shows the last slow ones and the last failed ones (5xx made by ferry)."""
import json
import os
import re
import subprocess

import requests

from conftest import FERRY_BIN, wait_for

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "wsgi", "observe")
STAGES = ("connect_ms", "head_ms", "body_ms", "queue_ms", "app_ms", "send_ms")


def slow_status(f, *args):
    r = subprocess.run([FERRY_BIN, "status", "--slow", "--pid", str(f.pid), *args],
                       capture_output=True, env=dict(os.environ, TMPDIR=f.tmpdir), timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def test_a_slow_request_is_logged_with_a_timeline_that_adds_up(ferry):
    f = ferry(APP, "--slow-request-threshold", "300", "--max-pool-size", "1",
              "--min-instances", "1")
    assert requests.get(f.url + "/slow?ms=10", timeout=10).status_code == 200
    r = requests.get(f.url + "/slow?ms=600", timeout=10)
    assert r.status_code == 200
    rid = r.headers["X-Request-Id"]
    assert wait_for(lambda: "slow request" in f.log())
    lines = [l for l in f.log().splitlines() if "slow request (threshold 300 ms)" in l]
    assert len(lines) == 1, lines   # the 10 ms one is not slow
    line = lines[0]
    assert "[warn] http: request_id=%s " % rid in line and " status=200 method=GET " in line
    fields = dict(re.findall(r"(\w+_ms)=(\d+)", line))
    total = int(fields["total_ms"])
    assert abs(sum(int(fields[k]) for k in STAGES) - total) <= 1, fields
    assert int(fields["app_ms"]) >= 600 and total >= 600
    doc = json.loads(slow_status(f, "--json"))
    assert doc["slow_request_threshold_ms"] == 300
    assert len(doc["slow"]) == 1
    rec = doc["slow"][0]
    assert rec["request_id"] == rid and rec["path"] == "/slow" and rec["status"] == 200
    assert sum(rec["timeline"][k] for k in STAGES) == rec["timeline"]["total_ms"]
    assert rid in slow_status(f)
    assert f.stop() == 0


def test_failed_requests_are_kept_with_why(ferry):
    f = ferry(APP, "--max-request-time", "1", "--max-pool-size", "1", "--min-instances", "1")
    r = requests.get(f.url + "/slow?ms=4000", timeout=20)
    assert r.status_code == 504
    doc = json.loads(slow_status(f, "--json"))
    assert doc["slow"] == [] and doc["slow_request_threshold_ms"] == 0
    assert len(doc["failed"]) == 1
    rec = doc["failed"][0]
    assert rec["status"] == 504 and rec["reason"] == "max_request_time"
    assert rec["request_id"] == r.headers["X-Request-Id"]
    assert "maximum request time" in rec["why"]
    assert rec["timeline"]["app_ms"] >= 900
    text = slow_status(f)
    assert "slow requests: not recorded (--slow-request-threshold is 0)" in text
    assert "GET /slow 504 max_request_time" in text, text
    assert f.stop() == 0
