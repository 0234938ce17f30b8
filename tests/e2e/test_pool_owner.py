"""Pool e2e: the owner pipe. SIGKILL the core and every worker is gone within a second, with no
socket file left behind, with abstract sockets and with socket files
(FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS=1)."""
import os
import re
import signal
import stat
import subprocess
import time

import pytest
import requests

from conftest import FERRY_BIN, app

BASIC = app("tests", "e2e", "apps", "wsgi", "pool_basic")


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def sockets_under(path):
    found = []
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            if stat.S_ISSOCK(os.lstat(p).st_mode):
                found.append(p)
    return found


@pytest.mark.parametrize("abstract", [True, False], ids=["abstract", "socket-files"])
def test_sigkill_of_the_core_takes_every_worker_down(ferry, abstract):
    env = None if abstract else {"FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS": "1"}
    f = ferry(BASIC, "--min-instances", "2", env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and f.log().count("worker ready") < 2:
        time.sleep(0.05)
    log = f.log()
    pids = [int(p) for p in re.findall(r"pool: app=\S+ pid=(\d+) address=\S+: worker ready", log)]
    addrs = re.findall(r"pool: app=\S+ pid=\d+ address=(\S+): worker ready", log)
    assert len(pids) == 2, log
    assert all(a.startswith("abstract:" if abstract else "unix:") for a in addrs), addrs
    if not abstract:
        # the two workers', the preloader's spawn server and the core's admin socket
        assert len(sockets_under(f.tmpdir)) == 4, sockets_under(f.tmpdir)
    assert requests.get(f.url + "/pid", timeout=10).status_code == 200
    f.stop(signal.SIGKILL)
    time.sleep(1.0)
    alive = [p for p in pids if pid_alive(p)]
    assert alive == [], "workers outlived the core by more than 1 s"
    left = sockets_under(f.tmpdir)
    # What the SIGKILLed core itself could not remove: in socket-file mode its admin socket,
    # inside its instance directory, which the next `ferry start` or `ferry status` removes as
    # stale (as it does here).
    admin = [p for p in left if os.path.basename(p).startswith("ferry-admin.")]
    assert [p for p in left if p not in admin] == [], "a worker left its socket file"
    assert len(admin) == (0 if abstract else 1), left
    status = subprocess.run([FERRY_BIN, "status"], env=dict(os.environ, TMPDIR=f.tmpdir),
                            capture_output=True, text=True, timeout=30)
    assert "removed 1 instance directory left by dead instances" in status.stderr
    assert sockets_under(f.tmpdir) == []
    assert not [n for n in os.listdir(f.tmpdir) if n.startswith("ferry.%d." % f.pid)]
