"""User switching (docs/deploying.md, "Users"), run as root (skipped otherwise): ferry binds its
listeners as root, then the workers and by default the core run as --user (nobody here), or as
the owner of the app's startup file, never root unless `--user root` is said; `--drop-core
false` keeps the core root with the workers switched; the instance directory and the admin
socket work for `ferry status` as root and as that user; a missing user or group is refused.
The apps live in a directory every user can read, TMPDIR is a sticky directory like /tmp."""
import json
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest
import requests

from conftest import FERRY_BIN, app

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="user switching needs root")
ONE = ("--max-pool-size", "1", "--min-instances", "1")
NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def shared(tmp_path):
    """(app dir with the hello WSGI app, owned by root, world-readable; a sticky TMPDIR)."""
    top = tempfile.mkdtemp(prefix="fy-users-", dir="/tmp")
    os.chmod(top, 0o755)
    root = os.path.join(top, "app")
    shutil.copytree(app("examples", "hello-wsgi"), root)
    for d, dirs, files in os.walk(top):
        os.chmod(d, 0o755)
        for n in files:
            os.chmod(os.path.join(d, n), 0o644)
    tmp = os.path.join(top, "tmp")
    os.mkdir(tmp)
    os.chmod(tmp, 0o1777)
    yield root, tmp
    leftovers = [os.path.join(tmp, n) for n in os.listdir(tmp)]
    shutil.rmtree(top, ignore_errors=True)
    assert not leftovers, "left in TMPDIR: %s" % leftovers


def uids(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Uid line")


def status(f, tmp, as_user=None):
    cmd = [FERRY_BIN, "status", "--json", "--pid", str(f.pid)]
    kwargs = {}
    if as_user is not None:
        kwargs = dict(user=as_user.pw_uid, group=as_user.pw_gid, extra_groups=[])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, TMPDIR=tmp), **kwargs)
    assert r.returncode == 0, (as_user, r.stderr)
    return json.loads(r.stdout)


def test_user_nobody_runs_workers_and_core_as_nobody(shared, ferry):
    root, tmp = shared
    f = ferry(root, "--user", "nobody", *ONE, env={"TMPDIR": tmp})
    assert requests.get(f.url + "/", timeout=20).status_code == 200
    doc = status(f, tmp)
    worker = doc["workers"][0]["pid"]
    assert set(uids(worker)) == {NOBODY.pw_uid}, "every uid of the worker is nobody's"
    assert set(uids(f.pid)) == {NOBODY.pw_uid}, "the core dropped root too"
    assert "user=nobody group=" in f.log() and 'from="--user"' in f.log()
    again = status(f, tmp, as_user=NOBODY)
    assert again["ferry"]["pid"] == f.pid, "ferry status works as the app's user"


def test_drop_core_false_keeps_the_core_root(shared, ferry):
    root, tmp = shared
    f = ferry(root, "--user", "nobody", "--drop-core", "false", *ONE, env={"TMPDIR": tmp})
    assert requests.get(f.url + "/", timeout=20).status_code == 200
    doc = status(f, tmp)
    assert set(uids(doc["workers"][0]["pid"])) == {NOBODY.pw_uid}
    assert uids(f.pid)[0] == 0
    assert status(f, tmp, as_user=NOBODY)["ferry"]["pid"] == f.pid
    assert "the workers run as it" in f.log()


def test_default_is_the_startup_files_owner_and_nobody_for_root(shared, ferry):
    root, tmp = shared
    f = ferry(root, *ONE, env={"TMPDIR": tmp, "FERRY_USER": ""})
    assert requests.get(f.url + "/", timeout=20).status_code == 200
    assert set(uids(status(f, tmp)["workers"][0]["pid"])) == {NOBODY.pw_uid}
    assert 'from="nobody, as root owns %s/passenger_wsgi.py"' % root in f.log(), f.log()
    f.stop()
    daemon = pwd.getpwnam("daemon")
    os.chown(os.path.join(root, "passenger_wsgi.py"), daemon.pw_uid, daemon.pw_gid)
    g = ferry(root, *ONE, env={"TMPDIR": tmp, "FERRY_USER": ""})
    assert requests.get(g.url + "/", timeout=20).status_code == 200
    assert set(uids(status(g, tmp)["workers"][0]["pid"])) == {daemon.pw_uid}
    assert 'from="owner of %s/passenger_wsgi.py"' % root in g.log()


def test_user_root_is_said_explicitly(shared, ferry):
    root, tmp = shared
    f = ferry(root, "--user", "root", *ONE, env={"TMPDIR": tmp})
    assert requests.get(f.url + "/", timeout=20).status_code == 200
    assert uids(status(f, tmp)["workers"][0]["pid"])[0] == 0


@pytest.mark.parametrize("args, message", [
    (["--user", "ferry-no-such-user"], "--user ferry-no-such-user: no such user"),
    (["--user", "nobody", "--group", "ferry-no-such-group"],
     "--group ferry-no-such-group: no such group"),
])
def test_a_missing_user_or_group_is_refused(shared, args, message):
    root, tmp = shared
    r = subprocess.run([FERRY_BIN, "start", root, "--port", "1", *args], capture_output=True,
                       text=True, timeout=10, env=dict(os.environ, TMPDIR=tmp),
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "ferry start: " + message in r.stderr, r.stderr


def test_not_root_cannot_switch(shared):
    root, tmp = shared
    r = subprocess.run([FERRY_BIN, "start", root, "--port", "1", "--user", "root"],
                       capture_output=True, text=True, timeout=10,
                       env=dict(os.environ, TMPDIR=tmp), stdin=subprocess.DEVNULL,
                       user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[])
    assert r.returncode == 1
    assert "ferry start: --user/--group: only root can run the app as another user" in r.stderr
