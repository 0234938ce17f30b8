#!/usr/bin/python3
"""`make soak`: long, bounded runs that catch leaks and failures a unit test cannot see.

Sections (--only picks some; all by default), each against `ferry start` on 127.0.0.1:

c, wsgi, rack — one worker of the example hello app of that type serves --requests keep-alive
  requests (default 1 000 000), bounded by --max-seconds. The worker's RSS and open fds, and the
  core's, are read after a warm-up (--warmup requests) and at the end. A reference-count or
  GC-mark bug in an extension module grows the worker by a few bytes per request: tens of MiB
  over a million. Pass: the worker kept its pid, neither RSS grew by more than
  --max-growth-mib, no fd count grew.
partial — --partial-cycles (100 000) connections that send part of a request head and close.
  Pass: the core's RSS is back within 10 % (+ 512 KiB) of its baseline and it still serves.
idle — --idle-conns (10 000) keep-alive connections that each made one request, then idle for
  1.5 s. Pass: at most 2 KiB each in the core, and its RSS back within 10 % (+ 512 KiB) of the
  baseline after they close.
kill — --load-seconds (30) of wrk load on the WSGI hello app (2 workers) while a random worker
  is SIGKILLed every second. Pass: failed requests (non-2xx and socket errors) ≤ the kills (only
  the request each killed worker was running may fail) and the pool serves at the end.
restart — the same load while `ferry restart` runs every 5 s. Pass: no failed request.

Each prints its figures and a "soak <section>: PASS|FAIL" line; exits 1 when any failed. Leaves
nothing running: every server is stopped by pid (bench/procs.py).

Usage: bench/soak.py [--ferry-bin build/ferry] [--only c,wsgi,rack,partial,idle,kill,restart]
                     [--requests N] [--max-seconds S] [--warmup N] [--max-growth-mib M]
                     [--partial-cycles N] [--idle-conns N] [--load-seconds S]
"""

import argparse
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
import procs  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20
APPS = ("c", "wsgi", "rack")
SECTIONS = APPS + ("partial", "idle", "kill", "restart")
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
    return procs.status_document(p.stdout)


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


class Served:
    """`ferry start <app> <extra>` on a free port in a temp dir; stopped by pid on exit."""

    def __init__(self, args, app, extra=()):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="ferry-soak-")
        self.port = procs.free_port()
        self.env = dict(os.environ)
        self.env["TMPDIR"] = self.tmp
        self.log_path = os.path.join(self.tmp, "server.log")
        argv = [args.ferry_bin, "start", app_dir(args.ferry_bin, app), "--address",
                "127.0.0.1", "--port", str(self.port)] + list(extra)
        self.server = procs.Server(argv, env=self.env, cwd=self.tmp, log_path=self.log_path)

    def __enter__(self):
        self.server.start()
        try:
            procs.wait_first_200(self.port, 60, self.server.proc, path="/")
        except RuntimeError:
            self.__exit__()
            raise
        self.core = self.server.proc.pid
        return self

    def __exit__(self, *exc):
        self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def status(self):
        return status(self.args.ferry_bin, self.core, self.env)

    def serves(self):
        try:
            return procs.http_get(self.port, "/", timeout=10)[0] == 200
        except OSError:
            return False


def back_near(base, now):
    return now <= base * 1.10 + 512 * 1024


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n:
        raise RuntimeError("RLIMIT_NOFILE hard limit %d < %d" % (hard, n))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n), hard))


def settle(read, ok, timeout):
    """Polls read() until ok(value) or <timeout> s; returns the last value."""
    end = time.monotonic() + timeout
    v = read()
    while not ok(v) and time.monotonic() < end:
        time.sleep(0.1)
        v = read()
    return v


def soak_partial(args):
    with Served(args, "c") as s:
        procs.http_get(s.port, "/")
        base = procs.rss_bytes(s.core)
        t0 = time.monotonic()
        for _ in range(args.partial_cycles):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.sendall(b"GET / HTTP/1.1\r\nHo")
            c.close()
        seconds = time.monotonic() - t0
        ok_serving = s.serves()
        after = settle(lambda: procs.rss_bytes(s.core), lambda v: back_near(base, v), 15)
    text = ("%d connect/partial-send/close cycles in %.0f s; core RSS %.1f MiB before, %.1f "
            "after" % (args.partial_cycles, seconds, base / MIB, after / MIB))
    return back_near(base, after) and ok_serving, text + ("" if ok_serving else
                                                           "; no longer serves")


