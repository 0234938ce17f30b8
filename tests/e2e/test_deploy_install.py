"""An installed ferry (docs/deploying.md, "Installing"): `meson install --destdir` of the build
into a temporary root puts bin/ferry, share/ferry/loaders/ and <libdir>/ferry/ext/ there; the
prefix is then moved elsewhere (the installation is relocatable) and its ferry, run from another
directory with no FERRY_LOADERS_DIR or FERRY_EXT_DIR, serves a WSGI, a Rack and a C app copied
out of the source tree, with the installed extension (the worker's /proc/PID/maps) and, for WSGI,
the installed loader (its /proc/PID/cmdline). FERRY_LOADERS_DIR still wins."""
import glob
import json
import os
import shutil
import subprocess

import pytest
import requests

from conftest import BUILD_DIR, REPO, app

ONE = ("--max-pool-size", "1", "--min-instances", "1")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The moved prefix of an installation of BUILD_DIR."""
    top = tmp_path_factory.mktemp("install")
    stage = top / "stage"
    r = subprocess.run(["meson", "install", "-C", BUILD_DIR, "--no-rebuild", "--quiet",
                        "--destdir", str(stage)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    bins = glob.glob(str(stage / "**" / "bin" / "ferry"), recursive=True)
    assert len(bins) == 1, bins
    prefix = os.path.dirname(os.path.dirname(bins[0]))
    moved = top / "opt" / "ferry"
    moved.parent.mkdir()
    shutil.move(prefix, moved)
    return moved


def files_of(root):
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, _, names in os.walk(root) for n in names)


def test_the_installation_holds_the_binary_loaders_extensions_and_header(installed):
    files = files_of(installed)
    assert "bin/ferry" in files
    assert "share/ferry/loaders/python/wsgi_loader.py" in files
    assert "share/ferry/loaders/ruby/rack_loader.rb" in files
    assert "include/ferry.h" in files
    assert any(f.endswith("/ferry/ext/python/_ferry.abi3.so") for f in files), files
    assert any(f.endswith("/ferry/ext/ruby/ferry_ext.so") for f in files), files
    assert not any("test" in f for f in files), "no test program is installed: %s" % files


def worker_pid(ferry_bin, f):
    r = subprocess.run([ferry_bin, "status", "--json", "--pid", str(f.pid)],
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, TMPDIR=f.tmpdir))
    assert r.returncode == 0, r.stderr
    workers = json.loads(r.stdout)["workers"]
    assert len(workers) == 1, workers
    return workers[0]["pid"]


def proc_text(pid, name):
    with open("/proc/%d/%s" % (pid, name), "rb") as fh:
        return fh.read().replace(b"\0", b" ").decode(errors="replace")


@pytest.fixture
def installed_ferry(installed, ferry, monkeypatch, tmp_path):
    """ferry(app_dir, ...) with the installed binary, from <tmp_path>/elsewhere, without the
    FERRY_ variables that would point at the build."""
    import conftest
    monkeypatch.setattr(conftest, "FERRY_BIN", str(installed / "bin" / "ferry"))
    for name in ("FERRY_LOADERS_DIR", "FERRY_EXT_DIR"):
        monkeypatch.delenv(name, raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return ferry


@pytest.mark.parametrize("kind", ["wsgi", "rack", "c"])
def test_installed_ferry_serves_each_app_type_from_another_directory(installed, installed_ferry,
                                                                     tmp_path, kind):
    source = {"wsgi": app("examples", "hello-wsgi"), "rack": app("examples", "hello-rack"),
              "c": os.path.join(BUILD_DIR, "examples", "hello-c")}[kind]
    copy = tmp_path / "app"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("*.p", "*.o", "meson*",
                                                                "__pycache__", "*.a"))
    f = installed_ferry(str(copy), *ONE)
    assert f.cmd[0] == str(installed / "bin" / "ferry")
    r = requests.get(f.url + "/", timeout=20)
    assert r.status_code == 200 and r.text, r.text
    assert "(%s" % kind in f.log()
    if kind == "c":
        return
    pid = worker_pid(f.cmd[0], f)
    cmdline = proc_text(pid, "cmdline")
    if kind == "wsgi":   # (the Rack worker sets its process title instead)
        assert "%s/share/ferry/loaders/python/wsgi_loader.py" % installed in cmdline, cmdline
    ext = {"wsgi": "python/_ferry.abi3.so", "rack": "ruby/ferry_ext.so"}[kind]
    with open("/proc/%d/maps" % pid) as fh:
        mapped = [line.split()[-1] for line in fh if line.rstrip().endswith("/" + ext)]
    assert mapped and all(m.startswith(str(installed) + "/") for m in mapped), mapped
    assert REPO not in cmdline


def test_ferry_loaders_dir_still_overrides(installed, installed_ferry, monkeypatch):
    monkeypatch.setenv("FERRY_LOADERS_DIR", os.path.join(REPO, "loaders"))
    f = installed_ferry(app("examples", "hello-wsgi"), *ONE)
    assert requests.get(f.url + "/", timeout=20).status_code == 200
    cmdline = proc_text(worker_pid(f.cmd[0], f), "cmdline")
    assert os.path.join(REPO, "loaders", "python", "wsgi_loader.py") in cmdline, cmdline
