"""Rolling restarts (docs/operations.md, "Restarting"): `ferry restart [--wait]` and
tmp/restart.txt replace every worker, one at a time, a new one started before an old one goes,
so no request fails; a deploy that breaks the app stops the restart and the old workers keep
serving."""
import json
import os
import shutil
import struct
import subprocess
import threading
import time

import pytest
import requests

from conftest import FERRY_BIN, app, wait_for
from test_admin import admin_connect, array, cli, instance_dir, read_all, scalar, status_json

BASIC = app("tests", "e2e", "apps", "wsgi", "pool_basic")


def pool(f):
    return status_json(f)["pool"]


def live_workers(f):
    """{pid: worker} of the workers that are not retiring."""
    return {w["pid"]: w for w in status_json(f)["workers"] if w["state"] != "retiring"}


def booted(f, n):
    return wait_for(lambda: pool(f)["idle"] == n, timeout=20)


def gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Client(threading.Thread):
    """GET /pid in a loop, one new connection each, until stopped: at most 3000 requests or 60 s.
    .statuses holds every status (or the exception's name), .pids the pids that answered."""

    def __init__(self, url):
        super().__init__()
        self.url = url
        self.statuses = []
        self.pids = set()
        self.halt = threading.Event()

    def run(self):
        deadline = time.monotonic() + 60
        while not self.halt.is_set() and time.monotonic() < deadline and len(self.statuses) < 3000:
            try:
                r = requests.get(self.url + "/pid", timeout=20)
                self.statuses.append(r.status_code)
                if r.status_code == 200:
                    self.pids.add(int(r.text))
            except requests.RequestException as e:
                self.statuses.append(type(e).__name__)
            time.sleep(0.005)

    def finish(self):
        self.halt.set()
        self.join(30)
        assert not self.is_alive()


