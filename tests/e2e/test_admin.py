"""`ferry status` and `ferry stop` (docs/operations.md, "Watching" and "Stopping"): instances
found through their instance directories, the admin socket's password and uid checks, the
status document, graceful stop."""
import glob
import json
import os
import socket
import struct
import subprocess
import threading
import time

import pytest
import requests

from conftest import FERRY_BIN, app, wait_for

BASIC = app("tests", "e2e", "apps", "wsgi", "pool_basic")
BOOT_ERROR = app("tests", "e2e", "apps", "wsgi", "pool_boot_error")


def cli(f, *args, tmpdir=None, timeout=30):
    """Runs `ferry <args>` with the instance's TMPDIR; returns the CompletedProcess."""
    env = dict(os.environ, TMPDIR=tmpdir or f.tmpdir)
    return subprocess.run([FERRY_BIN] + list(args), env=env, capture_output=True, text=True,
                          timeout=timeout)


def status_json(f):
    """The status document of <f> alone (other instances may share its TMPDIR)."""
    r = cli(f, "status", "--json", "--pid", str(f.pid))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    return json.loads(lines[0])


def instance_dir(f):
    dirs = glob.glob(os.path.join(f.tmpdir, "ferry.%d.*" % f.pid))
    assert len(dirs) == 1, dirs
    return dirs[0]


def admin_connect(f):
    props = json.load(open(os.path.join(instance_dir(f), "properties.json")))
    address = props["admin"]
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    if address.startswith("abstract:"):
        s.connect("\0" + address[len("abstract:"):])
    else:
        s.connect(address[len("unix:"):])
    return s


def scalar(data):
    return struct.pack(">I", len(data)) + data


def array(*items):
    payload = b"".join(i.encode() + b"\0" for i in items)
    return struct.pack(">H", len(payload)) + payload


def read_all(s):
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_status_shows_the_app_and_its_workers(ferry):
    f = ferry(BASIC, "--min-instances", "2", "--max-pool-size", "3")
    assert wait_for(lambda: status_json(f)["pool"]["idle"] == 2)
    for _ in range(3):
        assert requests.get(f.url + "/", timeout=10).status_code == 200
    # a worker is checked in when it closes the connection, a moment after the client has the
    # response
    assert wait_for(lambda: status_json(f)["pool"]["requests_done"] == 3)
    assert wait_for(lambda: status_json(f)["pool"]["idle"] == 2)
    doc = status_json(f)
    assert doc["ferry"]["pid"] == f.pid
    assert doc["ferry"]["url"] == f.url
    assert doc["ferry"]["stopping"] is False
    assert doc["ferry"]["rss_kib"] > 0
    assert doc["app"] == {"root": str(BASIC), "type": "wsgi", "interpreter": "/usr/bin/python3",
                          "interpreter_source": "PATH"}
    pool = doc["pool"]
    assert pool["max_pool_size"] == 3 and pool["min_instances"] == 2
    assert pool["requests_done"] == 3
    assert pool["boot_error"] is None
    workers = doc["workers"]
    assert len(workers) == 2
    # Smart spawning (the default for WSGI): the core's one child is the preloader, whose
    # children the workers are (docs/architecture.md "Smart spawning").
    children = set(int(p) for p in open("/proc/%d/task/%d/children" % (f.pid, f.pid)).read().split())
    preloader = pool["preloader"]["pid"]
    assert children == {preloader}
    forked = set(int(p) for p in open("/proc/%d/task/%d/children" % (preloader, preloader)).read().split())
    assert {w["pid"] for w in workers} == forked
    assert sum(w["requests"] for w in workers) == 3
    for w in workers:
        assert w["state"] == "idle"
        assert w["rss_kib"] > 0 and 0 < w["pss_kib"] <= w["rss_kib"]

    human = cli(f, "status")
    assert human.returncode == 0, human.stderr
    assert "pid %d" % f.pid in human.stdout
    assert str(BASIC) in human.stdout and f.url in human.stdout
    assert "2 of max 3: 0 busy, 2 idle" in human.stdout
    for w in workers:
        assert "\n  %-8d idle" % w["pid"] in human.stdout, human.stdout


