"""Smart spawning (docs/architecture.md "Smart spawning", docs/configuration.md): Rack and WSGI
workers are forked from one preloader per app that loaded the app once. The core owns every
forked worker as a direct one (owner pipe, output, exit); the preloader is started on demand,
exits after its idle time, is replaced at a rolling restart; an app that cannot preload is a boot
failure; `--spawn-method direct` keeps the old way.

Assumptions are stated per test: worker counts through --min-instances/--max-pool-size, and
--dispatch-ahead 0 where concurrent requests must land on distinct workers."""
import os
import shutil
import signal
import threading
import time

import pytest
import requests

from conftest import app, wait_for
from test_admin import cli, status_json

SMART = {
    "wsgi": app("tests", "e2e", "apps", "wsgi", "smart"),
    "rack": app("tests", "e2e", "apps", "rack", "smart"),
}
BOOT_ERROR = app("tests", "e2e", "apps", "wsgi", "pool_boot_error")


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ppid_of(pid):
    with open("/proc/%d/stat" % pid) as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def children_of(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as fh:
        return {int(p) for p in fh.read().split()}


def idle_workers(f, n, timeout=30):
    """Waits until <n> workers are idle; returns the status document."""
    assert wait_for(lambda: status_json(f)["pool"]["idle"] == n, timeout=timeout), f.log()
    return status_json(f)


@pytest.fixture(params=sorted(SMART))
def kind(request):
    return request.param


def test_workers_are_forked_from_one_preloader(ferry, kind):
    # Assumes 3 workers, all started at boot.
    f = ferry(SMART[kind], "--min-instances", "3", "--max-pool-size", "3")
    doc = idle_workers(f, 3)
    pool = doc["pool"]
    assert pool["spawn_method"] == "smart"
    pre = pool["preloader"]
    assert pre["state"] == "ready" and pre["pid"] > 0, pre
    assert pre["starts"] == 1 and pre["forks"] == 3, pre
    assert children_of(f.pid) == {pre["pid"]}, "the core's only child is the preloader"
    for w in doc["workers"]:
        assert w["spawn_method"] == "smart"
        assert ppid_of(w["pid"]) == pre["pid"]
        assert 0 < w["spawn_ms"] < 5000, w
    # The app was loaded once, by the preloader.
    for _ in range(5):
        assert requests.get(f.url + "/booted", timeout=10).text == str(pre["pid"])
    assert "spawn in" in f.log() and "smart spawn in" in f.log()


def test_forked_workers_share_memory(ferry, kind):
    # Assumes 4 workers. The app holds ~24 MiB of objects loaded before the fork: a worker's
    # private memory (USS) stays well below what it maps (RSS).
    f = ferry(SMART[kind], "--min-instances", "4", "--max-pool-size", "4")
    doc = idle_workers(f, 4)
    for _ in range(8):
        assert requests.get(f.url + "/shared", timeout=10).text == "200000"
    doc = status_json(f)
    for w in doc["workers"]:
        assert w["uss_kib"] is not None and w["rss_kib"] > 0, w
        assert w["uss_kib"] < w["rss_kib"] * 0.5, w
        assert w["pss_kib"] < w["rss_kib"], w
    pre = doc["pool"]["preloader"]
    assert pre["rss_kib"] > 0 and pre["pss_kib"] < pre["rss_kib"], pre
    human = cli(f, "status").stdout
    assert "preloader  pid %d, ready" % pre["pid"] in human, human
    assert "USS" in human and "smart" in human, human


def test_each_worker_draws_its_own_random_numbers(ferry, kind):
    # Assumes 4 workers and no dispatch-ahead, so 4 concurrent requests reach 4 workers; each
    # worker's first random number differs from its siblings'.
    f = ferry(SMART[kind], "--min-instances", "4", "--max-pool-size", "4", "--dispatch-ahead", "0")
    doc = idle_workers(f, 4)
    pids = sorted(w["pid"] for w in doc["workers"])
    firsts = {}
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def draw():
        barrier.wait()
        s = requests.Session()
        pid = int(s.get(f.url + "/pid", timeout=10).text)
        value = s.get(f.url + "/random", timeout=10).text
        with lock:
            firsts.setdefault(pid, value)

    # Several rounds: whichever worker answers, no two workers share a sequence.
    values = {}
    for _ in range(5):
        threads = [threading.Thread(target=draw) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for pid in pids:
            v = requests.get(f.url + "/random", timeout=10)
            values.setdefault(v.text, 0)
            values[v.text] += 1
    assert len(firsts) >= 2, firsts
    assert len(set(firsts.values())) == len(firsts), firsts
    assert all(n == 1 for n in values.values()), values


def test_each_worker_draws_its_own_openssl_random_bytes(ferry, kind):
    # The preloader set up OpenSSL's generator before forking (the apps load it) and the workers
    # do not reseed it: OpenSSL reseeds in a forked child itself (docs/performance.md "Smart
    # spawning"). Assumes 4 workers and no dispatch-ahead, so 4 concurrent requests reach 4
    # workers; each worker's first 16 bytes differ from its siblings'.
    f = ferry(SMART[kind], "--min-instances", "4", "--max-pool-size", "4", "--dispatch-ahead", "0")
    idle_workers(f, 4)
    firsts, seen = {}, []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def draw():
        barrier.wait()
        pid, value = requests.get(f.url + "/ssl-random", timeout=10).text.split()
        with lock:
            firsts.setdefault(pid, value)
            seen.append(value)

    for _ in range(3):
        threads = [threading.Thread(target=draw) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(firsts) >= 2, firsts
    assert len(set(firsts.values())) == len(firsts), firsts
    assert len(set(seen)) == len(seen), seen


def test_fork_hooks_run_once_per_worker(ferry, kind, tmp_path):
    # Assumes 3 workers. WSGI: os.register_at_fork(after_in_child=...); Rack: ferry's
    # Ferry.on_event(:starting_worker_process) with forked = true.
    log = tmp_path / "forks.log"
    f = ferry(SMART[kind], "--min-instances", "3", "--max-pool-size", "3",
              env={"SMART_FORK_LOG": str(log)})
    doc = idle_workers(f, 3)
    pids = sorted(w["pid"] for w in doc["workers"])
    lines = log.read_text().split("\n")[:-1]
    assert sorted(int(line.split()[0]) for line in lines) == pids, lines
    if kind == "rack":
        assert all(line.split()[1] == "true" for line in lines), lines


def test_the_rack_hook_says_not_forked_under_direct(ferry, tmp_path):
    log = tmp_path / "forks.log"
    f = ferry(SMART["rack"], "--min-instances", "2", "--max-pool-size", "2",
              "--spawn-method", "direct", env={"SMART_FORK_LOG": str(log)})
    doc = idle_workers(f, 2)
    lines = log.read_text().split("\n")[:-1]
    assert sorted(line for line in lines) == sorted("%d false" % w["pid"] for w in doc["workers"])


def test_sigkill_of_the_preloader_the_next_spawn_starts_a_new_one(ferry, kind):
    # Assumes one worker at boot and room for a second.
    f = ferry(SMART[kind], "--min-instances", "1", "--max-pool-size", "2", "--dispatch-ahead", "0")
    doc = idle_workers(f, 1)
    old = doc["pool"]["preloader"]["pid"]
    worker = doc["workers"][0]["pid"]
    os.kill(old, signal.SIGKILL)
    assert wait_for(lambda: status_json(f)["pool"]["preloader"]["state"] == "off"), f.log()
    assert status_json(f)["pool"]["preloader"]["last_exit"] == "killed by signal 9"
    # Its worker is the core's, not the preloader's: it goes on serving.
    assert requests.get(f.url + "/pid", timeout=10).text == str(worker)
    # Two requests at once need a second worker: a new preloader forks it.
    results = []

    def get():
        results.append(requests.get(f.url + "/slow", timeout=30).status_code)

    threads = [threading.Thread(target=get) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200, 200]
    assert wait_for(lambda: status_json(f)["pool"]["idle"] == 2, timeout=30), f.log()
    pre = status_json(f)["pool"]["preloader"]
    assert pre["state"] == "ready" and pre["pid"] != old and pre["starts"] == 2, pre
    assert status_json(f)["pool"]["boot_error"] is None


def sigkill_core_ends_all(f, doc):
    """SIGKILLs the core of <f>; the preloader and workers of <doc> (its status) must be gone
    within a second."""
    pids = [doc["pool"]["preloader"]["pid"]] + [w["pid"] for w in doc["workers"]]
    f.stop(signal.SIGKILL)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.02)
    assert [p for p in pids if alive(p)] == [], "outlived the core by more than 1 s"
    # The SIGKILLed core could not remove its instance directory; `ferry status` does.
    cli(f, "status")


def test_sigkill_of_the_core_takes_the_preloader_and_workers_down(ferry, kind):
    f = ferry(SMART[kind], "--min-instances", "2", "--max-pool-size", "2")
    sigkill_core_ends_all(f, idle_workers(f, 2))


def test_a_preloader_that_fails_to_boot_is_a_boot_failure(ferry):
    # Assumes no worker at boot: the first request asks for one.
    f = ferry(BOOT_ERROR, "--environment", "development", "--spawn-method", "smart",
              "--min-instances", "0")
    r = requests.get(f.url + "/", timeout=30)
    assert r.status_code == 503
    assert "pool e2e deliberate boot failure" in r.text, r.text
    pool = status_json(f)["pool"]
    assert "pool e2e deliberate boot failure" in pool["boot_error"]["summary"]
    # No spawn storm: inside the 10-second pause every request gets the 503 at once.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert requests.get(f.url + "/", timeout=30).status_code == 503
    pool = status_json(f)["pool"]
    assert pool["spawns_started"] == 1 and pool["preloader"]["starts"] == 1, pool
    assert pool["preloader"]["state"] == "off"
    human = cli(f, "status").stdout
    assert "boot error" in human and "deliberate boot failure" in human, human


def test_a_restart_into_a_broken_app_keeps_the_old_workers(ferry, tmp_path):
    # Assumes 2 workers; the new preloader cannot load the broken code.
    d = tmp_path / "app"
    shutil.copytree(SMART["wsgi"], d)
    f = ferry(str(d), "--min-instances", "2", "--max-pool-size", "2")
    doc = idle_workers(f, 2)
    old_pre = doc["pool"]["preloader"]["pid"]
    pids = {w["pid"] for w in doc["workers"]}
    (d / "passenger_wsgi.py").write_text("raise ImportError('broken deploy')\n")
    r = cli(f, "restart")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: status_json(f)["pool"]["restart_failed"], timeout=30), f.log()
    doc = status_json(f)
    assert {w["pid"] for w in doc["workers"] if w["state"] != "retiring"} == pids
    assert not alive(old_pre), "the old preloader was replaced"
    for _ in range(6):
        r = requests.get(f.url + "/pid", timeout=10)
        assert r.status_code == 200 and int(r.text) in pids


def test_the_preloader_exits_after_its_idle_time(ferry, kind):
    f = ferry(SMART[kind], "--min-instances", "1", "--max-pool-size", "2",
              "--max-preloader-idle-time", "1", "--dispatch-ahead", "0")
    doc = idle_workers(f, 1)
    pre = doc["pool"]["preloader"]["pid"]
    assert wait_for(lambda: status_json(f)["pool"]["preloader"]["state"] == "off", timeout=10)
    # It exited by itself (not killed), with status 0.
    last_exit = status_json(f)["pool"]["preloader"]["last_exit"]
    assert last_exit == "exited (idle time)", last_exit
    assert wait_for(lambda: not alive(pre))
    assert "no spawn for 1 s (max preloader idle time): exiting" in f.log()
    assert requests.get(f.url + "/", timeout=10).status_code == 200
    # On demand again: a second worker needs a new preloader.
    threads = [threading.Thread(target=lambda: requests.get(f.url + "/slow", timeout=30))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wait_for(lambda: status_json(f)["pool"]["preloader"]["starts"] == 2, timeout=30)


def test_direct_spawning_still_works(ferry, kind):
    f = ferry(SMART[kind], "--min-instances", "2", "--max-pool-size", "2",
              "--spawn-method", "direct")
    doc = idle_workers(f, 2)
    assert doc["pool"]["spawn_method"] == "direct" and doc["pool"]["preloader"] is None
    assert children_of(f.pid) == {w["pid"] for w in doc["workers"]}
    for w in doc["workers"]:
        assert w["spawn_method"] == "direct"
    for _ in range(4):
        booted, pid = requests.get(f.url + "/both", timeout=10).text.split()
        assert booted == pid, "a direct worker loads the app itself"


def test_the_rack_preloader_loads_what_the_first_request_would(ferry):
    # docs/performance.md "Smart spawning": the preloader resolves Rack's Mime autoload before
    # it forks, so no worker loads (and defines) it on its own; a direct worker still has it
    # pending, which shows the app itself does not load it. One worker each.
    smart = ferry(SMART["rack"], "--min-instances", "1", "--max-pool-size", "1")
    idle_workers(smart, 1)
    assert requests.get(smart.url + "/mime-autoload", timeout=10).text == "nil"
    direct = ferry(SMART["rack"], "--min-instances", "1", "--max-pool-size", "1",
                   "--spawn-method", "direct")
    idle_workers(direct, 1)
    assert requests.get(direct.url + "/mime-autoload", timeout=10).text == '"rack/mime"'


@pytest.mark.parametrize("method", ["smart", "direct"])
def test_a_rack_worker_sends_racks_reason_phrases_and_unknown_for_the_rest(ferry, method):
    # Rack::Utils::HTTP_STATUS_CODES' phrase, or "Unknown" for a code it lacks (599), from a
    # forked worker as from a direct one (src/ext/ruby/request.c keeps "Unknown" in one place).
    f = ferry(SMART["rack"], "--min-instances", "1", "--max-pool-size", "1",
              "--spawn-method", method)
    idle_workers(f, 1)
    for code, phrase in ((200, "OK"), (404, "Not Found"), (599, "Unknown")):
        r = requests.get(f.url + "/status/%d" % code, timeout=10)
        assert (r.status_code, r.reason) == (code, phrase)


def test_spawn_method_from_the_environment_and_ferry_json(ferry, tmp_path):
    d = tmp_path / "app"
    shutil.copytree(SMART["wsgi"], d)
    (d / "ferry.json").write_text('{"spawn_method": "direct"}')
    f = ferry(str(d), "--min-instances", "1")
    assert idle_workers(f, 1)["pool"]["spawn_method"] == "direct"
    g = ferry(str(d), "--min-instances", "1", env={"FERRY_SPAWN_METHOD": "smart"})
    assert idle_workers(g, 1)["pool"]["spawn_method"] == "smart"


def test_always_restart_txt_gives_every_request_a_fresh_worker(ferry, tmp_path):
    # Assumes one worker at a time (--max-pool-size 1): each request waits for a worker spawned
    # (and, under smart, a preloader booted) after the previous request.
    d = tmp_path / "app"
    shutil.copytree(SMART["wsgi"], d)
    (d / "tmp").mkdir()
    f = ferry(str(d), "--min-instances", "1", "--max-pool-size", "1")
    idle_workers(f, 1)
    s = requests.Session()
    first = s.get(f.url + "/pid", timeout=30).text
    assert s.get(f.url + "/pid", timeout=30).text == first
    (d / "tmp" / "always_restart.txt").write_text("")
    # The file is looked for at most once a second, when a request needs a worker.
    assert wait_for(lambda: s.get(f.url + "/pid", timeout=30).ok and
                    "always_restart.txt exists" in f.log(), timeout=10), f.log()
    pids, booted = set(), set()
    for _ in range(3):
        pids.add(requests.get(f.url + "/pid", timeout=30).text)
        booted.add(requests.get(f.url + "/booted", timeout=30).text)
    assert len(pids) == 3 and first not in pids, pids
    assert len(booted) == 3, "every request's worker came from a freshly booted preloader"
    assert "always_restart.txt exists: a fresh worker for every request" in f.log()
    (d / "tmp" / "always_restart.txt").unlink()
    assert wait_for(lambda: requests.get(f.url + "/pid", timeout=30).ok and
                    "always_restart.txt is gone" in f.log(), timeout=10), f.log()
    assert wait_for(lambda: status_json(f)["pool"]["idle"] == 1, timeout=30)
    b = requests.get(f.url + "/pid", timeout=30).text
    c = requests.get(f.url + "/pid", timeout=30).text
    assert b == c, "without the file workers serve many requests again"
    assert "always_restart.txt is gone" in f.log()


def test_a_loader_that_does_not_preload_is_spawned_directly(ferry):
    # The fake loader of test_http_rfc2.py implements only the spawn handshake (a plain
    # four-item ready whatever FERRY_PRELOAD says): ferry notices and spawns it directly.
    wire = app("tests", "e2e", "apps", "wsgi", "http_wire")
    f = ferry(wire, "--min-instances", "1",
              env={"FERRY_LOADERS_DIR": os.path.join(wire, "loaders")})
    assert requests.get(f.url + "/", timeout=20).text == "ok"
    doc = idle_workers(f, 1)
    assert doc["pool"]["spawn_method"] == "direct", doc["pool"]
    assert doc["workers"][0]["spawn_method"] == "direct"
    assert "the app's loader does not preload" in f.log()
    assert doc["pool"]["boot_error"] is None


def test_refork_after_n_requests_forks_the_workers_from_a_warmed_one(ferry, kind):
    # Assumes 2 workers, no dispatch-ahead. Once a worker has served 10 requests it forks the next
    # preloader; every worker is then replaced by a fork of that process, so the cache the warmed
    # worker filled lazily (/warm) is in each new worker without a request of its own; no request
    # fails meanwhile. A restart boots a cold preloader again, which re-forks again.
    f = ferry(SMART[kind], "--min-instances", "2", "--max-pool-size", "2",
              "--dispatch-ahead", "0", "--refork-after", "10")
    doc = idle_workers(f, 2)
    first = doc["pool"]["preloader"]["pid"]
    old = {w["pid"] for w in doc["workers"]}
    s = requests.Session()
    warmed = set()
    for _ in range(60):
        r = s.get(f.url + "/warm", timeout=10)
        assert r.status_code == 200, r.text
        warmed.add(int(r.text))
    assert warmed <= old | set(), warmed

    def reforked():
        d = status_json(f)
        pre = d["pool"]["preloader"]
        return (pre["reforks"] == 1 and d["pool"]["reforks"] == 1 and pre["pid"] != first
                and pre["state"] == "ready" and d["pool"]["idle"] == 2
                and not d["pool"]["restarting"]
                and not old & {w["pid"] for w in d["workers"]})
    assert wait_for(reforked, timeout=30), (status_json(f), f.log())
    doc = status_json(f)
    pre = doc["pool"]["preloader"]
    assert wait_for(lambda: not alive(first), timeout=10), "the old preloader stopped"
    for w in doc["workers"]:
        assert ppid_of(w["pid"]) == pre["pid"], (w, pre)
    # Each new worker already has the cache of the worker the preloader was forked from.
    seen = set()
    for _ in range(6):
        pid = int(s.get(f.url + "/pid", timeout=10).text)
        cache = s.get(f.url + "/warmed", timeout=10).text
        assert cache != "cold" and int(cache) in old, (pid, cache)
        seen.add(pid)
    assert seen <= {w["pid"] for w in doc["workers"]}
    # The code was still loaded once: by the first preloader.
    assert s.get(f.url + "/booted", timeout=10).text == str(first)
    log = f.log()
    assert "re-fork: this worker forks the next preloader" in log, log
    assert "re-forked: the app's new preloader" in log, log
    assert "preloader  pid %d, ready" % pre["pid"] in cli(f, "status").stdout

    # A restart: a preloader booted from the code (cold), which re-forks once more.
    assert cli(f, "restart").returncode == 0
    assert wait_for(lambda: status_json(f)["pool"]["preloader"]["starts"] == 2
                    and not status_json(f)["pool"]["restarting"]
                    and status_json(f)["pool"]["idle"] == 2, timeout=30), f.log()
    assert s.get(f.url + "/warmed", timeout=10).text == "cold"
    for _ in range(40):
        assert s.get(f.url + "/warm", timeout=10).status_code == 200
    assert wait_for(lambda: status_json(f)["pool"]["reforks"] == 2
                    and not status_json(f)["pool"]["restarting"]
                    and status_json(f)["pool"]["idle"] == 2, timeout=30), f.log()
    # Re-forked processes are not below the core in the process tree, but the core owns them:
    # SIGKILL of the core ends the preloader and every worker within a second.
    sigkill_core_ends_all(f, status_json(f))
