"""Which Python and Ruby run an app (docs/configuration.md, "Interpreters"): the app's own
virtualenv (.venv, venv) without any flag, `--python` / `--ruby` (flag, environment, ferry.json),
python3 and ruby on PATH, /usr/bin last; the choice in the start line, the log and `ferry
status`; the refusals. The virtualenv is made by Debian's Python (`/usr/bin/python3 -m venv
--system-site-packages`, so Flask & co. stay visible) and holds `ferry_venv_only`, a module the
system does not have. One worker each (--max-pool-size 1)."""
import html
import json
import os
import shutil
import subprocess

import pytest
import requests

from conftest import FERRY_BIN, app

DEPLOY = app("tests", "e2e", "apps", "deploy")
ONE = ("--max-pool-size", "1", "--min-instances", "1")
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A virtualenv holding ferry_venv_only (VALUE = "from the venv")."""
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(root)], check=True, timeout=120)
    site = subprocess.run([str(root / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(site, "ferry_venv_only.py"), "w") as f:
        f.write('VALUE = "from the venv"\n')
    return root


def app_copy(tmp_path, venv=None, venv_name=".venv"):
    """The venv app in <tmp_path>/app, with <venv> symlinked as APP_DIR/<venv_name>."""
    root = tmp_path / "app"
    root.mkdir()
    shutil.copy(os.path.join(DEPLOY, "venv_app", "wsgi.py"), root / "wsgi.py")
    if venv is not None:
        os.symlink(venv, root / venv_name)
    return root


def served_by(f):
    r = requests.get(f.url + "/", timeout=20)
    assert r.status_code == 200, r.text
    return r.text.split("\n")


def status(f):
    r = subprocess.run([FERRY_BIN, "status", "--pid", str(f.pid)], capture_output=True,
                       text=True, timeout=30, env=dict(os.environ, TMPDIR=f.tmpdir))
    assert r.returncode == 0, r.stderr
    j = subprocess.run([FERRY_BIN, "status", "--json", "--pid", str(f.pid)],
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, TMPDIR=f.tmpdir))
    assert j.returncode == 0, j.stderr
    return r.stdout, json.loads(j.stdout)


@pytest.mark.parametrize("venv_name", [".venv", "venv"])
def test_the_apps_virtualenv_is_used_without_flags(ferry, tmp_path, venv, venv_name):
    root = app_copy(tmp_path, venv, venv_name)
    f = ferry(str(root), *ONE)
    value, prefix, executable = served_by(f)
    python = "%s/%s/bin/python" % (root, venv_name)
    assert value == "from the venv"
    assert prefix == str(root / venv_name) or os.path.realpath(prefix) == str(venv)
    assert executable == python
    source = "APP_DIR/" + venv_name
    assert "serving %s (wsgi, %s from %s) on" % (root, python, source) in f.log(), f.log()
    assert "interpreter=%s interpreter_from=%s: serving" % (python, source) in f.log()
    text, doc = status(f)
    assert "  python     %s (from %s)\n" % (python, source) in text, text
    assert doc["app"]["interpreter"] == python
    assert doc["app"]["interpreter_source"] == source


def test_dot_venv_wins_over_venv(ferry, tmp_path, venv):
    root = app_copy(tmp_path, venv, ".venv")
    (root / "venv" / "bin").mkdir(parents=True)
    os.symlink(SYSTEM_PYTHON, root / "venv" / "bin" / "python")
    f = ferry(str(root), *ONE)
    assert served_by(f)[2] == "%s/.venv/bin/python" % root


def test_without_the_virtualenv_the_system_python_lacks_the_module(ferry, tmp_path):
    root = app_copy(tmp_path)
    f = ferry(str(root), "--environment", "development", *ONE)
    r = requests.get(f.url + "/", timeout=20)
    assert r.status_code == 503
    assert "No module named 'ferry_venv_only'" in html.unescape(r.text), r.text


@pytest.mark.parametrize("how", ["flag", "env", "ferry.json"])
def test_python_option(ferry, tmp_path, venv, how):
    root = app_copy(tmp_path)
    python = str(venv / "bin" / "python")
    args, env = list(ONE), None
    if how == "flag":
        args += ["--python", python]
    elif how == "env":
        env = {"FERRY_PYTHON": python}
    else:
        (root / "ferry.json").write_text(json.dumps({"python": python}))
    f = ferry(str(root), *args, env=env)
    assert served_by(f)[0] == "from the venv"
    assert "(wsgi, %s from --python)" % python in f.log()


def test_the_python_option_wins_over_the_apps_virtualenv(ferry, tmp_path, venv):
    root = app_copy(tmp_path, venv)
    f = ferry(str(root), "--python", "/usr/bin/python3", "--environment", "development", *ONE)
    r = requests.get(f.url + "/", timeout=20)
    assert r.status_code == 503 and "ferry_venv_only" in r.text


def test_python3_on_path(ferry, tmp_path, venv):
    root = app_copy(tmp_path)
    f = ferry(str(root), *ONE, env={"PATH": "%s:/usr/bin:/bin" % (venv / "bin")})
    value, _, executable = served_by(f)
    assert value == "from the venv" and executable == str(venv / "bin" / "python3")
    assert "(wsgi, %s from PATH)" % (venv / "bin" / "python3") in f.log()


def test_usr_bin_python3_is_the_last_resort(ferry, tmp_path):
    root = tmp_path / "app"
    root.mkdir()
    shutil.copy(os.path.join(app("examples", "hello-wsgi"), "passenger_wsgi.py"), root)
    f = ferry(str(root), *ONE, env={"PATH": str(tmp_path / "nothing-here")})
    assert requests.get(f.url + "/", timeout=20).status_code == 200
    assert "(wsgi, /usr/bin/python3 from default)" in f.log()


def test_extension_that_cannot_load_names_the_interpreter(ferry, tmp_path, venv):
    root = app_copy(tmp_path, venv)
    empty = tmp_path / "no-extensions"
    (empty / "python").mkdir(parents=True)
    f = ferry(str(root), "--environment", "development", *ONE,
              env={"FERRY_EXT_DIR": str(empty)})
    r = requests.get(f.url + "/", timeout=20)
    assert r.status_code == 503
    assert "cannot import the _ferry extension with %s/.venv/bin/python" % root in r.text, r.text


def test_ruby_option_and_path(ferry, tmp_path):
    wrapper = tmp_path / "bin" / "ruby"
    wrapper.parent.mkdir()
    wrapper.write_text("#!/bin/sh\necho ruby-wrapper-ran >&2\nexec /usr/bin/ruby \"$@\"\n")
    wrapper.chmod(0o755)
    rack = app("examples", "hello-rack")
    f = ferry(rack, "--ruby", str(wrapper), *ONE)
    assert requests.get(f.url + "/", timeout=20).status_code == 200
    assert "(rack, %s from --ruby)" % wrapper in f.log()
    assert "ruby-wrapper-ran" in f.log()
    f.stop()
    g = ferry(rack, *ONE, env={"PATH": "%s:/usr/bin:/bin" % wrapper.parent})
    assert requests.get(g.url + "/", timeout=20).status_code == 200
    assert "(rack, %s from PATH)" % wrapper in g.log()
    g.stop()
    h = ferry(rack, *ONE, env={"PATH": str(tmp_path / "nothing-here")})
    assert requests.get(h.url + "/", timeout=20).status_code == 200
    assert "(rack, /usr/bin/ruby from default)" in h.log()


@pytest.mark.parametrize("args, message", [
    (["--python", "/nonexistent/python"], "--python /nonexistent/python: not an executable file"),
    (["--python", "no-such-python-here"],
     "--python no-such-python-here: no executable of that name on PATH"),
    (["--python", "/etc/passwd"], "--python /etc/passwd: not an executable file"),
])
def test_a_missing_interpreter_is_refused(args, message):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    r = subprocess.run([FERRY_BIN, "start", app("examples", "hello-wsgi"), "--port", "1", *args],
                       capture_output=True, text=True, timeout=10, env=env,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "ferry start: " + message in r.stderr, r.stderr


def test_a_missing_ruby_is_refused():
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    r = subprocess.run([FERRY_BIN, "start", app("examples", "hello-rack"), "--port", "1",
                        "--ruby", "/nonexistent/ruby"], capture_output=True, text=True,
                       timeout=10, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert "ferry start: --ruby /nonexistent/ruby: not an executable file" in r.stderr