def test_status_counts_busy_workers_and_the_queue(ferry):
    # Assumes the second request waits in the queue: with dispatch-ahead it may
    # be written into the busy worker when both arrive within its first
    # millisecond, so it is off here.
    f = ferry(BASIC, "--min-instances", "1", "--max-pool-size", "1",
              "--dispatch-ahead", "0")
    assert wait_for(lambda: status_json(f)["pool"]["idle"] == 1)   # booted
    results = []

    def slow():
        results.append(requests.get(f.url + "/slow?ms=1500", timeout=20).status_code)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        def one_busy_one_queued():
            pool = status_json(f)["pool"]
            return pool["queued"] == 1 and pool["busy"] == 1
        assert wait_for(one_busy_one_queued, timeout=5)
        doc = status_json(f)
        assert doc["pool"]["busy"] == 1 and doc["pool"]["queued"] == 1
        assert [w["state"] for w in doc["workers"]] == ["busy"]
        assert doc["pool"]["connections"] >= 2
    finally:
        for t in threads:
            t.join()
    assert results == [200, 200]


def test_status_shows_the_boot_error(ferry):
    f = ferry(BOOT_ERROR, "--min-instances", "1")
    assert wait_for(lambda: status_json(f)["pool"]["boot_error"] is not None)
    doc = status_json(f)
    err = doc["pool"]["boot_error"]
    assert "deliberate boot failure" in err["summary"]
    assert err["error_id"] in f.log()
    assert doc["pool"]["boot_failures"] >= 1
    human = cli(f, "status").stdout
    assert "boot error" in human and err["error_id"] in human


def test_stop_shuts_down_gracefully_and_waits(ferry):
    f = ferry(BASIC)
    assert wait_for(lambda: status_json(f)["pool"]["idle"] == 1)   # booted
    result = {}

    def slow():
        result["r"] = requests.get(f.url + "/slow?ms=1500", timeout=20)

    t = threading.Thread(target=slow)
    t.start()
    assert wait_for(lambda: status_json(f)["pool"]["busy"] == 1, timeout=5)
    r = cli(f, "stop")
    t.join()
    assert r.returncode == 0, r.stderr
    assert "pid %d stopped" % f.pid in r.stdout
    assert result["r"].status_code == 200 and result["r"].text == "slept 1500"
    assert f.wait(5) == 0
    assert "ferry stop: shutting down" in f.log()
    assert not glob.glob(os.path.join(f.tmpdir, "ferry.*"))


