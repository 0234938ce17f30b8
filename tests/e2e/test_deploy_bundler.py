"""A Rack app with a Gemfile runs under Bundler (docs/configuration.md, "Bundler"), as Passenger
and `bundle exec` run it: `bundler/setup` with BUNDLE_GEMFILE, so exactly the Gemfile's gems
load; a gem the Gemfile names but the machine lacks is a boot error page naming it. Offline:
Debian's bundler, `bundle install --local` on a Gemfile of gems Debian installed. The apps are
copied into the test's directory (Bundler writes Gemfile.lock). One worker (--max-pool-size 1)."""
import os
import shutil
import subprocess

import pytest
import requests

from conftest import app

SINATRA = app("tests", "e2e", "apps", "deploy", "bundler_sinatra")
ONE = ("--max-pool-size", "1", "--min-instances", "1")


def bundle_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLE_")}
    env["PATH"] = "/usr/bin:/bin:" + env.get("PATH", "")
    env["HOME"] = str(tmp_path)   # Bundler's own settings and cache stay in the test's directory
    return env


@pytest.fixture
def bundled(tmp_path):
    root = tmp_path / "sinatra"
    shutil.copytree(SINATRA, root)
    r = subprocess.run(["bundle", "install", "--local"], cwd=root, env=bundle_env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "Gemfile.lock").exists()
    return root


def test_sinatra_with_a_gemfile_runs_under_bundler(ferry, bundled, tmp_path):
    f = ferry(str(bundled), *ONE, env={"HOME": str(tmp_path)})
    r = requests.get(f.url + "/", timeout=30)
    assert r.status_code == 200, r.text
    lines = r.text.splitlines()
    assert lines[0] == "bundler on"
    assert lines[1] == "gemfile %s/Gemfile" % bundled
    assert lines[2].startswith("sinatra ") and len(lines[2]) > len("sinatra ")
    assert lines[3] == "rails not loadable", "railties is installed but not in the Gemfile"


def test_without_a_gemfile_there_is_no_bundler(ferry, tmp_path):
    root = tmp_path / "sinatra"
    shutil.copytree(SINATRA, root)
    (root / "Gemfile").unlink()
    f = ferry(str(root), *ONE)
    lines = requests.get(f.url + "/", timeout=30).text.splitlines()
    assert lines[0] == "bundler off" and lines[3] == "rails loadable"


def test_a_missing_gem_is_a_boot_error_page_naming_it(ferry, bundled, tmp_path):
    with open(bundled / "Gemfile", "a") as gf:
        gf.write("gem 'ferry_no_such_gem'\n")
    f = ferry(str(bundled), "--environment", "development", *ONE, env={"HOME": str(tmp_path)})
    r = requests.get(f.url + "/", timeout=30)
    assert r.status_code == 503
    assert "Bundler cannot load the gems of Gemfile" in r.text, r.text
    assert "ferry_no_such_gem" in r.text
    assert "ferry_no_such_gem" in f.log()
