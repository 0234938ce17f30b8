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


def spawn_times(log):
    """Timestamps (s) of the pool's spawn attempts, from the log's ISO times."""
    times = []
    for m in re.finditer(r"^\d{4}-\d\d-\d\dT(\d\d):(\d\d):(\d\d\.\d+)Z \[info\] pool: .*: "
                         r"spawning a worker$", log, re.M):
        times.append(int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)))
    return times


def test_production_page_is_generic_and_respawns_at_most_once_per_10s(ferry):
    f = ferry(BROKEN, "--environment", "production", "--min-instances", "0")
    statuses = []
    pages = []
    deadline = time.monotonic() + 20
    # Ask every 0.25 s until the second attempt (the retry after the pause) is in the log, then
    # one second more to see that no third one follows.
    while time.monotonic() < deadline and len(spawn_times(f.log())) < 2:
        r = requests.get(f.url + "/", timeout=20)
        statuses.append(r.status_code)
        pages.append(r.text)
        time.sleep(0.25)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        statuses.append(requests.get(f.url + "/", timeout=20).status_code)
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
    times = spawn_times(log)
    assert len(times) == 2, "one attempt, then one retry after 10 s:\n%s" % log
    assert times[1] - times[0] >= 9.9, "the retry came %.2f s after the first attempt" % (
        times[1] - times[0])
    assert log.count("could not spawn a worker") == 2