def test_no_instance_is_an_error(ferry, tmp_path):
    for command in ("status", "stop"):
        r = subprocess.run([FERRY_BIN, command], env=dict(os.environ, TMPDIR=str(tmp_path)),
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert "no running ferry instance" in r.stderr
        assert str(tmp_path) in r.stderr


def test_dead_instance_directory_is_removed(ferry, tmp_path):
    # a pid that cannot be alive: above the kernel's pid_max
    pid_max = int(open("/proc/sys/kernel/pid_max").read())
    stale = tmp_path / ("ferry.%d.deadbeef" % (pid_max + 1))
    stale.mkdir(mode=0o700)
    (stale / "properties.json").write_text('{"pid": %d}' % (pid_max + 1))
    r = subprocess.run([FERRY_BIN, "status"], env=dict(os.environ, TMPDIR=str(tmp_path)),
                       capture_output=True, text=True, timeout=30)
    assert not stale.exists()
    assert "removed 1 instance directory left by dead instances" in r.stderr
    assert r.returncode == 1


def test_stop_with_several_instances_needs_a_pid(ferry):
    a = ferry(BASIC)
    b = ferry(BASIC, env={"TMPDIR": a.tmpdir})
    r = cli(a, "stop")
    assert r.returncode == 2
    assert "2 instances are running" in r.stderr
    assert "--pid %d" % a.pid in r.stderr and "--pid %d" % b.pid in r.stderr
    both = cli(a, "status", "--json")
    assert both.returncode == 0, both.stderr
    assert sorted(json.loads(line)["ferry"]["pid"] for line in both.stdout.splitlines()) == \
        sorted([a.pid, b.pid])
    r = cli(a, "stop", "--pid", str(b.pid))
    assert r.returncode == 0, r.stderr
    assert b.wait(5) == 0
    assert a.proc.poll() is None
    assert requests.get(a.url + "/", timeout=10).status_code == 200
    r = cli(a, "status", "--pid", str(b.pid))
    assert r.returncode == 1 and "no running ferry with pid %d" % b.pid in r.stderr


@pytest.mark.parametrize("args", [["--pid"], ["--pid", "x"], ["--pid", "0"], ["--bogus"],
                                  ["--timeout", "5"]])
def test_bad_status_arguments(ferry, tmp_path, args):
    r = subprocess.run([FERRY_BIN, "status"] + args, env=dict(os.environ, TMPDIR=str(tmp_path)),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.startswith("ferry status: ")


def test_wrong_password_gets_no_reply_and_a_log_line(ferry):
    f = ferry(BASIC)
    s = admin_connect(f)
    s.sendall(scalar(b"0" * 32) + array("status"))
    assert read_all(s) == b""
    s.close()
    assert wait_for(lambda: "wrong password: connection closed" in f.log())
    assert f.proc.poll() is None


def test_unknown_command_gets_no_reply_and_a_log_line(ferry):
    f = ferry(BASIC)
    password = open(os.path.join(instance_dir(f), "admin_password"), "rb").read()
    s = admin_connect(f)
    s.sendall(scalar(password) + array("rm", "-rf"))
    assert read_all(s) == b""
    s.close()
    assert wait_for(lambda: 'unknown command "rm"' in f.log())
    # and the right one still works
    s = admin_connect(f)
    s.sendall(scalar(password) + array("status"))
    reply = read_all(s)
    s.close()
    (length,) = struct.unpack(">I", reply[:4])
    assert len(reply) == 4 + length
    assert json.loads(reply[4:])["ferry"]["pid"] == f.pid


def test_oversized_password_message_is_refused(ferry):
    f = ferry(BASIC)
    s = admin_connect(f)
    s.sendall(struct.pack(">I", 1 << 30))
    assert read_all(s) == b""
    s.close()
    assert wait_for(lambda: "malformed message" in f.log())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
def test_another_uid_is_refused_even_with_the_password(ferry):
    f = ferry(BASIC)
    password = open(os.path.join(instance_dir(f), "admin_password"), "rb").read()
    props = json.load(open(os.path.join(instance_dir(f), "properties.json")))
    code = (
        "import os, socket, struct, sys\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX); s.settimeout(10)\n"
        "a = sys.argv[1]\n"
        "s.connect('\\0' + a[9:] if a.startswith('abstract:') else a[5:])\n"
        "pw = bytes.fromhex(sys.argv[2])\n"
        "try:\n"
        "    s.sendall(struct.pack('>I', len(pw)) + pw + struct.pack('>H', 7) + b'status\\0')\n"
        "except (BrokenPipeError, ConnectionResetError):\n"
        "    pass  # closed at once: refused before reading\n"
        "data = b''\n"
        "while True:\n"
        "    try:\n"
        "        c = s.recv(65536)\n"
        "    except ConnectionResetError:\n"
        "        break\n"
        "    if not c:\n"
        "        break\n"
        "    data += c\n"
        "print(len(data))\n")
    if not props["admin"].startswith("abstract:"):
        pytest.skip("a socket file in the 0700 instance directory is out of reach anyway")
    r = subprocess.run(["/usr/bin/python3", "-c", code, props["admin"], password.hex()],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"
    assert wait_for(lambda: "uid=65534: refused (another user)" in f.log())


def test_silent_client_is_closed_after_the_timeout_without_blocking_others(ferry):
    f = ferry(BASIC)
    idle = admin_connect(f)   # sends nothing
    t0 = time.monotonic()
    assert status_json(f)["ferry"]["pid"] == f.pid   # served meanwhile
    assert time.monotonic() - t0 < 5
    idle.settimeout(15)
    assert read_all(idle) == b""
    assert time.monotonic() - t0 >= 9
    idle.close()
    assert "no complete command within 10000 ms" in f.log()


def test_admin_socket_file_in_fallback_mode(ferry):
    f = ferry(BASIC, env={"FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS": "1"})
    props = json.load(open(os.path.join(instance_dir(f), "properties.json")))
    assert props["admin"].startswith("unix:" + instance_dir(f) + "/")
    assert oct(os.stat(os.path.join(instance_dir(f), "admin_password")).st_mode & 0o777) == "0o600"
    assert status_json(f)["ferry"]["pid"] == f.pid
    assert f.stop() == 0   # the fixture then finds no socket file left
