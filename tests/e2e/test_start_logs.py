"""Log files: --log-file and --access-log are appended to, and SIGUSR1 reopens both (what
logrotate's postrotate sends), so a rotated file is closed and a new one created."""
import os
import signal
import socket

import requests

from conftest import app, wait_for

HELLO = app("examples", "hello-wsgi")


def read(path):
    with open(path) as f:
        return f.read()


def test_sigusr1_reopens_the_log_files(ferry, tmp_path):
    log = tmp_path / "ferry.log"
    access = tmp_path / "access.log"
    f = ferry(HELLO, "--log-file", str(log), "--access-log", str(access), wait=False)
    assert wait_for(lambda: log.exists() and "serving" in read(log))
    assert wait_for(lambda: requests.get(f.url + "/first", timeout=5).status_code == 404)
    assert wait_for(lambda: "/first" in read(access))

    os.rename(log, tmp_path / "ferry.log.1")
    os.rename(access, tmp_path / "access.log.1")
    os.kill(f.pid, signal.SIGUSR1)
    assert wait_for(lambda: log.exists() and "log files reopened" in read(log)), \
        read(tmp_path / "ferry.log.1")
    assert requests.get(f.url + "/second", timeout=5).status_code == 404
    assert wait_for(lambda: access.exists() and "/second" in read(access))

    assert "/second" not in read(tmp_path / "access.log.1")
    assert "/first" not in read(access)
    assert "serving" in read(tmp_path / "ferry.log.1")
    assert f.stop() == 0
    assert "stopped" in read(log)


def test_a_log_file_that_cannot_be_reopened_keeps_the_old_one(ferry, tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    log = logdir / "ferry.log"
    f = ferry(HELLO, "--log-file", str(log), wait=False)
    assert wait_for(lambda: log.exists() and "serving" in read(log))
    os.rename(logdir, tmp_path / "moved")     # the configured path's directory is gone
    os.kill(f.pid, signal.SIGUSR1)
    moved = tmp_path / "moved" / "ferry.log"
    assert wait_for(lambda: "cannot reopen" in read(moved)), read(moved)
    assert requests.get(f.url + "/", timeout=5).status_code == 200
    assert f.stop() == 0


def test_pid_file_holds_the_pid_while_running_and_is_removed_at_exit(ferry, tmp_path):
    pid_file = tmp_path / "run" / "ferry.pid"
    pid_file.parent.mkdir()
    f = ferry(HELLO, "--pid-file", str(pid_file))
    assert read(pid_file) == "%d\n" % f.pid
    assert sorted(os.listdir(pid_file.parent)) == ["ferry.pid"]   # no temporary file left
    assert f.stop() == 0
    assert not pid_file.exists()


def test_pid_file_that_cannot_be_written_is_an_error(ferry_bin, tmp_path):
    import subprocess
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run([ferry_bin, "start", HELLO, "--port", str(port), "--pid-file",
                        str(tmp_path / "missing" / "ferry.pid")],
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert r.returncode == 1
    assert "pid file" in r.stderr and "No such file or directory" in r.stderr
    assert "worker ready" not in r.stderr
