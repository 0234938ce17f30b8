"""`make deb`'s package (run by `make test-deb`, not `make test`: a release build from scratch):
it was built by dpkg-buildpackage from debian/, its file list holds what `meson install` puts in
place (docs/deploying.md, "A Debian package"), its Depends come from the libraries it links, and
its ferry, unpacked anywhere (the installation is relocatable), serves an app."""
import glob
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

DEB_DIR = os.environ.get("FERRY_DEB_DIR", "")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def deb():
    debs = glob.glob(os.path.join(DEB_DIR, "ferry_*.deb"))
    assert DEB_DIR and len(debs) == 1, "FERRY_DEB_DIR=%r holds %s (run `make test-deb`)" % (
        DEB_DIR, debs)
    return debs[0]


def test_file_list(deb):
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True,
                             check=True).stdout
    paths = {line.split()[-1] for line in listing.splitlines()}
    for want in ["./usr/bin/ferry",
                 "./usr/share/ferry/loaders/python/wsgi_loader.py",
                 "./usr/share/ferry/loaders/ruby/rack_loader.rb",
                 "./usr/lib/x86_64-linux-gnu/ferry/ext/python/_ferry.abi3.so",
                 "./usr/lib/x86_64-linux-gnu/ferry/ext/ruby/ferry_ext.so",
                 "./usr/include/ferry.h"]:
        assert want in paths, "%s is not in the package:\n%s" % (want, listing)


def test_control_fields(deb):
    fields = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Version", "Depends"],
                            capture_output=True, text=True, check=True).stdout
    assert "Package: ferry" in fields and "Version: 0.1.0" in fields
    assert "libuv1" in fields and "libjansson4" in fields, fields


def test_unpacked_ferry_serves_an_app(deb, tmp_path):
    subprocess.run(["dpkg-deb", "-x", deb, str(tmp_path / "root")], check=True)
    ferry = tmp_path / "root" / "usr" / "bin" / "ferry"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app_dir = tmp_path / "app"
    shutil.copytree(os.path.join(REPO, "examples", "hello-wsgi"), app_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    # FERRY_USER=root: run as root, ferry would run the (root-owned) app as nobody, who cannot
    # read the test's directory (docs/deploying.md, "Users").
    env.update(TMPDIR=str(tmp_path), PATH="/usr/bin:/bin", FERRY_USER="root")
    proc = subprocess.Popen([str(ferry), "start", str(app_dir), "--port", str(port)],
                            env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        answer = b""
        while time.monotonic() < deadline and not answer.startswith(b"HTTP/1.1 200"):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    answer = c.recv(65536)
            except OSError:
                time.sleep(0.1)
        assert answer.startswith(b"HTTP/1.1 200"), answer
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode(errors="replace")
    assert proc.returncode == 0, out
