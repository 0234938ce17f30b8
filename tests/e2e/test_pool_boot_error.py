"""Pool e2e: an app that cannot boot. Requests get a 503 page (development: the app's error;
production: a generic page with an error id that is also in the log), and the pool retries the
spawn at most once per 10 seconds (the 10-second rule)."""
import re
import time

import requests

from conftest import app

BROKEN = app("tests", "e2e", "apps", "wsgi", "pool_boot_error")


def test_development_page_shows_the_boot_error(ferry):
    f = ferry(BROKEN, "--environment", "development")
    r = requests.get(f.url + "/", timeout=20)
    assert r.status_code == 503
    assert "pool e2e deliberate boot failure" in r.text, r.text
    ids = re.findall(r"error id ([0-9a-f]{16})", r.text)
    assert ids and ids[0] in f.log()


def test_production_page_is_generic_and_respawns_at_most_once_per_10s(ferry):
    f = ferry(BROKEN, "--environment", "production", "--min-instances", "0")
    start = time.monotonic()
    statuses = []
    pages = []
    while time.monotonic() - start < 12.5:
        r = requests.get(f.url + "/", timeout=20)
        statuses.append(r.status_code)
        pages.append(r.text)
        time.sleep(0.25)
    assert set(statuses) == {503}
    page = pages[0]
    assert "deliberate boot failure" not in page, "production hides the app's error"
    m = re.search(r"Error id: ([0-9a-f]{16})", page)
    assert m, page
    log = f.log()
    assert re.search(r"\[error\] pool: app=%s pid=\d+ error_id=%s: could not spawn a worker: "
                     % (re.escape(BROKEN), m.group(1)), log), log
    assert "deliberate boot failure" in log, "the details are in the log"
    spawns = log.count(": spawning a worker")
    assert spawns == 2, "one attempt, then one retry after 10 s; got %d\n%s" % (spawns, log)
