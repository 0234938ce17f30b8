"""--access-log-format (docs/operations.md, "The access log"): combined (the default: combined +
request time + request id) or json (one object per line)."""
import json
import os
import subprocess

import requests

from conftest import free_port

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "wsgi", "observe")


def test_json_lines_carry_every_field(ferry, tmp_path):
    access = tmp_path / "access.log"
    f = ferry(APP, "--access-log", str(access), "--access-log-format", "json")
    r = requests.get(f.url + "/ok?q=1", headers={"User-Agent": 'ua "q" \\', "Referer": "http://r/"},
                     timeout=10)
    assert requests.get(f.url + "/missing", timeout=10).status_code == 404
    assert requests.post(f.url + "/ok", data=b"x" * 10, timeout=10).status_code == 200
    assert f.stop() == 0
    lines = access.read_text().splitlines()
    assert len(lines) == 3, lines
    docs = [json.loads(l) for l in lines]
    d = docs[0]
    assert d["method"] == "GET" and d["uri"] == "/ok?q=1" and d["protocol"] == "HTTP/1.1"
    assert d["status"] == 200 and d["bytes"] == 2 and d["remote_addr"] == "127.0.0.1"
    assert d["referer"] == "http://r/" and d["user_agent"] == 'ua "q" \\'
    assert d["request_id"] == r.headers["X-Request-Id"]
    assert d["worker_pid"] > 0 and d["reason"] == ""
    assert d["time"].endswith("Z") and isinstance(d["request_time"], float)
    assert sum(v for k, v in d["timeline"].items() if k != "total_ms") == \
        d["timeline"]["total_ms"]
    assert docs[1]["status"] == 404 and docs[1]["referer"] is None
    assert docs[2]["method"] == "POST"


def test_unknown_format_is_refused(ferry_bin, tmp_path):
    r = subprocess.run([ferry_bin, "start", APP, "--port", str(free_port()),
                        "--access-log-format", "apache"], capture_output=True, timeout=30,
                       env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert r.returncode == 2
    assert b"'apache' is not one of combined|json" in r.stderr
