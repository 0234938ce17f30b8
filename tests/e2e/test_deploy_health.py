"""--health-path (docs/configuration.md): the core answers that path itself, for load balancers
and Kubernetes probes: 200 when at least one worker is ready, 503 otherwise (booting, an app
that cannot boot, no worker wanted yet), never handing the request to a worker and never
spawning one for it. Other paths go to the app as always."""
import os
import socket
import subprocess

import requests

from conftest import FERRY_BIN, app, wait_for

BASIC = app("tests", "e2e", "apps", "wsgi", "pool_basic")
BOOT_ERROR = app("tests", "e2e", "apps", "wsgi", "pool_boot_error")


def test_200_with_a_ready_worker_and_the_app_behind_other_paths(ferry):
    f = ferry(BASIC, "--health-path", "/healthz", "--max-pool-size", "1", "--min-instances", "1")
    assert wait_for(lambda: requests.get(f.url + "/healthz", timeout=10).status_code == 200, 20)
    r = requests.get(f.url + "/healthz?probe=1", timeout=10)
    assert r.status_code == 200 and r.text == "ok: 1 worker ready\n"
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-store"
    head = requests.head(f.url + "/healthz", timeout=10)
    assert head.status_code == 200 and head.content == b""
    # The app answers everything else, the health path's neighbours too.
    app_answer = requests.get(f.url + "/", timeout=10)
    assert app_answer.status_code == 200 and "ok: " not in app_answer.text
    assert requests.get(f.url + "/healthz/x", timeout=10).text != r.text
    # Keep-alive: the front's answer leaves the connection usable.
    with requests.Session() as s:
        assert s.get(f.url + "/healthz", timeout=10).status_code == 200
        assert s.get(f.url + "/", timeout=10).status_code == 200


def test_503_while_no_worker_is_ready_and_no_spawn_for_it(ferry):
    f = ferry(BASIC, "--health-path", "/healthz", "--min-instances", "0")
    for _ in range(3):
        r = requests.get(f.url + "/healthz", timeout=10)
        assert r.status_code == 503 and r.text == "no worker is ready\n"
    assert "spawning a worker" not in f.log(), "a health check starts no worker"
    assert requests.get(f.url + "/", timeout=20).status_code == 200
    assert requests.get(f.url + "/healthz", timeout=10).status_code == 200


def test_503_for_an_app_that_cannot_boot(ferry):
    f = ferry(BOOT_ERROR, "--health-path", "/up", "--min-instances", "1")
    assert wait_for(lambda: "could not spawn a worker" in f.log(), 20), f.log()
    r = requests.get(f.url + "/up", timeout=10)
    assert r.status_code == 503 and r.text == "no worker is ready\n"


def test_503_then_200_while_the_first_worker_boots(ferry, tmp_path):
    root = tmp_path / "slow"
    root.mkdir()
    (root / "wsgi.py").write_text(
        "import time\ntime.sleep(1.5)\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n    return [b'up']\n")
    f = ferry(str(root), "--health-path", "/healthz", "--min-instances", "1")
    assert requests.get(f.url + "/healthz", timeout=10).status_code == 503
    assert wait_for(lambda: requests.get(f.url + "/healthz", timeout=10).status_code == 200, 20)


def test_a_health_path_must_start_with_a_slash():
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    r = subprocess.run([FERRY_BIN, "start", BASIC, "--health-path", "healthz"],
                       capture_output=True, text=True, timeout=10, env=env,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    assert "ferry start: health-path: 'healthz' must start with /" in r.stderr
