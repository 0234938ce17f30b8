"""docs/c-sdk.md cannot drift from the code: its complete app, built with its plain `cc` command
line against include/ferry.h alone, is served by `ferry start` and behaves as the page says, and
its table of return codes matches the enum in include/ferry.h."""

import os
import re
import shutil
import subprocess

import pytest
import requests

from conftest import REPO, raw_request

DOC = os.path.join(REPO, "docs", "c-sdk.md")


def doc_text():
    with open(DOC) as f:
        return f.read()


def app_source():
    m = re.search(r"## A complete app\n.*?```c\n(.*?)```", doc_text(), re.S)
    assert m, "no ```c block under '## A complete app'"
    return m.group(1)


def cc_command():
    m = re.search(r"```sh\n(cc .*?)\n```", doc_text())
    assert m, "no plain cc command line in a ```sh block"
    return m.group(1)


@pytest.fixture
def c_app(tmp_path):
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    d = tmp_path / "myapp"
    d.mkdir()
    (d / "app.c").write_text(app_source())
    cmd = cc_command().replace('"$FERRY_SRC/include"', os.path.join(REPO, "include"))
    assert "$" not in cmd, cmd
    r = subprocess.run(cmd + " -Werror", shell=True, cwd=d, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, "%s\n%s" % (cmd, r.stderr)
    assert (d / "app.so").exists()
    return d


def test_documented_app_builds_with_the_plain_cc_line_and_is_served(ferry, c_app):
    f = ferry(c_app)
    assert "(c)" in f.log()
    r = requests.get(f.url + "/", timeout=10)
    assert r.status_code == 200
    assert r.text == "hello from 127.0.0.1, request 1 of this worker\n"
    assert r.headers["Content-Type"] == "text/plain"
    assert r.headers["X-Powered-By"].startswith("ferry/")

    body = bytes(range(256)) * 1000
    r = requests.post(f.url + "/echo", data=body, headers={"Content-Type": "text/x-demo"},
                      timeout=10)
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["Content-Type"] == "text/x-demo"

    out = raw_request(f.port, b"GET /stream?n=3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head, _, chunked = out.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert b"Content-Length" not in head
    assert chunked.endswith(b"0\r\n\r\n")
    assert requests.get(f.url + "/stream?n=3", timeout=10).text == "line 0\nline 1\nline 2\n"

    r = requests.get(f.url + "/fail", timeout=10)
    assert r.status_code == 500
    assert r.text == "Internal Server Error\n"
    r = requests.get(f.url + "/nope", timeout=10)
    assert r.status_code == 404

    r = requests.head(f.url + "/", timeout=10)
    assert r.status_code == 200 and r.content == b""
    assert f.stop() == 0

    log = f.log()
    assert re.search(r"\[info\] app: booted in %s \(production\)" % re.escape(str(c_app)), log)
    assert "[warn] app: path=/fail: failing on purpose" in log
    assert "[error] worker: method=GET path=/fail rc=-1 (error): app failed; answering 500" in log
    assert "[error] worker: method=GET path=/fail rc=-1 (error): app failed; answering 500" in \
        doc_text()
    assert re.search(r"\[notice\] app: stopping after \d+ requests", log), "on_shutdown ran"


def test_return_code_table_matches_ferry_h():
    with open(os.path.join(REPO, "include", "ferry.h")) as f:
        header = f.read()
    enum = dict((name, int(value)) for name, value in
                re.findall(r"^\s+(FERRY_[A-Z]+) = (-?\d+),", header, re.M))
    documented = dict((name, int(value)) for name, value in
                      re.findall(r"^\| `(FERRY_[A-Z]+)` \((-?\d+)\) \|", doc_text(), re.M))
    assert len(enum) >= 7, enum
    assert documented == enum


def test_every_sdk_function_is_documented():
    with open(os.path.join(REPO, "include", "ferry.h")) as f:
        header = f.read()
    functions = set(re.findall(r"\b(ferry_[a-z_]+)\(", header)) - {"ferry_app_init_fn"}
    assert len(functions) > 15, functions
    text = doc_text()
    missing = sorted(fn for fn in functions if "`%s" % fn not in text and fn + "(" not in text)
    assert missing == []
