"""The Prometheus endpoint (--metrics-address) and `ferry status --prometheus`
(docs/operations.md, "Monitoring"): every outcome moves its counters by exactly one, the text
passes `promtool check metrics` and parses with prometheus_client, histograms are cumulative and
their counts match the counters.

Assumptions stated in the flags: one worker (--max-pool-size 1 --min-instances 1), one queued
request at most (--max-request-queue-size 1), no dispatch-ahead (a queued request waits for the
worker's current one), max request time 2 s, max body 1 KiB."""
import os
import signal
import subprocess
import threading

import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import FERRY_BIN, free_port, wait_for

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "wsgi", "observe")
COUNTERS = ("ferry_http_requests_total", "ferry_http_rejections_total",
            "ferry_http_failures_total", "ferry_http_client_gone_total",
            "ferry_worker_spawns_total", "ferry_worker_exits_total")


def start(ferry, *extra):
    mport = free_port()
    f = ferry(APP, "--metrics-address", "127.0.0.1:%d" % mport, "--max-pool-size", "1",
              "--min-instances", "1", "--max-request-queue-size", "1", "--dispatch-ahead", "0",
              "--max-request-time", "2", "--max-body-size", "1k", *extra)
    f.metrics_url = "http://127.0.0.1:%d/metrics" % mport
    assert wait_for(lambda: "worker ready" in f.log(), 20), f.log()
    return f


def scrape(f):
    r = requests.get(f.metrics_url, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return r.text


def samples(text):
    """{(sample name, sorted labels): value} of every sample, and the families by name."""
    out, fams = {}, {}
    for fam in text_string_to_metric_families(text):
        fams[fam.name] = fam
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out, fams


def counters(text):
    vals, _ = samples(text)
    return {k: v for k, v in vals.items() if k[0] in COUNTERS}


def delta(before, after):
    keys = set(before) | set(after)
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys
            if after.get(k, 0) != before.get(k, 0)}


def req(method, status):
    return ("ferry_http_requests_total", (("method", method), ("status", status)))


def why(family, reason):
    return (family, (("reason", reason),))


def check_histograms(text):
    vals, fams = samples(text)
    for name in ("ferry_http_request_duration_seconds", "ferry_http_queue_wait_seconds",
                 "ferry_worker_spawn_duration_seconds"):
        buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in vals.items()
                          if k[0] == name + "_bucket"))
        assert buckets[-1][0] == float("inf")
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), (name, buckets)   # cumulative
        assert buckets[-1][1] == vals[(name + "_count", ())], name
    total = sum(v for k, v in vals.items() if k[0] == "ferry_http_requests_total")
    assert vals[("ferry_http_request_duration_seconds_count", ())] == total
    ready = sum(v for k, v in vals.items() if k[0] == "ferry_worker_spawns_total")
    assert vals[("ferry_worker_spawn_duration_seconds_count", ())] <= ready


def promtool_ok(text):
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    assert r.returncode == 0, (r.stdout, r.stderr)


def test_each_outcome_moves_its_counters_by_exactly_one(ferry):
    f = start(ferry)
    base = scrape(f)
    check_histograms(base)

    # 200 and a 404 from the app
    assert requests.get(f.url + "/ok", timeout=10).status_code == 200
    assert requests.get(f.url + "/missing", timeout=10).status_code == 404
    t1 = scrape(f)
    assert delta(counters(base), counters(t1)) == {req("GET", "2xx"): 1, req("GET", "4xx"): 1}
    v0, _ = samples(base)
    v1, _ = samples(t1)
    assert v1[("ferry_http_response_bytes_total", ())] - \
        v0[("ferry_http_response_bytes_total", ())] == len("ok") + len("no such page")
    assert v1[("ferry_http_queue_wait_seconds_count", ())] - \
        v0[("ferry_http_queue_wait_seconds_count", ())] == 2

    # 413: refused before any worker (no queue wait observed)
    assert requests.post(f.url + "/ok", data=b"x" * 2048, timeout=10).status_code == 413
    t2 = scrape(f)
    assert delta(counters(t1), counters(t2)) == {
        req("POST", "4xx"): 1, why("ferry_http_rejections_total", "body_too_large"): 1}
    v2, _ = samples(t2)
    assert v2[("ferry_http_queue_wait_seconds_count", ())] == \
        v1[("ferry_http_queue_wait_seconds_count", ())]

    # 503 queue full: one request busy, one queued, the third refused
    results = {}

    def get(name, path):
        results[name] = requests.get(f.url + path, timeout=20).status_code

    busy = threading.Thread(target=get, args=("busy", "/slow?ms=1200"))
    busy.start()
    assert wait_for(lambda: samples(scrape(f))[0][("ferry_workers", (("state", "busy"),))] == 1)
    queued = threading.Thread(target=get, args=("queued", "/ok"))
    queued.start()
    assert wait_for(lambda: samples(scrape(f))[0][("ferry_queue_length", ())] == 1)
    assert requests.get(f.url + "/ok", timeout=10).status_code == 503
    busy.join()
    queued.join()
    assert results == {"busy": 200, "queued": 200}
    t3 = scrape(f)
    assert delta(counters(t2), counters(t3)) == {
        req("GET", "2xx"): 2, req("GET", "5xx"): 1,
        why("ferry_http_rejections_total", "queue_full"): 1}

    # 504: the worker passes max request time and is replaced
    assert requests.get(f.url + "/slow?ms=5000", timeout=20).status_code == 504
    assert wait_for(lambda: samples(scrape(f))[0][
        ("ferry_worker_exits_total", (("reason", "max_request_time"),))] == 1, 15)
    assert wait_for(lambda: samples(scrape(f))[0][("ferry_workers", (("state", "idle"),))] == 1,
                    20)
    t4 = scrape(f)
    d = delta(counters(t3), counters(t4))
    assert d == {req("GET", "5xx"): 1, why("ferry_http_failures_total", "max_request_time"): 1,
                 why("ferry_worker_exits_total", "max_request_time"): 1,
                 why("ferry_worker_spawns_total", "min_instances"): 1}, d

    # a killed worker: 502, a crash, a new worker
    pid = int(requests.get(f.url + "/pid", timeout=10).text)
    killed = threading.Thread(target=get, args=("killed", "/slow?ms=1800"))
    killed.start()
    assert wait_for(lambda: samples(scrape(f))[0][("ferry_workers", (("state", "busy"),))] == 1)
    os.kill(pid, signal.SIGKILL)
    killed.join()
    assert results["killed"] == 502
    assert wait_for(lambda: samples(scrape(f))[0][("ferry_workers", (("state", "idle"),))] == 1,
                    20)
    t5 = scrape(f)
    d = delta(counters(t4), counters(t5))
    # The worker's death shows as its session closing or as its exit, whichever the core sees
    # first: an exit seen first is a crash, a session closed first is a broken request.
    died = [k for k in d if k[0] == "ferry_worker_exits_total"]
    assert len(died) == 1 and dict(died[0][1])["reason"] in ("crash", "broken"), d
    assert d.pop(died[0]) == 1
    assert d == {req("GET", "2xx"): 1, req("GET", "5xx"): 1,
                 why("ferry_http_failures_total", "bad_response"): 1,
                 why("ferry_worker_spawns_total", "min_instances"): 1}, d
    check_histograms(t5)
    promtool_ok(t5)
    assert f.stop() == 0


