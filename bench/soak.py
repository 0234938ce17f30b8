#!/usr/bin/python3
"""`make soak`: long, bounded runs that catch leaks a unit test cannot see.

loaders — for each app type (c, wsgi, rack), one worker of the example hello app serves
  --requests keep-alive requests (default 1 000 000) through `ferry start`, bounded by
  --max-seconds per app. The worker's RSS and open fds, and the core's, are read after a warm-up
  (--warmup requests) and again at the end. A reference-count or GC-mark bug in an extension
  module grows the worker by at least a few bytes per request: tens of MiB over a million. Pass
  when the worker kept its pid (it was never replaced), its RSS grew by at most --max-growth-mib
  and its fd count did not grow; the same for the core.

Prints one line of figures per app and a "soak <app>: PASS|FAIL ..." line; exits 1 when any
failed. Leaves nothing running: every server is stopped by pid (bench/procs.py).

Usage: bench/soak.py [--ferry-bin build/ferry] [--only c,wsgi,rack] [--requests N]
                     [--max-seconds S] [--warmup N] [--max-growth-mib M]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
import procs  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20
APPS = ("c", "wsgi", "rack")
CHUNK_SECONDS = 5  # one wrk run between two looks at the request counter
CONNS = 20


def log(msg):
    print("soak: " + msg, flush=True)


def app_dir(ferry_bin, app):
    """The example hello app of <app>: hello-c is built next to the binary."""
    if app == "c":
        return os.path.join(os.path.dirname(ferry_bin), "examples", "hello-c")
    return os.path.join(ROOT, "examples", "hello-" + app)


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def status(ferry_bin, core, env):
    p = subprocess.run([ferry_bin, "status", "--json", "--pid", str(core)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       stdin=subprocess.DEVNULL, timeout=15)
    for line in p.stdout.decode("utf-8", "replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "workers" in doc:
            return doc
    return None


def worker_pid(doc):
    ws = [w for w in doc.get("workers", []) if w.get("state") in ("idle", "busy")]
    return int(ws[0]["pid"]) if len(ws) == 1 else None


def wrk(port, seconds):
    p = subprocess.run(["wrk", "-t2", "-c%d" % CONNS, "-d%ds" % seconds, "--timeout", "5s",
                        "http://127.0.0.1:%d/" % port], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                       timeout=seconds + 30)
    return benchlib.parse_wrk(p.stdout.decode("utf-8", "replace"))


def sample(core, worker):
    return {"core_rss": procs.rss_bytes(core), "core_fds": fd_count(core),
            "worker_rss": procs.rss_bytes(worker), "worker_fds": fd_count(worker)}


def soak_one(args, app):
    """Runs one app's soak; returns (passed, text)."""
    tmp = tempfile.mkdtemp(prefix="ferry-soak-")
    port = procs.free_port()
    env = dict(os.environ)
    env["TMPDIR"] = tmp
    argv = [args.ferry_bin, "start", app_dir(args.ferry_bin, app), "--address", "127.0.0.1",
            "--port", str(port), "--max-pool-size", "1", "--min-instances", "1",
            "--max-requests", "0"]
    server = procs.Server(argv, env=env, cwd=tmp, log_path=os.path.join(tmp, "server.log"))
    try:
        server.start()
        procs.wait_first_200(port, 60, server.proc, path="/")
        core = server.proc.pid
        doc = status(args.ferry_bin, core, env)
        worker = worker_pid(doc) if doc else None
        if worker is None:
            return False, "cannot find the one worker in `ferry status --json`"
        started = time.monotonic()
        done = 0
        while done < args.warmup and time.monotonic() - started < args.max_seconds:
            wrk(port, 2)
            done = status(args.ferry_bin, core, env)["pool"]["requests_done"]
        base = sample(core, worker)
        base_done = done
        errors = 0
        while done < args.requests and time.monotonic() - started < args.max_seconds:
            res = wrk(port, CHUNK_SECONDS)
            errors += sum(res["errors"].values()) + res["non_2xx"]
            doc = status(args.ferry_bin, core, env)
            done = doc["pool"]["requests_done"]
            if worker_pid(doc) != worker:
                return False, "the worker %d was replaced after %d requests" % (worker, done)
        end = sample(core, worker)
        seconds = time.monotonic() - started
    except (OSError, RuntimeError, subprocess.TimeoutExpired, KeyError, TypeError,
            benchlib.WrkParseError) as e:
        return False, "failed: %s; log: %s" % (e, tail(os.path.join(tmp, "server.log")))
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    grow_w = (end["worker_rss"] - base["worker_rss"]) / MIB
    grow_c = (end["core_rss"] - base["core_rss"]) / MIB
    text = ("%d requests in %.0f s (%d measured after the warm-up; wrk errors %d); worker RSS "
            "%.1f -> %.1f MiB (%+.2f), fds %s -> %s; core RSS %.1f -> %.1f MiB (%+.2f), "
            "fds %s -> %s" % (done, seconds, done - base_done, errors,
                              base["worker_rss"] / MIB, end["worker_rss"] / MIB, grow_w,
                              base["worker_fds"], end["worker_fds"], base["core_rss"] / MIB,
                              end["core_rss"] / MIB, grow_c, base["core_fds"], end["core_fds"]))
    problems = []
    if done < args.requests:
        problems.append("only %d of %d requests within %d s" % (done, args.requests,
                                                               args.max_seconds))
    if grow_w > args.max_growth_mib:
        problems.append("worker RSS grew %.2f MiB" % grow_w)
    if grow_c > args.max_growth_mib:
        problems.append("core RSS grew %.2f MiB" % grow_c)
    if (end["worker_fds"] or 0) > (base["worker_fds"] or 0):
        problems.append("worker fds grew")
    if (end["core_fds"] or 0) > (base["core_fds"] or 0):
        problems.append("core fds grew")
    if problems:
        return False, text + "; " + "; ".join(problems)
    return True, text


def tail(path, n=3):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().splitlines()[-n:])
    except OSError:
        return "(no log)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ferry-bin", default=os.path.join(ROOT, "build", "ferry"))
    ap.add_argument("--only", default=",".join(APPS))
    ap.add_argument("--requests", type=int, default=1000000)
    ap.add_argument("--max-seconds", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=50000)
    ap.add_argument("--max-growth-mib", type=float, default=4.0)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        log("wrk is not installed (scripts/install-deps --bench)")
        return 2
    failed = 0
    for app in [a.strip() for a in args.only.split(",") if a.strip()]:
        if app not in APPS:
            log("unknown app type %r (c, wsgi, rack)" % app)
            return 2
        log("%s: %d requests through one worker (at most %d s)" % (app, args.requests,
                                                                     args.max_seconds))
        ok, text = soak_one(args, app)
        log("%s: %s" % (app, text))
        print("soak %s: %s" % (app, "PASS" if ok else "FAIL"), flush=True)
        failed += 0 if ok else 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
