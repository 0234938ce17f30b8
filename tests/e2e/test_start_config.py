"""`ferry start` configuration: --help, errors (one clear line, exit 2 for usage, 1 at run
time, nothing spawned), app detection, precedence flags > environment > ferry.json > defaults."""

import json
import os
import shutil
import socket
import subprocess
import time

import pytest
import requests


def run_start(ferry_bin, *args, env=None, timeout=10):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([ferry_bin, "start", *args], capture_output=True, text=True,
                          timeout=timeout, env=full)


@pytest.fixture
def wsgi_app(tmp_path, repo):
    d = tmp_path / "app"
    d.mkdir()
    shutil.copy(os.path.join(repo, "examples", "hello-wsgi", "passenger_wsgi.py"), d)
    return d


def test_help_documents_every_option_with_its_default(ferry_bin):
    r = run_start(ferry_bin, "--help")
    assert r.returncode == 0
    for opt in ("--address", "--port", "--socket", "--environment", "--max-pool-size",
                "--min-instances", "--pool-idle-time", "--max-request-queue-size",
                "--max-requests", "--max-request-time", "--log-file", "--access-log",
                "--shutdown-timeout", "--header-timeout", "--body-timeout", "--max-body-size",
                "--max-uri-length", "--max-header-size", "--max-header-count",
                "--body-buffer-threshold", "--trusted-proxy", "--log-level"):
        assert opt in r.stdout
    assert "(default: 3000; env FERRY_PORT)" in r.stdout
    assert "(default: 6; env FERRY_MAX_POOL_SIZE)" in r.stdout


def test_unknown_option_is_a_usage_error(ferry_bin, wsgi_app):
    r = run_start(ferry_bin, str(wsgi_app), "--frobnicate", "1")
    assert r.returncode == 2
    assert "unknown option '--frobnicate'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,needle", [
    (["--port", "abc"], "--port: 'abc' is not a non-negative integer"),
    (["--port", "70000"], "--port: 70000 is out of range"),
    (["--environment", "staging"], "--environment: 'staging' is not one of"),
    (["--max-body-size", "12x"], "--max-body-size: '12x' is not a size"),
    (["--log-level", "loud"], "--log-level: 'loud' is not a log level"),
    (["--port"], "option '--port' needs a value"),
])
def test_bad_value_is_a_usage_error(ferry_bin, wsgi_app, args, needle):
    r = run_start(ferry_bin, str(wsgi_app), *args)
    assert r.returncode == 2
    assert needle in r.stderr


def test_bad_environment_value_names_the_variable(ferry_bin, wsgi_app):
    r = run_start(ferry_bin, str(wsgi_app), env={"FERRY_MAX_POOL_SIZE": "many"})
    assert r.returncode == 2
    assert "FERRY_MAX_POOL_SIZE: 'many'" in r.stderr


def test_bad_config_file_is_a_usage_error(ferry_bin, wsgi_app):
    (wsgi_app / "ferry.json").write_text('{"port": ')
    r = run_start(ferry_bin, str(wsgi_app))
    assert r.returncode == 2
    assert "ferry.json" in r.stderr
    (wsgi_app / "ferry.json").write_text('{"no_such_key": 1}')
    r = run_start(ferry_bin, str(wsgi_app))
    assert r.returncode == 2
    assert "unknown key 'no_such_key'" in r.stderr


def test_port_in_use_fails_before_spawning(ferry_bin, wsgi_app):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = run_start(ferry_bin, str(wsgi_app), "--port", str(port))
    finally:
        s.close()
    assert r.returncode == 1
    assert "port is in use" in r.stderr
    assert "spawning" not in r.stderr


def test_missing_app_dir(ferry_bin, tmp_path):
    r = run_start(ferry_bin, str(tmp_path / "nope"))
    assert r.returncode == 1
    assert "No such file or directory" in r.stderr


def test_app_dir_that_is_a_file(ferry_bin, tmp_path):
    p = tmp_path / "file"
    p.write_text("x")
    r = run_start(ferry_bin, str(p))
    assert r.returncode == 1
    assert "not a directory" in r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory")
def test_unreadable_app_dir(ferry_bin, wsgi_app):
    os.chmod(wsgi_app, 0)
    try:
        r = run_start(ferry_bin, str(wsgi_app))
    finally:
        os.chmod(wsgi_app, 0o755)
    assert r.returncode == 1
    assert "not readable" in r.stderr


def test_directory_without_an_app_lists_what_it_looked_for(ferry_bin, tmp_path):
    r = run_start(ferry_bin, str(tmp_path))
    assert r.returncode == 1
    for name in ("config.ru", "passenger_wsgi.py", "wsgi.py", "app.py", "*.so"):
        assert name in r.stderr


def test_detects_rack_and_wsgi(ferry, repo):
    f = ferry(os.path.join(repo, "examples", "hello-rack"))
    assert "(rack, " in f.log()
    g = ferry(os.path.join(repo, "examples", "hello-wsgi"))
    assert "(wsgi, " in g.log()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_precedence_flags_over_env_over_file(ferry, wsgi_app):
    file_port, env_port, flag_port = free_port(), free_port(), free_port()
    (wsgi_app / "ferry.json").write_text(json.dumps({"port": file_port, "max-pool-size": 2}))
    f = ferry(wsgi_app, "--port", str(flag_port), env={"FERRY_PORT": str(env_port)})
    assert f.port == flag_port
    assert requests.get(f.url + "/", timeout=10).status_code == 200
    assert "max_pool_size=2" in f.log()
    assert f.stop() == 0

    g = ferry(wsgi_app, env={"FERRY_PORT": str(env_port), "FERRY_MAX_POOL_SIZE": "3"})
    assert requests.get(g.url + "/", timeout=10).status_code == 200
    assert "max_pool_size=3" in g.log()
    assert g.stop() == 0

    # file only: see test_file_port_is_used_without_flag_or_env


def test_file_port_is_used_without_flag_or_env(ferry_bin, wsgi_app, tmp_path):
    port = free_port()
    (wsgi_app / "ferry.json").write_text(json.dumps({"port": port, "log_file": str(tmp_path / "l")}))
    env = dict(os.environ)
    env.pop("FERRY_PORT", None)
    env["TMPDIR"] = str(tmp_path)
    p = subprocess.Popen([ferry_bin, "start", str(wsgi_app)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    ok = False
    while time.monotonic() < deadline and not ok:
        try:
            ok = requests.get("http://127.0.0.1:%d/" % port, timeout=2).status_code == 200
        except requests.ConnectionError:
            time.sleep(0.1)
    p.terminate()
    assert p.wait(15) == 0
    assert ok
    assert "serving" in (tmp_path / "l").read_text()   # log_file came from the file too


def test_unix_socket_listener(ferry, conformance_app, tmp_path):
    sock = str(tmp_path / "ferry.sock")
    f = ferry(conformance_app("wsgi"), "--socket", sock)
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    out = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        out += b
    s.close()
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello world\n")
    assert f.stop() == 0
    assert not os.path.exists(sock)
