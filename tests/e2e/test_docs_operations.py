"""What docs/operations.md promises an operator, checked against a running `ferry start`: the
stdout line, the instance directory and properties.json, the log and access-log formats, and
the shutdown sequence."""

import glob
import json
import os
import re
import shutil
import signal
import socket
import stat
import threading
import time

import requests

from conftest import REPO, wait_for

HELLO_WSGI = os.path.join(REPO, "examples", "hello-wsgi")
CONFORMANCE_WSGI = os.path.join(REPO, "tests", "conformance", "apps", "wsgi", "main")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(alert|error|warn|notice|info|debug)\] "
                      r"[a-z]+: ")


def test_instance_directory_and_properties(ferry, tmp_path):
    app = tmp_path / 'my "app" \\ dir'
    app.mkdir()
    shutil.copy(os.path.join(HELLO_WSGI, "passenger_wsgi.py"), app)
    f = ferry(app)
    dirs = glob.glob(os.path.join(f.tmpdir, "ferry.%d.*" % f.pid))
    assert len(dirs) == 1, os.listdir(f.tmpdir)
    assert re.fullmatch(r"ferry\.%d\.[0-9a-f]+" % f.pid, os.path.basename(dirs[0]))
    assert stat.S_IMODE(os.stat(dirs[0]).st_mode) == 0o700
    props_path = os.path.join(dirs[0], "properties.json")
    assert wait_for(lambda: os.path.exists(props_path))
    assert stat.S_IMODE(os.stat(props_path).st_mode) == 0o600
    with open(props_path) as fh:
        props = json.load(fh)   # valid JSON although the path holds '"' and '\'
    assert props == {"pid": f.pid, "address": "127.0.0.1", "port": f.port, "socket": "",
                     "url": f.url, "app_root": str(app), "app_type": "wsgi",
                     "version": props["version"], "admin": props["admin"]}
    assert re.fullmatch(r"abstract:ferry\.ferry-admin\.%d\.[0-9a-f]{16}" % f.pid, props["admin"])
    password_path = os.path.join(dirs[0], "admin_password")
    assert stat.S_IMODE(os.stat(password_path).st_mode) == 0o600
    assert re.fullmatch(r"[0-9a-f]{32}", open(password_path).read())
    assert requests.get(f.url + "/", timeout=10).status_code == 200
    assert f.stop() == 0
    assert not os.path.exists(dirs[0]), "removed at a clean exit"


def test_stdout_line_and_log_format(ferry):
    f = ferry(HELLO_WSGI)
    assert requests.get(f.url + "/", timeout=10).status_code == 200
    assert f.stop(signal.SIGINT) == 0
    log = f.log()
    assert re.search(r"^ferry \S+ serving %s \(wsgi, /\S+ from PATH\) on http://127\.0\.0\.1:%d pid %d$"
                     % (re.escape(HELLO_WSGI), f.port, f.pid), log, re.M), log
    for line in log.splitlines():
        if line.startswith("ferry "):
            continue
        assert LOG_LINE.match(line), line
    assert re.search(r"\[notice\] start: app=%s type=wsgi env=production url=http://127\.0\.0\.1:%d "
                     r"pid=%d instance=\S+/ferry\.%d\.[0-9a-f]+ interpreter=/\S+ interpreter_from=PATH: serving"
                     % (re.escape(HELLO_WSGI), f.port, f.pid, f.pid), log), log
    assert re.search(r"\[info\] app: app=%s pid=\d+: " % re.escape(HELLO_WSGI), log), \
        "worker output is logged at info with the app and pid"
    assert "[notice] start: signal=Interrupt: shutting down (timeout 30000 ms)" in log
    assert "[notice] start: pid=%d: stopped" % f.pid in log


def test_log_level_warn_hides_worker_output(ferry):
    f = ferry(HELLO_WSGI, "--log-level", "warn")
    assert requests.get(f.url + "/", timeout=10).status_code == 200
    assert f.stop() == 0
    log = f.log()
    assert "[info]" not in log and "[notice]" not in log, log
    assert "serving" in log, "the stdout line is not part of the log"


def test_access_log_format(ferry, tmp_path):
    access = tmp_path / "access.log"
    f = ferry(CONFORMANCE_WSGI, "--access-log", str(access))
    r = requests.get(f.url + "/hello?x=1", headers={"User-Agent": 'my "agent"',
                                                    "Referer": "http://ref/"}, timeout=10)
    assert r.status_code == 200
    assert requests.get(f.url + "/nope", timeout=10).status_code == 404
    assert f.stop() == 0
    lines = access.read_text().splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(r'127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                        r'"GET /hello\?x=1 HTTP/1\.1" 200 12 "http://ref/" "my \\x22agent\\x22" '
                        r'\d+\.\d{3} [0-9a-f]{32}', lines[0]), lines[0]
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^\]]+\] "GET /nope HTTP/1\.1" 404 10 "-" '
                        r'"python-requests/[^"]+" \d+\.\d{3} [0-9a-f]{32}', lines[1]), lines[1]


def test_shutdown_refuses_new_connections_finishes_in_flight_and_ignores_a_second_signal(ferry):
    f = ferry(CONFORMANCE_WSGI)
    result = {}

    def slow():
        result["r"] = requests.get(f.url + "/slow?ms=1500", timeout=20)

    t = threading.Thread(target=slow)
    t.start()
    assert wait_for(lambda: "worker ready" in f.log())
    time.sleep(0.3)
    f.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: "shutting down" in f.log())
    try:
        socket.create_connection(("127.0.0.1", f.port), timeout=2).close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused, "the listener closes at once"
    f.proc.send_signal(signal.SIGINT)
    t.join(20)
    assert result["r"].status_code == 200
    assert result["r"].text == "slept 1500\n"
    assert result["r"].headers["Connection"] == "close"
    assert f.wait() == 0
    assert "signal=Interrupt: already shutting down" in f.log()
