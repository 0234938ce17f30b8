"""Request ids (docs/operations.md, "Request ids"): a trusted proxy's well-formed X-Request-Id,
else 32 hex digits of ferry's own; the app sees HTTP_X_REQUEST_ID, the response carries
X-Request-Id (--request-id-header, default on), the access log ends with it, and the log lines
about the request (a 504 and its worker's backtrace, a 502) name it."""
import re
import threading

import requests
import os

from conftest import wait_for

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "wsgi", "observe")
HEX32 = re.compile(r"[0-9a-f]{32}")


def test_generated_id_reaches_the_app_the_response_and_the_access_log(ferry, tmp_path):
    access = tmp_path / "access.log"
    f = ferry(APP, "--access-log", str(access))
    r = requests.get(f.url + "/rid", timeout=10)
    rid = r.headers["X-Request-Id"]
    assert HEX32.fullmatch(rid), rid
    assert r.text == rid
    r2 = requests.get(f.url + "/rid", timeout=10)
    assert r2.text != rid, "every request gets its own"
    assert f.stop() == 0
    lines = access.read_text().splitlines()
    assert lines[0].endswith(" " + rid), lines[0]


def test_spoofed_id_from_an_untrusted_client_is_replaced(ferry):
    f = ferry(APP)
    r = requests.get(f.url + "/rid", headers={"X-Request-Id": "spoofed-123"}, timeout=10)
    assert HEX32.fullmatch(r.text) and r.text != "spoofed-123"
    assert r.headers["X-Request-Id"] == r.text
    assert f.stop() == 0


def test_trusted_proxy_id_is_kept_when_well_formed(ferry):
    f = ferry(APP, "--trusted-proxy", "127.0.0.1")
    r = requests.get(f.url + "/rid", headers={"X-Request-Id": "lb-4f2a:9"}, timeout=10)
    assert r.text == "lb-4f2a:9" and r.headers["X-Request-Id"] == "lb-4f2a:9"
    for bad in ("has space", "x" * 65, 'quote"d'):
        r = requests.get(f.url + "/rid", headers={"X-Request-Id": bad}, timeout=10)
        assert HEX32.fullmatch(r.text), (bad, r.text)
    assert f.stop() == 0


def test_header_option_off_and_the_apps_own_id_wins(ferry):
    f = ferry(APP, "--request-id-header", "false")
    r = requests.get(f.url + "/rid", timeout=10)
    assert "X-Request-Id" not in r.headers and HEX32.fullmatch(r.text)
    assert f.stop() == 0
    f = ferry(APP)
    r = requests.get(f.url + "/own-id", timeout=10)
    assert r.headers["X-Request-Id"] == "app-chosen"
    r = requests.get(f.url + "/nope-" + "x" * 9000, timeout=10)
    assert r.status_code == 414 and HEX32.fullmatch(r.headers["X-Request-Id"])
    assert "request_id=%s" % r.headers["X-Request-Id"] in f.log()
    assert f.stop() == 0


def test_504_log_lines_and_the_backtrace_name_the_id(ferry):
    f = ferry(APP, "--max-request-time", "1", "--max-pool-size", "1", "--min-instances", "1",
              "--trusted-proxy", "127.0.0.1")
    r = requests.get(f.url + "/slow?ms=5000", headers={"X-Request-Id": "slow-one-504"},
                     timeout=20)
    assert r.status_code == 504 and r.headers["X-Request-Id"] == "slow-one-504"
    assert wait_for(lambda: "busy=/slow request_id=slow-one-504" in f.log(), 10), f.log()
    log = f.log()
    assert re.search(r"\[error\] http: pid=\d+ request_id=slow-one-504 uri=/slow\?ms=5000: max "
                     r"request time \(1000 ms\) passed", log), log
    assert f.stop() == 0