def soak_idle(args):
    n = args.idle_conns
    raise_nofile(n + 200)
    with Served(args, "c") as s:
        procs.http_get(s.port, "/")
        base = procs.rss_bytes(s.core)
        socks = procs.open_idle_keep_alive(s.port, n, path="/")
        time.sleep(1.5)  # past the 1 s after which an idle connection gives its buffers back
        idle = procs.rss_bytes(s.core)
        for c in socks:
            c.close()
        after = settle(lambda: procs.rss_bytes(s.core), lambda v: back_near(base, v), 15)
    each = (idle - base) / 1024.0 / n
    text = ("%d idle keep-alive connections: core RSS %.1f MiB before, %.1f with them (%.2f KiB "
            "each), %.1f after they closed" % (n, base / MIB, idle / MIB, each, after / MIB))
    return each <= 2.0 and back_near(base, after), text


def wrk_thread(port, seconds, out):
    def run():
        try:
            p = subprocess.run(["wrk", "-t2", "-c20", "-d%ds" % seconds, "--timeout", "10s",
                                "http://127.0.0.1:%d/" % port], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               timeout=seconds + 60)
            out["res"] = benchlib.parse_wrk(p.stdout.decode("utf-8", "replace"))
        except (OSError, subprocess.TimeoutExpired, benchlib.WrkParseError) as e:
            out["error"] = str(e)
    t = threading.Thread(target=run)
    t.start()
    return t


def failures(res):
    return sum(res["errors"].values()) + res["non_2xx"]


def soak_kill(args):
    kills = 0
    out = {}
    with Served(args, "wsgi", ["--max-pool-size", "2", "--min-instances", "2"]) as s:
        t = wrk_thread(s.port, args.load_seconds, out)
        end = time.monotonic() + args.load_seconds - 2
        rng = random.Random(1)
        while time.monotonic() < end:
            time.sleep(1.0)
            doc = s.status()
            pids = [int(w["pid"]) for w in (doc or {}).get("workers", [])
                    if w.get("state") in ("idle", "busy")]
            if pids:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
        t.join()
        serving = settle(s.serves, bool, 20)
    if "error" in out:
        return False, "wrk: " + out["error"]
    res = out["res"]
    text = ("%d requests in %d s while %d workers were SIGKILLed (one a second): %d failed "
            "(non-2xx %d, socket errors %s)" % (res["requests"], args.load_seconds, kills,
                                                failures(res), res["non_2xx"], res["errors"]))
    return failures(res) <= kills and kills > 0 and serving, text


def soak_restart(args):
    restarts = 0
    out = {}
    with Served(args, "wsgi", ["--max-pool-size", "2", "--min-instances", "2"]) as s:
        t = wrk_thread(s.port, args.load_seconds, out)
        end = time.monotonic() + args.load_seconds - 5
        problems = []
        while time.monotonic() < end:
            time.sleep(5.0)
            p = subprocess.run([args.ferry_bin, "restart", "--pid", str(s.core), "--wait",
                                "--timeout", "60"], env=s.env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=90)
            if p.returncode != 0:
                problems.append(p.stdout.decode("utf-8", "replace").strip())
            restarts += 1
        t.join()
    if "error" in out:
        return False, "wrk: " + out["error"]
    res = out["res"]
    text = ("%d requests in %d s with a rolling restart every 5 s (%d restarts): %d failed "
            "(non-2xx %d, socket errors %s)" % (res["requests"], args.load_seconds, restarts,
                                                failures(res), res["non_2xx"], res["errors"]))
    if problems:
        text += "; ferry restart failed: " + " | ".join(problems[:3])
    return failures(res) == 0 and restarts > 0 and not problems, text


def tail(path, n=3):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().splitlines()[-n:])
    except OSError:
        return "(no log)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--ferry-bin", default=os.path.join(ROOT, "build", "ferry"))
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--requests", type=int, default=1000000)
    ap.add_argument("--max-seconds", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=50000)
    ap.add_argument("--max-growth-mib", type=float, default=4.0)
    ap.add_argument("--partial-cycles", type=int, default=100000)
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--load-seconds", type=int, default=30)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        log("wrk is not installed (scripts/install-deps --soak)")
        return 2
    chosen = [a.strip() for a in args.only.split(",") if a.strip()]
    for name in chosen:
        if name not in SECTIONS:
            log("unknown section %r (%s)" % (name, ", ".join(SECTIONS)))
            return 2
    runs = {"partial": soak_partial, "idle": soak_idle, "kill": soak_kill,
            "restart": soak_restart}
    failed = 0
    for name in chosen:
        t0 = time.monotonic()
        if name in APPS:
            log("%s: %d requests through one worker (at most %d s)" % (
                name, args.requests, args.max_seconds))
            ok, text = soak_one(args, name)
        else:
            log("%s: running" % name)
            try:
                ok, text = runs[name](args)
            except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
                ok, text = False, "failed: %s" % e
        log("%s: %s (%.0f s)" % (name, text, time.monotonic() - t0))
        print("soak %s: %s" % (name, "PASS" if ok else "FAIL"), flush=True)
        failed += 0 if ok else 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
