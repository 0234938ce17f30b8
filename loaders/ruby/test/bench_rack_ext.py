#!/usr/bin/python3
"""Measures the Rack loader through `ferry start`: req/s (wrk -t2 -c100 -d5s, 2 workers), CPU µs
per request of one worker (/proc/PID/stat utime+stime over a wrk run with one worker) and system
calls per request of one worker (strace -c -f -p over a fixed number of requests).

    /usr/bin/python3 loaders/ruby/test/bench_rack_ext.py FERRY_BIN [--loaders DIR] [--runs N]

--loaders sets FERRY_LOADERS_DIR (e.g. an old checkout's loaders/ for an A/B comparison). Every
process it starts is stopped by pid before it exits."""
import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
APP = os.path.join(REPO, "examples", "hello-rack")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Ferry:
    def __init__(self, ferry_bin, loaders, workers, port):
        self.port = port
        env = dict(os.environ)
        if loaders:
            env["FERRY_LOADERS_DIR"] = loaders
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [ferry_bin, "start", APP, "--port", str(port), "--max-pool-size", str(workers),
             "--min-instances", str(workers)],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 30
        while True:
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("ferry did not serve")
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=2).read()
                if len(self.workers()) == workers:
                    break
            except OSError:
                pass
            time.sleep(0.1)

    def workers(self):
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
                             capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(port, duration, threads=2, conns=100):
    out = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration,
                          "http://127.0.0.1:%d/" % port], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise RuntimeError("wrk saw errors:\n" + out)
    return rps, total


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def requests_n(port, n):
    """<n> GETs one after the other on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(n):
        conn.request("GET", "/")
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError("status %d" % r.status)
    conn.close()


STRACE_REQUESTS = 2000


def measure(ferry_bin, loaders, port):
    """(req/s with 2 workers, CPU µs per request of one worker, system calls per request of one
    worker, the strace -c table)."""
    f = Ferry(ferry_bin, loaders, 2, port)
    try:
        wrk(port, 1)  # warm-up
        rps, _ = wrk(port, 5)
    finally:
        f.stop()
    f = Ferry(ferry_bin, loaders, 1, port + 1)
    try:
        (pid,) = f.workers()
        wrk(port + 1, 1, 1, 10)
        t0 = cpu_ticks(pid)
        _, total = wrk(port + 1, 5, 1, 10)
        us = (cpu_ticks(pid) - t0) * 1e6 / CLK_TCK / total
        with tempfile.NamedTemporaryFile(suffix=".strace") as out:
            st = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", out.name],
                                  stderr=subprocess.PIPE, text=True)
            # strace prints "Process N attached" once it is in.
            st.stderr.readline()
            requests_n(port + 1, STRACE_REQUESTS)
            st.send_signal(signal.SIGINT)
            st.wait(10)
            text = open(out.name).read()
        m = re.search(r"^100\.00\s+\S+\s+\S+\s+(\d+)", text, re.M)
        calls = int(m.group(1)) / STRACE_REQUESTS if m else float("nan")
    finally:
        f.stop()
    return rps, us, calls, text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ferry_bin")
    ap.add_argument("--loaders")
    ap.add_argument("--port", type=int, default=39200)
    ap.add_argument("--table", action="store_true", help="also print strace's table")
    args = ap.parse_args()
    rps, us, calls, text = measure(args.ferry_bin, args.loaders, args.port)
    print("req/s %.0f  cpu_us/req %.1f  syscalls/req %.2f" % (rps, us, calls))
    if args.table:
        print(text)


if __name__ == "__main__":
    sys.exit(main())
