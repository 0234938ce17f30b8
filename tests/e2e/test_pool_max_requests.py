"""Pool e2e: a worker is replaced after --max-requests requests."""
import requests

from conftest import app

BASIC = app("tests", "e2e", "apps", "wsgi", "pool_basic")


def test_worker_is_replaced_after_max_requests(ferry):
    f = ferry(BASIC, "--max-requests", "2", "--max-pool-size", "1")
    a = requests.get(f.url + "/pid", timeout=10).text
    b = requests.get(f.url + "/pid", timeout=10).text
    c = requests.get(f.url + "/pid", timeout=15).text
    assert a == b
    assert c != a
    assert "pid=%s requests=2: max requests reached" % a in f.log()
