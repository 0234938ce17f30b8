"""Entry points as users write them (docs/configuration.md, "Entry points"): Flask's app.py with
`app`, `--app MODULE:CALLABLE` and `MODULE:FACTORY()` (gunicorn's form; also FERRY_APP and
ferry.json), `--startup-file` for a WSGI or Rack file by another name, and the refusals of each.
One worker each (--max-pool-size 1)."""
import json
import os
import re
import shutil
import subprocess

import pytest
import requests

from conftest import FERRY_BIN, app

DEPLOY = app("tests", "e2e", "apps", "deploy")
ONE = ("--max-pool-size", "1", "--min-instances", "1")


def test_flask_app_py_with_app_is_served(ferry):
    f = ferry(os.path.join(DEPLOY, "flask_app"), *ONE)
    r = requests.get(f.url + "/", timeout=20)
    assert r.status_code == 200 and r.text == "hello from flask app.py"
    assert re.search(r"serving %s \(wsgi, /\S+ from \S+\) on " % re.escape(
        os.path.join(DEPLOY, "flask_app")), f.log()), f.log()


@pytest.mark.parametrize("spec, body", [
    ("pkg.web:create_app()", "hello from the factory"),
    ("pkg.web:create_app('hi there')", "hi there"),
    ("pkg.web:plain", "hello from pkg.web:plain"),
])
def test_app_flag(ferry, spec, body):
    f = ferry(os.path.join(DEPLOY, "factory"), "--app", spec, *ONE)
    r = requests.get(f.url + "/", timeout=20)
    assert r.status_code == 200 and r.text == body


def test_app_from_env_and_ferry_json(ferry, tmp_path):
    f = ferry(os.path.join(DEPLOY, "factory"), *ONE, env={"FERRY_APP": "pkg.web:plain"})
    assert requests.get(f.url + "/", timeout=20).text == "hello from pkg.web:plain"
    f.stop()
    copy = tmp_path / "factory"
    shutil.copytree(os.path.join(DEPLOY, "factory"), copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "ferry.json").write_text(json.dumps({"app": "pkg.web:create_app()"}))
    g = ferry(str(copy), *ONE)
    assert requests.get(g.url + "/", timeout=20).text == "hello from the factory"


def test_app_naming_a_missing_callable_is_a_boot_error_page(ferry):
    f = ferry(os.path.join(DEPLOY, "factory"), "--app", "pkg.web:nothing",
              "--environment", "development", *ONE)
    r = requests.get(f.url + "/", timeout=20)
    assert r.status_code == 503
    assert "--app pkg.web:nothing: pkg.web has no attribute `nothing`" in r.text, r.text


def run_start(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    return subprocess.run([FERRY_BIN, "start", *args, "--port", "1"], capture_output=True,
                          text=True, timeout=10, env=env, cwd=cwd, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args, message", [
    (["--app", "pkg web"], "--app pkg web: not MODULE, MODULE:NAME or MODULE:NAME(ARGS)"),
    (["--app", "pkg.web:plain", "--app-type", "rack"],
     "--app pkg.web:plain is a WSGI entry point, but the app type is rack"),
    (["--app", "pkg.web:plain", "--startup-file", "x.py"],
     "--app and --startup-file exclude each other"),
    (["--startup-file", "missing.py"], "--startup-file %s/missing.py: No such file or directory"),
    (["--startup-file", "pkg", "--app-type", "wsgi"], "--startup-file %s/pkg: not a regular file"),
    (["--startup-file", "pkg/__init__.py", "--app-type", "c"],
     "--startup-file is for rack and wsgi apps, not c"),
    (["--startup-file", "README"], "--startup-file README: cannot tell the app type by its name"),
])
def test_refused_before_anything_starts(args, message):
    root = os.path.join(DEPLOY, "factory")
    r = run_start(root, *args)
    assert r.returncode == 1, r
    assert ("ferry start: " + (message % root if "%s" in message else message)) in r.stderr, \
        r.stderr


@pytest.mark.parametrize("startup, body", [
    ("server.py", "hello from server.py"),
    ("web.ru", "hello from web.ru"),
])
def test_startup_file(ferry, startup, body):
    f = ferry(os.path.join(DEPLOY, "startup"), "--startup-file", startup, *ONE)
    r = requests.get(f.url + "/", timeout=20)
    assert r.status_code == 200 and r.text == body
    kind = "rack" if startup.endswith(".ru") else "wsgi"
    assert "(%s, " % kind in f.log()


def test_startup_file_with_an_absolute_path_and_an_explicit_type(ferry, tmp_path):
    (tmp_path / "app").mkdir()
    script = tmp_path / "serve.wsgi"
    shutil.copy(os.path.join(DEPLOY, "startup", "server.py"), script)
    f = ferry(str(tmp_path / "app"), "--startup-file", str(script), "--app-type", "wsgi", *ONE)
    assert requests.get(f.url + "/", timeout=20).text == "hello from server.py"
