"""A bounded leak check of the _ferry extension's reference counting: 20 000 requests to a hello
route through one worker (one v2 session), and 2 000 of each kind that takes another path
through the C code (a body read, write() and bytes-like pieces, start_response refusing its
arguments, a 500, an error after the head, file_wrapper, exc_info), with the worker's RSS after
a warm-up and at the end. A leak of one small object per request would be 20 000 objects
(≥ 1 MiB); the bound is 1 MiB for all of them."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import wsgi_ext_driver as driver  # noqa: E402

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "wsgi_ext_cases")
HELLO_REQUESTS = 20000
OTHER_REQUESTS = 2000
BOUND_KIB = 1024

OTHERS = [("POST", "/input", "ops=l,r3,L", b"a\nbb\nccc\n" * 20),
          ("GET", "/write", "", b""),
          ("GET", "/bad-call", "case=header-crlf", b""),
          ("GET", "/raise", "", b""),
          ("GET", "/mid-body", "", b""),
          ("GET", "/file-wrapper", "", b""),
          ("GET", "/exc-info", "", b"")]


def run(session, rounds):
    for _ in range(rounds):
        assert session.request("GET", "/hello")[2] == b"hello world\n"


def run_others(session, rounds):
    for _ in range(rounds):
        for method, path, query, body in OTHERS:
            session.request(method, path, query=query, body=body)


def test_rss_stays_flat_over_20000_requests(tmp_path):
    with driver.Loader(CASES, stderr_path=str(tmp_path / "stderr")) as loader:
        assert loader.handshake()[0] == "ready"
        session = loader.session()
        run(session, 2000)
        run_others(session, 200)
        before = driver.proc_status_kib(loader.pid, "VmRSS")
        ticks = driver.cpu_ticks(loader.pid)
        run(session, HELLO_REQUESTS)
        hello_ticks = driver.cpu_ticks(loader.pid) - ticks
        after_hello = driver.proc_status_kib(loader.pid, "VmRSS")
        run_others(session, OTHER_REQUESTS)
        after = driver.proc_status_kib(loader.pid, "VmRSS")
        session.close()
        print("\nworker RSS: %d KiB after the warm-up, %d KiB after %d hello requests (%+d), "
              "%d KiB after %d x %d others (%+d); worker CPU %.1f us per hello request"
              % (before, after_hello, HELLO_REQUESTS, after_hello - before, after,
                 OTHER_REQUESTS, len(OTHERS), after - after_hello,
                 hello_ticks * 1e6 / os.sysconf("SC_CLK_TCK") / HELLO_REQUESTS))
        assert after_hello - before < BOUND_KIB, (before, after_hello)
        assert after - before < BOUND_KIB, (before, after_hello, after)
