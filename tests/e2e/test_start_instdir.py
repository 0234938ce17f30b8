"""The instance directory: a dead instance's directory is cleaned when ferry starts; a live
one's is left alone; ferry's own is removed on a clean exit."""

import os
import signal
import subprocess
import tempfile

from conftest import FERRY_BIN, app, free_port, wait_port


def dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_start_removes_dead_instances_dirs_and_keeps_live_ones():
    base = tempfile.mkdtemp(prefix="fye-instdir-", dir="/tmp")
    stale = os.path.join(base, "ferry.%d.0123abcd" % dead_pid())
    live = os.path.join(base, "ferry.%d.4567cdef" % os.getpid())
    for d in (stale, live):
        os.mkdir(d, 0o700)
        with open(os.path.join(d, "properties.json"), "w") as f:
            f.write("{}")
    port = free_port()
    env = dict(os.environ, TMPDIR=base)
    with open(os.path.join(base, "log"), "w") as log:
        proc = subprocess.Popen([FERRY_BIN, "start", app("examples", "hello-wsgi"),
                                 "--port", str(port)], env=env, stdout=log, stderr=log)
    try:
        assert wait_port(port, proc, 20), open(os.path.join(base, "log")).read()
        assert not os.path.exists(stale)
        assert os.path.isdir(live)
        ours = [n for n in os.listdir(base) if n.startswith("ferry.%d." % proc.pid)]
        assert len(ours) == 1
        assert os.stat(os.path.join(base, ours[0])).st_mode & 0o777 == 0o700
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert [n for n in os.listdir(base) if n.startswith("ferry.%d." % proc.pid)] == []
    text = open(os.path.join(base, "log")).read()
    assert "removed stale instance dir" in text
    subprocess.run(["rm", "-rf", base], check=True)
