"""Pool e2e: the request queue. A full queue answers 503 at once; a request that waits past
--max-queue-time answers 503; the server serves the next request normally afterwards."""
import threading
import time

import requests

from conftest import app

BASIC = app("tests", "e2e", "apps", "wsgi", "pool_basic")


def fetch_async(url, results, key, timeout=15):
    def run():
        try:
            results[key] = requests.get(url, timeout=timeout)
        except requests.RequestException as e:
            results[key] = e
    t = threading.Thread(target=run)
    t.start()
    return t


def test_full_queue_answers_503_and_the_next_request_is_served(ferry):
    f = ferry(BASIC, "--max-pool-size", "1", "--max-request-queue-size", "1")
    assert requests.get(f.url + "/pid", timeout=10).status_code == 200   # the worker is up
    results = {}
    busy = fetch_async(f.url + "/slow?ms=1500", results, "busy")
    time.sleep(0.3)
    queued = fetch_async(f.url + "/slow?ms=10", results, "queued")
    time.sleep(0.3)
    r = requests.get(f.url + "/pid", timeout=5)
    assert r.status_code == 503
    assert "queue is full" in r.text
    busy.join()
    queued.join()
    assert results["busy"].status_code == 200
    assert results["queued"].status_code == 200, "the queued request was served in turn"
    assert requests.get(f.url + "/pid", timeout=5).status_code == 200


def test_a_burst_of_queue_full_refusals_logs_one_line_a_second(ferry):
    f = ferry(BASIC, "--max-pool-size", "1", "--max-request-queue-size", "1")
    assert requests.get(f.url + "/pid", timeout=10).status_code == 200
    results = {}
    busy = fetch_async(f.url + "/slow?ms=2500", results, "busy")
    time.sleep(0.3)
    queued = fetch_async(f.url + "/slow?ms=10", results, "queued")
    time.sleep(0.3)
    t0 = time.monotonic()
    statuses = [requests.get(f.url + "/pid", timeout=5).status_code for _ in range(20)]
    assert time.monotonic() - t0 < 1.0, "the burst must fit in one second for this test"
    time.sleep(1.1)
    assert requests.get(f.url + "/pid", timeout=5).status_code == 503
    busy.join()
    queued.join()
    assert statuses == [503] * 20
    lines = [l for l in f.log().splitlines() if "request queue full: 503" in l]
    assert len(lines) == 2, lines
    assert "(and 19 more since the previous line)" in lines[1], lines


def test_request_waiting_past_max_queue_time_answers_503(ferry):
    f = ferry(BASIC, "--max-pool-size", "1", "--max-queue-time", "1")
    assert requests.get(f.url + "/pid", timeout=10).status_code == 200
    results = {}
    busy = fetch_async(f.url + "/slow?ms=3000", results, "busy")
    time.sleep(0.3)
    t0 = time.monotonic()
    r = requests.get(f.url + "/pid", timeout=10)
    waited = time.monotonic() - t0
    assert r.status_code == 503
    assert 0.8 <= waited < 2.5, waited
    busy.join()
    assert results["busy"].status_code == 200
    assert requests.get(f.url + "/pid", timeout=5).status_code == 200