def copy_app(tmp_path):
    dst = tmp_path / "app"
    shutil.copytree(BASIC, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_restart_wait_replaces_every_worker_and_no_request_fails(ferry):
    f = ferry(BASIC, "--min-instances", "2")
    assert booted(f, 2)
    before = set(live_workers(f))
    assert len(before) == 2
    assert all(w["generation"] == 1 for w in live_workers(f).values())
    client = Client(f.url)
    client.start()
    try:
        time.sleep(0.3)
        r = cli(f, "restart", "--wait", "--timeout", "60")
        time.sleep(0.3)
    finally:
        client.finish()
    assert r.returncode == 0, r.stderr
    assert "ferry restart: pid %d is restarting its workers" % f.pid in r.stdout
    assert "ferry restart: pid %d: restart done: every worker replaced (generation 2)" % f.pid \
        in r.stdout
    assert len(client.statuses) >= 10, "the client was served during the restart"
    assert set(client.statuses) == {200}, client.statuses
    after = live_workers(f)
    assert len(after) == 2 and not set(after) & before, (before, after)
    assert all(w["generation"] == 2 for w in after.values())
    assert client.pids & set(after), "the new workers served the client"
    p = pool(f)
    assert p["restarting"] is False and p["old_workers"] == 0 and p["generation"] == 2
    assert p["restarts"] == 1 and p["restart_failed"] is False
    assert wait_for(lambda: all(gone(pid) for pid in before), timeout=5)
    log = f.log()
    assert "admin: peer_pid=" in log and ": restart asked for" in log
    assert "generation=2 old_workers=2: rolling restart started" in log
    assert log.count("worker stopped (rolling restart)") == 2
    assert "generation=2 replaced=2: rolling restart done" in log
    human = cli(f, "status", "--pid", str(f.pid)).stdout
    assert " gen proto spawn  spawn_ms\n" in human


def test_busy_worker_finishes_its_request_and_is_replaced_after(ferry):
    f = ferry(BASIC, "--min-instances", "1", "--max-pool-size", "1")
    assert booted(f, 1)
    (old,) = live_workers(f)
    result = {}

    def slow():
        result["r"] = requests.get(f.url + "/slow?ms=3000", timeout=30)

    t = threading.Thread(target=slow)
    t.start()
    try:
        assert wait_for(lambda: pool(f)["busy"] == 1, timeout=5)
        r = cli(f, "restart")
        assert r.returncode == 0, r.stderr

        def replacement_ready():
            p = pool(f)
            return p["busy"] == 1 and p["idle"] == 1
        assert wait_for(replacement_ready, timeout=10), status_json(f)
        doc = status_json(f)
        assert doc["pool"]["restarting"] is True and doc["pool"]["old_workers"] == 1
        busy = [w for w in doc["workers"] if w["state"] == "busy"]
        assert [w["pid"] for w in busy] == [old] and busy[0]["generation"] == 1
        assert "restart    rolling restart to generation 2: 1 old workers left" in \
            cli(f, "status", "--pid", str(f.pid)).stdout
        assert not gone(old)
    finally:
        t.join(30)
    assert result["r"].status_code == 200 and result["r"].text == "slept 3000"
    assert wait_for(lambda: not pool(f)["restarting"], timeout=10)
    assert wait_for(lambda: gone(old), timeout=5)
    (new,) = live_workers(f)
    assert new != old
    assert requests.get(f.url + "/pid", timeout=10).text == str(new)
    assert "stopping the old worker after its current request" in f.log()


def test_restart_txt_restarts_on_the_next_request_once_per_change(ferry, tmp_path):
    d = copy_app(tmp_path)
    (d / "tmp").mkdir()
    txt = d / "tmp" / "restart.txt"
    txt.write_text("")
    os.utime(txt, (1000000000, 1000000000))   # there before ferry: restarts nothing
    # One worker: the same pid on every request (a second one could spawn on demand when a
    # request arrives before the first worker is checked in).
    f = ferry(d, "--max-pool-size", "1")
    assert booted(f, 1)
    first = requests.get(f.url + "/pid", timeout=10).text
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        assert requests.get(f.url + "/pid", timeout=10).text == first
        time.sleep(0.1)
    assert pool(f)["restarts"] == 0, "an old restart.txt does not restart at boot"

    now = time.time()
    os.utime(txt, (now, now))
    time.sleep(1.1)   # checked at most once a second: the next request looks
    assert requests.get(f.url + "/pid", timeout=10).status_code == 200
    assert wait_for(lambda: pool(f)["restarts"] == 1 and not pool(f)["restarting"], timeout=20)
    second = requests.get(f.url + "/pid", timeout=10).text
    assert second != first
    assert "file=%s: restart.txt changed: rolling restart" % txt in f.log()

    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        assert requests.get(f.url + "/pid", timeout=10).text == second
        time.sleep(0.1)
    assert pool(f)["restarts"] == 1, "an unchanged restart.txt does not restart again"
    assert f.log().count("restart.txt changed") == 1


def test_restart_into_a_broken_app_keeps_the_old_workers(ferry, tmp_path):
    d = copy_app(tmp_path)
    f = ferry(d, "--min-instances", "2")
    assert booted(f, 2)
    before = set(live_workers(f))
    (d / "passenger_wsgi.py").write_text('raise RuntimeError("the deploy broke the app")\n')
    client = Client(f.url)
    client.start()
    try:
        time.sleep(0.2)
        r = cli(f, "restart", "--wait", "--timeout", "60")
        time.sleep(0.3)
    finally:
        client.finish()
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "the restart stopped: the new workers failed to boot" in r.stderr
    assert "the deploy broke the app" in r.stderr
    assert "2 old workers keep serving" in r.stderr
    assert len(client.statuses) >= 5 and set(client.statuses) == {200}, client.statuses
    assert client.pids <= before
    doc = status_json(f)
    p = doc["pool"]
    assert p["restarting"] is False and p["restart_failed"] is True and p["old_workers"] == 2
    assert "the deploy broke the app" in p["boot_error"]["summary"]
    assert set(live_workers(f)) == before
    for _ in range(5):
        assert requests.get(f.url + "/", timeout=10).status_code == 200
    log = f.log()
    assert "error_id=%s replaced=0 old_workers=2: rolling restart stopped: a new worker failed " \
        "to boot" % p["boot_error"]["error_id"] in log
    human = cli(f, "status", "--pid", str(f.pid)).stdout
    assert "the last rolling restart stopped: the new workers failed to boot; 2 old workers" \
        in human
    assert "boot error" in human


def test_restart_with_several_instances_needs_a_pid(ferry):
    # One worker each: "a still has its pid" must not depend on which of several answered.
    a = ferry(BASIC, "--max-pool-size", "1")
    b = ferry(BASIC, "--max-pool-size", "1", env={"TMPDIR": a.tmpdir})
    b.tmpdir = a.tmpdir   # where its instance directory is, for cli()
    assert booted(a, 1) and booted(b, 1)
    a_pid = requests.get(a.url + "/pid", timeout=10).text
    b_pid = requests.get(b.url + "/pid", timeout=10).text
    r = cli(a, "restart")
    assert r.returncode == 2
    assert "2 instances are running" in r.stderr
    assert "--pid %d" % a.pid in r.stderr and "--pid %d" % b.pid in r.stderr
    r = cli(a, "restart", "--pid", str(b.pid), "--wait")
    assert r.returncode == 0, r.stderr
    assert requests.get(b.url + "/pid", timeout=10).text != b_pid
    assert requests.get(a.url + "/pid", timeout=10).text == a_pid
    both = [json.loads(line) for line in cli(a, "status", "--json").stdout.splitlines()]
    restarts = {d["ferry"]["pid"]: d["pool"]["restarts"] for d in both}
    assert restarts == {a.pid: 0, b.pid: 1}


def test_admin_restart_command_answers_json(ferry):
    f = ferry(BASIC)
    assert booted(f, 1)
    password = open(os.path.join(instance_dir(f), "admin_password"), "rb").read()
    s = admin_connect(f)
    s.sendall(scalar(password) + array("restart"))
    reply = read_all(s)
    s.close()
    (length,) = struct.unpack(">I", reply[:4])
    assert json.loads(reply[4:4 + length]) == {"restarting": True, "pid": f.pid}
    assert wait_for(lambda: pool(f)["restarts"] == 1 and not pool(f)["restarting"], timeout=20)


@pytest.mark.parametrize("args", [["--pid"], ["--pid", "x"], ["--pid", "0"], ["--bogus"],
                                  ["--json"], ["--timeout", "5"], ["--wait", "--timeout", "x"],
                                  ["--wait", "--timeout", "86401"], ["--wait=1"]])
def test_bad_restart_arguments(ferry, tmp_path, args):
    r = subprocess.run([FERRY_BIN, "restart"] + args, env=dict(os.environ, TMPDIR=str(tmp_path)),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("ferry restart: ")


def test_restart_help_and_no_instance(ferry, tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    r = subprocess.run([FERRY_BIN, "restart", "--help"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0
    assert r.stdout.startswith("usage: ferry restart [--pid PID] [--wait [--timeout SECONDS]]")
    r = subprocess.run([FERRY_BIN, "restart", "--wait"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "no running ferry instance" in r.stderr
    r = subprocess.run([FERRY_BIN, "--help"], env=env, capture_output=True, text=True, timeout=30)
    assert "\n  restart " in r.stdout