def test_text_is_valid_and_names_every_metric(ferry):
    f = start(ferry)
    requests.get(f.url + "/ok", timeout=10)
    text = scrape(f)
    promtool_ok(text)
    _, fams = samples(text)
    for name in ("ferry_build_info", "ferry_start_time_seconds", "ferry_http_requests",
                 "ferry_http_request_duration_seconds", "ferry_http_queue_wait_seconds",
                 "ferry_http_response_bytes", "ferry_http_rejections", "ferry_http_failures",
                 "ferry_http_client_gone", "ferry_http_connections", "ferry_queue_length",
                 "ferry_queue_max", "ferry_workers", "ferry_workers_max", "ferry_worker_spawns",
                 "ferry_worker_exits", "ferry_worker_spawn_duration_seconds",
                 "ferry_worker_resident_memory_bytes", "ferry_worker_proportional_memory_bytes",
                 "ferry_core_resident_memory_bytes"):
        assert name in fams, name
    vals, _ = samples(text)
    assert [k for k in vals if k[0] == "ferry_build_info"][0][1][0][0] == "version"
    assert vals[("ferry_queue_max", ())] == 1
    assert vals[("ferry_workers_max", ())] == 1
    worker_series = [k for k in vals if k[0] == "ferry_worker_resident_memory_bytes"]
    assert len(worker_series) == 1 and dict(worker_series[0][1])["pid"].isdigit()
    assert vals[("ferry_core_resident_memory_bytes", ())] > 1 << 20
    # anything but GET/HEAD /metrics
    base = f.metrics_url.rsplit("/", 1)[0]
    assert requests.get(base + "/other", timeout=10).status_code == 404
    assert requests.post(f.metrics_url, timeout=10).status_code == 405
    assert requests.head(f.metrics_url, timeout=10).status_code == 200
    assert requests.get(f.url + "/ok", timeout=10).status_code == 200   # the app is unaffected
    assert f.stop() == 0


def test_status_prometheus_prints_the_same_families(ferry):
    f = start(ferry)
    env = dict(os.environ, TMPDIR=f.tmpdir)
    r = subprocess.run([FERRY_BIN, "status", "--prometheus", "--pid", str(f.pid)],
                       capture_output=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    promtool_ok(text)
    _, via_admin = samples(text)
    _, via_http = samples(scrape(f))
    assert sorted(via_admin) == sorted(via_http)
    r = subprocess.run([FERRY_BIN, "status", "--prometheus", "--json"], capture_output=True,
                       env=env, timeout=30)
    assert r.returncode == 2 and b"--prometheus goes alone" in r.stderr
    assert f.stop() == 0


def test_bad_metrics_address_is_refused(ferry_bin, tmp_path):
    for bad in ("9100", "localhost", "127.0.0.1:0", "127.0.0.1:70000", "::1:9100"):
        r = subprocess.run([ferry_bin, "start", APP, "--port", str(free_port()),
                            "--metrics-address", bad], capture_output=True, timeout=30,
                           env=dict(os.environ, TMPDIR=str(tmp_path)))
        assert r.returncode == 2, (bad, r.stderr)
        assert b"metrics-address '%s' is not HOST:PORT" % bad.encode() in r.stderr
    r = subprocess.run([ferry_bin, "start", APP, "--port", str(free_port()),
                        "--metrics-address", "example.com:9100"], capture_output=True,
                       timeout=30, env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert r.returncode == 1 and b"cannot serve metrics on example.com:9100" in r.stderr


def test_metrics_port_in_use_fails_the_start(ferry_bin, tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = subprocess.run([ferry_bin, "start", APP, "--port", str(free_port()),
                            "--metrics-address", "127.0.0.1:%d" % port], capture_output=True,
                           timeout=30, env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert r.returncode == 1
    assert b"cannot serve metrics on 127.0.0.1:%d: the port is in use" % port in r.stderr
