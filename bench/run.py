#!/usr/bin/python3
"""`make bench`: ferry against nginx, gunicorn, uWSGI, Puma, Unicorn and Passenger.

Each server (bench/servers.py) is started in its own session, warmed, measured with wrk and
stopped by pid before the next; a repetition is one full start..stop cycle, so cold start is
measured once per repetition. Writes bench/results/<date>-<host>[-quick].md with the figures,
ratios, targets and PNG charts next to it, plus the raw figures as .json.

Usage: bench/run.py [--quick] [--reps N] [--duration S] [--only NAME,...] [--ferry-bin PATH]
                    [--metrics-row | --no-metrics-row] [--cycle-row | --no-cycle-row]
                    [--cycle-only]
                    [--v2 SECTIONS] [--v2-only]
See docs/performance.md for what is measured and how; the session-protocol (v2) rows are in
bench/v2rows.py.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
import procs  # noqa: E402
import servers  # noqa: E402
import smartrows  # noqa: E402
import v2rows  # noqa: E402
import metricsrow  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
MIB = 1 << 20
MIB_BODY = bytes(i % 251 for i in range(MIB))
PYTHON = "/usr/bin/python3"
# The rows whose memory with many idle keep-alive connections is measured (--idle-conns).
IDLE_CONN_ROWS = ("ferry-c", "ferry-wsgi", "ferry-rack", "nginx-return200")
# The cycle-time row (--cycle-row): the WSGI and Rack servers, measured with bench/loadgen.c.
CYCLE_ROWS = ("ferry-wsgi", "uwsgi-python", "gunicorn-sync",
              "ferry-rack", "puma-2x1", "unicorn", "passenger-rack", "uwsgi-rack")
CYCLE_CONNS = 100
CYCLE_THREADS = 2


def log(msg):
    print("bench: " + msg, flush=True)


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return benchlib.parse_loadavg(f.read())
    except (OSError, ValueError):
        return (None, None, None)


def sh(argv, timeout, cwd=None, env=None):
    """Runs <argv>; returns (exit code, stdout+stderr). A timeout is exit code -1."""
    try:
        p = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, stdin=subprocess.DEVNULL, env=env)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode("utf-8", "replace") if e.stdout else ""
        return -1, out + "\n(timed out after %ss)" % timeout
    except OSError as e:
        return -2, str(e)


# ---------------------------------------------------------------------------------------------
# Building ferry and the apps

def build_ferry(args, ctx):
    """Fills ctx['ferry_bin'] (or ctx['ferry_reason'])."""
    if args.ferry_bin:
        if os.access(args.ferry_bin, os.X_OK):
            ctx["ferry_bin"] = os.path.abspath(args.ferry_bin)
            ctx["ferry_build"] = "given: " + ctx["ferry_bin"]
        else:
            ctx["ferry_reason"] = "--ferry-bin %s is not an executable" % args.ferry_bin
        return
    bdir = os.path.join(ROOT, "build-release")
    if not os.path.exists(os.path.join(bdir, "build.ninja")):
        rc, out = sh(["meson", "setup", bdir, "--buildtype=release", "-Dtests=false"], 300,
                     cwd=ROOT)
        if rc != 0:
            ctx["ferry_reason"] = "meson setup build-release failed: " + last_line(out)
            return
    rc, out = sh(["ninja", "-C", bdir, "-j2"], 900, cwd=ROOT)
    if rc != 0:
        ctx["ferry_reason"] = "ninja -C build-release failed: " + last_line(out)
        return
    ctx["ferry_bin"] = os.path.join(bdir, "ferry")
    ctx["ferry_build"] = "meson setup build-release --buildtype=release -Dtests=false; " \
                         "ninja -C build-release"


def read_ferry_options(ctx):
    """Fills ctx['ferry_options'] with the option names `ferry start --help` lists, so rows that
    need an option this ferry does not have yet are skipped instead of failing to start."""
    ctx["ferry_options"] = set()
    if not ctx.get("ferry_bin"):
        return
    rc, out = sh([ctx["ferry_bin"], "start", "--help"], 30)
    ctx["ferry_options"] = set(re.findall(r"^\s+--([a-z0-9][a-z0-9-]*)", out, re.M))


def last_line(text, n=1):
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " / ".join(lines[-n:]) if lines else "(no output)"


def build_loadgen(outdir):
    """Compiles bench/loadgen.c into <outdir> (warnings are errors); returns (path, None) or
    (None, reason)."""
    os.makedirs(outdir, exist_ok=True)
    exe = os.path.join(outdir, "loadgen")
    rc, out = sh(["cc", "-O2", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
                  "-pthread", "-o", exe, os.path.join(BENCH, "loadgen.c")], 120)
    if rc != 0:
        return None, "bench/loadgen.c did not compile: " + last_line(out, 3)
    return exe, None


def build_apps(ctx, outdir):
    """Compiles the FastCGI app, the ferry C app and bench/loadgen.c into <outdir>."""
    os.makedirs(outdir, exist_ok=True)
    ctx["loadgen"], ctx["loadgen_reason"] = build_loadgen(outdir)
    fcgi = os.path.join(outdir, "fcgi-app")
    if not os.path.exists("/usr/include/fcgiapp.h"):
        ctx["fcgi_reason"] = "libfcgi-dev not installed (no /usr/include/fcgiapp.h)"
    else:
        rc, out = sh(["cc", "-O2", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-o", fcgi,
                      os.path.join(BENCH, "apps", "fcgi", "app.c"), "-lfcgi"], 120)
        if rc == 0:
            ctx["fcgi_app"] = fcgi
        else:
            ctx["fcgi_reason"] = "FastCGI app did not compile: " + last_line(out)
    header = os.path.join(ROOT, "include", "ferry.h")
    cdir = os.path.join(outdir, "c")
    if not os.path.exists(header):
        ctx["ferry_c_reason"] = "include/ferry.h (the C SDK) does not exist yet"
        return
    os.makedirs(cdir, exist_ok=True)
    rc, out = sh(["cc", "-O2", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-fPIC",
                  "-shared", "-I", os.path.join(ROOT, "include"), "-o",
                  os.path.join(cdir, "app.so"), os.path.join(BENCH, "apps", "c", "app.c")], 120)
    if rc == 0:
        ctx["ferry_c_app"] = cdir
    else:
        ctx["ferry_c_reason"] = "bench/apps/c/app.c did not compile: " + last_line(out)


# ---------------------------------------------------------------------------------------------
# Measuring

class Runner:
    def __init__(self, args):
        self.args = args
        self.commands = []  # exact commands, for the report
        self.used_ports = []
        self.leftovers = []
        self.loadgen_bin = None  # bench/loadgen.c, built by build_apps (cycle_row sets it)

    def wrk(self, port, path, conns, duration, extra=(), timeout="2s", note=None,
            allow_zero=False, threads=2, script_args=()):
        """Runs wrk; returns (parsed figures, None) or (None, reason). A run where more than 1 %
        of responses were not 2xx/3xx is refused; so is one with no response at all, unless
        <allow_zero> (a server starved by slow clients legitimately serves nothing). The parsed
        figures carry wrk's whole output as 'output' (what a Lua script's done() printed);
        <script_args> go after the URL, behind `--`, to the script's init()."""
        argv = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration, "--latency",
                "--timeout", timeout] + list(extra) + ["http://127.0.0.1:%d%s" % (port, path)] + (
                    ["--"] + list(script_args) if script_args else [])
        if note and note not in [c[0] for c in self.commands]:
            cmd = " ".join(shlex.quote(a) for a in argv).replace(ROOT + "/", "")
            self.commands.append((note, cmd.replace("127.0.0.1:%d" % port, "127.0.0.1:$PORT")))
        rc, out = sh(argv, duration + 30)
        try:
            res = benchlib.parse_wrk(out)
        except benchlib.WrkParseError as e:
            return None, "wrk: %s (%s)" % (e, last_line(out))
        res["output"] = out
        bad = res["non_2xx"]
        if res["requests"] == 0 and not allow_zero:
            return None, "wrk: no response in %d s (%s)" % (duration, res["errors"])
        if bad > 0.01 * res["requests"]:
            return None, "wrk: %d of %d responses were not 2xx/3xx" % (bad, res["requests"])
        return res, None

    def loadgen(self, port, path, conns, duration, threads=CYCLE_THREADS, note=None):
        """Runs bench/loadgen.c (built into ctx['loadgen'], passed as self.loadgen_bin); returns
        (its parsed JSON line, None) or (None, reason). Refused like a wrk run: no response at
        all, more than 1 % of responses not 2xx/3xx, or more than 1 % errors."""
        argv = [self.loadgen_bin, "-c%d" % conns, "-t%d" % threads, "-d%d" % duration,
                "127.0.0.1", str(port), path]
        if note and note not in [c[0] for c in self.commands]:
            cmd = " ".join(shlex.quote(a) for a in argv).replace(ROOT + "/", "")
            self.commands.append((note, cmd.replace(" %d /" % port, " $PORT /") +
                                  "   (loadgen built by: cc -O2 -std=c11 -D_GNU_SOURCE -Wall "
                                  "-Wextra -Werror -pthread -o loadgen bench/loadgen.c)"))
        rc, out = sh(argv, duration + 30)
        if rc != 0:
            return None, "loadgen exited %d: %s" % (rc, last_line(out))
        try:
            res = benchlib.parse_loadgen(out)
        except ValueError as e:
            return None, "loadgen: %s (%s)" % (e, last_line(out))
        if res["requests"] == 0:
            return None, "loadgen: no response in %d s (errors %s)" % (duration,
                                                                     res["error_kinds"])
        if res["non_2xx"] > 0.01 * res["requests"]:
            return None, "loadgen: %d of %d responses were not 2xx/3xx" % (res["non_2xx"],
                                                                         res["requests"])
        if res["errors"] > 0.01 * res["requests"]:
            return None, "loadgen: %d errors (%s) in %d requests" % (
                res["errors"], res["error_kinds"], res["requests"])
        return res, None

    def check_routes(self, spec, port):
        """Checks each route answers as the app logic says; returns a list of problems."""
        problems = []
        base = "http://127.0.0.1:%d" % port
        try:
            with urllib.request.urlopen(base + "/hello", timeout=5) as r:
                body = r.read()
                if r.status != 200 or body != b"hello world\n":
                    problems.append("/hello answered %d %r" % (r.status, body[:40]))
            if "1m" in spec.routes:
                with urllib.request.urlopen(base + "/1m", timeout=10) as r:
                    if r.read() != MIB_BODY:
                        problems.append("/1m body is not the 1 MiB pattern")
            if "echo" in spec.routes:
                req = urllib.request.Request(base + "/echo", data=MIB_BODY, method="POST",
                                             headers={"Content-Type":
                                                      "application/octet-stream"})
                with urllib.request.urlopen(req, timeout=10) as r:
                    if r.read() != MIB_BODY:
                        problems.append("/echo did not return the 1 MiB body")
        except Exception as e:  # urllib raises many kinds; all mean "route broken"
            problems.append("route check: %s" % e)
        try:
            closed = procs.http_get(port, "/hello", timeout=2.0, want_close=True)[3]
            if not closed:
                problems.append("ignores `Connection: close` (kept the connection open), so "
                                "its close run is really keep-alive: not reported")
        except OSError as e:
            problems.append("Connection: close check: %s" % e)
        return problems

    def slowloris_run(self, server, port, duration, baseline_rps, note):
        """wrk against /hello while <count> slowloris connections are held open."""
        count = self.args.slowloris
        argv = [PYTHON, os.path.join(BENCH, "slowloris.py"), str(port), str(count),
                str(duration + 20)]
        if "slowloris" not in [c[0] for c in self.commands]:
            cmd = " ".join(shlex.quote(a) for a in argv).replace(ROOT + "/", "")
            self.commands.append(("slowloris", cmd.replace(" %d " % port, " $PORT ") +
                                  "   (held during the next wrk run, hello keep-alive c100; the same run again "
                                  "after they are closed is the second baseline)"))
        sl = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, start_new_session=True)
        info = {"slowloris_open": None}
        try:
            import selectors
            sel = selectors.DefaultSelector()
            sel.register(sl.stdout, selectors.EVENT_READ)
            line = b""
            if sel.select(timeout=15):
                line = sl.stdout.readline()
            sel.close()
            if line.startswith(b"open "):
                info["slowloris_open"] = int(line.split()[1])
            res, err = self.wrk(port, "/hello", 100, duration, note=note, allow_zero=True)
        finally:
            try:
                os.killpg(sl.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                out, _ = sl.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(sl.pid, signal.SIGKILL)
                out, _ = sl.communicate(timeout=5)
        for ln in out.decode("utf-8", "replace").splitlines():
            if ln.startswith("{"):
                try:
                    info["slowloris_stats"] = json.loads(ln)
                except ValueError:
                    pass
        if res is None:
            info["slowloris_error"] = err
            return info
        # A second baseline right after the attack: the machine is shared, so the attack run is
        # compared with the mean of the runs just before and just after it.
        after, _ = self.wrk(port, "/hello", 100, duration)
        if after is not None:
            info["rps_ka_after_slowloris"] = after["rps"]
            baseline_rps = (baseline_rps + after["rps"]) / 2.0
        info["rps_slowloris"] = res["rps"]
        info["slowloris_drop_pct"] = benchlib.throughput_drop_pct(baseline_rps, res["rps"])
        return info

    def one_rep(self, spec, rep):
        """One start..stop cycle of <spec>. Returns (figures dict, notes list) or raises
        RuntimeError('failed to start: ...')."""
        a = self.args
        port = procs.free_port()
        self.used_ports.append(port)
        tmp = tempfile.mkdtemp(prefix="ferry-bench-%s-" % spec.name)
        notes = []
        figures = {"loadavg_start": loadavg()[0]}
        try:
            argv, env, cwd = spec.prepare(port, tmp)
        except RuntimeError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError("failed to start: %s" % e)
        if rep == 0:
            cmd = " ".join(shlex.quote(x) for x in argv)
            self.commands.append((spec.name, cmd.replace(tmp, "$TMP").replace(str(port),
                                                                                 "$PORT")))
        logp = os.path.join(tmp, "server.log")
        env = dict(env)
        env["TMPDIR"] = tmp  # whatever the server leaves in its temp dir goes with it
        server = procs.Server(argv, env=env, cwd=cwd, log_path=logp)
        t_launch = time.monotonic()
        try:
            server.start()
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError("failed to start: %s" % e)
        sampler = procs.RssSampler(server).start()
        try:
            try:
                procs.wait_first_200(port, spec.start_timeout_s, server.proc)
            except RuntimeError as e:
                raise RuntimeError("failed to start: %s; log: %s" % (
                    e, last_line(read_text(logp), 2)))
            figures["cold_start_ms"] = (time.monotonic() - t_launch) * 1000.0
            time.sleep(1.0)  # let min-instances finish spawning before the idle reading
            figures["idle_tree_rss_mib"] = server.tree_rss() / MIB
            figures["idle_core_rss_mib"] = server.root_rss() / MIB
            figures["processes"] = len(server.tree())
            problems = self.check_routes(spec, port)
            if problems:
                notes.extend(problems)
            self.wrk(port, "/hello", 100, 1)  # warm-up, not measured
            d = a.duration
            peaks = []

            def measured(key, path, conns, dur, extra=(), timeout="2s", note=None):
                figures["loadavg_" + key] = loadavg()[0]
                sampler.reset()
                res, err = self.wrk(port, path, conns, dur, extra, timeout, note=note)
                peaks.append(sampler.peak())
                if err:
                    notes.append("%s: %s" % (key, err))
                elif benchlib.closes_every_response(res):
                    notes.append("closes the connection after every response (wrk counts "
                                 "each close as a read error), so every request pays a connect")
                elif sum(res["errors"].values()):
                    notes.append("%s: wrk socket errors %s in %d requests" % (
                        key, ", ".join("%s %d" % kv for kv in res["errors"].items() if kv[1]),
                        res["requests"]))
                return res, peaks[-1]

            res, peak = measured("ka", "/hello", 100, d, note="hello keep-alive c100")
            if res:
                figures.update(rps_ka=res["rps"], p50_ka_ms=res["p50_ms"],
                               p99_ka_ms=res["p99_ms"], peak_rss_mib=peak / MIB)
            if figures.get("rps_ka") and a.slowloris > 0:
                figures["loadavg_slowloris"] = loadavg()[0]
                sampler.reset()
                # Right after the keep-alive run, so its baseline saw the same machine load.
                info = self.slowloris_run(server, port, d, figures["rps_ka"],
                                          note="hello keep-alive c100 during slowloris")
                peaks.append(sampler.peak())
                if "slowloris_error" in info:
                    notes.append("slowloris: " + info.pop("slowloris_error"))
                stats = info.pop("slowloris_stats", None)
                if stats:
                    figures["slowloris_open_at_end"] = stats.get("open_at_end")
                figures.update(info)
            res, _ = measured("close", "/hello", 100, d, ["-H", "Connection: close"],
                              note="hello Connection: close c100")
            if res and not any("Connection: close" in p for p in problems):
                figures.update(rps_close=res["rps"], p50_close_ms=res["p50_ms"],
                               p99_close_ms=res["p99_ms"])
            if "1m" in spec.routes and not any("/1m" in p for p in problems):
                res, _ = measured("down", "/1m", 8, a.big_duration, timeout="10s",
                                  note="1 MiB download c8")
                if res:
                    figures["mib_down_s"] = res["rps"]
            if "echo" in spec.routes and not any("/echo" in p for p in problems):
                res, _ = measured("up", "/echo", 8, a.big_duration,
                                  ["-s", os.path.join(BENCH, "post1m.lua")], timeout="10s",
                                  note="1 MiB upload (POST echo) c8")
                if res:
                    figures["mib_up_s"] = res["rps"]
            figures["peak_rss_all_mib"] = max(peaks) / MIB if peaks else None
            if spec.name in IDLE_CONN_ROWS and a.idle_conns > 0:
                self.idle_conns_run(server, port, figures, notes,
                                    core_only=spec.name.startswith("ferry"))
        finally:
            sampler.stop()
            killed = server.stop()
            if killed:
                notes.append("needed SIGKILL: %d process(es)" % len(killed))
            end = time.monotonic() + 5
            while port in procs.listening_ports() and time.monotonic() < end:
                time.sleep(0.1)
            if port in procs.listening_ports():
                self.leftovers.append("%s: port %d still listening after stop" % (spec.name,
                                                                                 port))
            if server.tree():
                self.leftovers.append("%s: pids %s still alive after stop" % (
                    spec.name, server.tree()))
            shutil.rmtree(tmp, ignore_errors=True)
        return figures, notes

    def idle_conns_run(self, server, port, figures, notes, core_only):
        """The RSS of the processes that hold --idle-conns keep-alive connections that each made
        one request and then went idle (docs/performance.md, "Idle connections"): for ferry the
        core alone (<core_only>; the workers never see a connection, and their RSS still moves
        after the 1 MiB runs, as a Ruby worker's GC returns memory), else the whole tree."""
        rss = server.root_rss if core_only else server.tree_rss
        figures["idle_conns_measured"] = "core" if core_only else "tree"
        n = self.args.idle_conns
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < n + 100:
            notes.append("idle connections: RLIMIT_NOFILE hard limit %d < %d" % (hard, n + 100))
            return
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n + 100), hard))
        try:
            time.sleep(1.0)
            before = rss()
            t0 = time.monotonic()
            socks = procs.open_idle_keep_alive(port, n)
            time.sleep(1.5)  # past ferry's 1 s idle release, well within every keep-alive timeout
            with_idle = rss()
            for s in socks:
                s.close()
            figures["idle_conns"] = n
            figures["idle_conns_open_s"] = time.monotonic() - t0
            figures["idle_conns_rss_before_mib"] = before / MIB
            figures["idle_conns_rss_mib"] = with_idle / MIB
            figures["idle_conns_kib_each"] = (with_idle - before) / 1024.0 / n
            time.sleep(2.0)
            figures["idle_conns_rss_after_mib"] = rss() / MIB
        except OSError as e:
            notes.append("idle connections: %s" % e)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def run_spec(self, spec):
        row = {"name": spec.name, "interface": spec.interface, "config": spec.config,
               "notes": []}
        why = spec.missing()
        if why:
            row["status"] = "skipped: " + why
            return row
        reps = []
        per_rep_notes = []
        for rep in range(self.args.reps):
            try:
                figures, notes = self.one_rep(spec, rep)
            except RuntimeError as e:
                row["status"] = str(e)
                if reps:  # an earlier repetition ran: keep what it measured
                    row["notes"].append("rep %d: %s" % (rep + 1, e))
                    break
                return row
            reps.append(figures)
            per_rep_notes.append(notes)
            log("  %s rep %d: %s" % (spec.name, rep + 1, short(figures)))
        row["notes"] = benchlib.merge_notes(per_rep_notes) + row["notes"]
        row.update(benchlib.summarize(reps))
        row["per_rep"] = reps
        row["status"] = "ok" if reps else row.get("status", "no repetition ran")
        return row


def cycle_row(v, ctx, spec_by_name):
    """The cycle-time row (docs/performance.md, "Cycle time at c100"): each server of CYCLE_ROWS
    started from its bench/servers.py spec (v2rows.Served: start, first 200, stop by pid),
    warmed 1 s, then bench/loadgen.c -c100 -t2 for --duration s on /hello; the servers
    alternate within each repetition (V2.rows_over_reps). Returns {"rows": [...], ...}."""
    rows = []
    for name in CYCLE_ROWS:
        spec = spec_by_name[name]
        r = {"name": name, "interface": spec.interface, "config": spec.config, "notes": []}
        why = spec.missing() or (None if ctx.get("loadgen") else ctx.get("loadgen_reason"))
        if why:
            r["status"] = "skipped: " + why
        rows.append(r)
    v.runner.loadgen_bin = ctx.get("loadgen")
    d = v.args.duration

    def one(r, rep):
        spec = spec_by_name[r["name"]]
        with v2rows.Served(v, spec.name, spec.prepare,
                           start_timeout_s=spec.start_timeout_s) as s:
            v.runner.loadgen(s.port, "/hello", CYCLE_CONNS, 1)  # warm-up, not measured
            res, err = v.runner.loadgen(s.port, "/hello", CYCLE_CONNS, d,
                                        note="cycle row: hello c%d" % CYCLE_CONNS)
            if err:
                raise RuntimeError("failed: " + err)
            if res["errors"]:
                r["notes"].append("rep %d: %d errors %s" % (rep + 1, res["errors"],
                                                           res["error_kinds"]))
            return benchlib.loadgen_figures(res)

    return {"rows": v.rows_over_reps(rows, one), "conns": CYCLE_CONNS, "threads": CYCLE_THREADS,
            "duration": d, "reps": v.args.reps}


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read()[-8192:].decode("utf-8", "replace")
    except OSError:
        return ""


def short(fig):
    keys = ("rps_ka", "p99_ka_ms", "rps_close", "mib_down_s", "mib_up_s", "peak_rss_mib",
            "cold_start_ms", "slowloris_drop_pct")
    return ", ".join("%s=%s" % (k, benchlib.fmt(fig.get(k), 1)) for k in keys)


# ---------------------------------------------------------------------------------------------
# Profiling (where a ferry target is not met)

def profile_ferry(runner, ctx, spec_by_name, rows, outdir, stamp):
    """Callgrind on the ferry core for a short bounded run, when `perf stat -e instructions`
    does not work. Returns Markdown text."""
    name = next((r["name"] for r in rows if r["name"].startswith("ferry")
                 and r.get("status") == "ok"), None)
    if name is None:
        return "No ferry row ran, so nothing could be profiled.\n"
    rc, out = sh(["perf", "stat", "-e", "instructions", "true"], 30)
    perf_ok = rc == 0 and "<not supported>" not in out and "instructions" in out
    text = ["`perf stat -e instructions true`: %s." % (
        "works" if perf_ok else "hardware counters not available here (%s)" % (
            "<not supported>" if "<not supported>" in out else last_line(out)))]
    if not shutil.which("valgrind"):
        text.append("valgrind is not installed, so no callgrind profile either.")
        return "\n".join(text) + "\n"
    spec = spec_by_name[name]
    port = procs.free_port()
    tmp = tempfile.mkdtemp(prefix="ferry-bench-prof-")
    try:
        argv, env, cwd = spec.prepare(port, tmp)
        out_file = os.path.join(tmp, "callgrind.out")
        vg = ["valgrind", "--tool=callgrind", "--trace-children=no",
              "--callgrind-out-file=" + out_file] + argv
        runner.commands.append(("profile", " ".join(shlex.quote(x) for x in vg).replace(
            tmp, "$TMP").replace(str(port), "$PORT")))
        server = procs.Server(vg, env=env, cwd=cwd, log_path=os.path.join(tmp, "vg.log"))
        server.start()
        try:
            procs.wait_first_200(port, 90, server.proc)
            res, err = runner.wrk(port, "/hello", 10, 5, timeout="5s",
                                  note="profile load: hello c10 under callgrind")
        finally:
            os.kill(server.proc.pid, signal.SIGINT)  # let the core write its profile
            try:
                server.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            server.stop()
        if not os.path.exists(out_file):
            return "\n".join(text + ["callgrind wrote no profile (%s)." % last_line(
                read_text(os.path.join(tmp, "vg.log")))]) + "\n"
        rc, ann = sh(["callgrind_annotate", "--inclusive=no", out_file], 120)
        lines = [ln for ln in ann.splitlines() if ln.strip()]
        top = []
        started = False
        for ln in lines:
            if "file:function" in ln:
                started = True
                continue
            if started and len(top) < 25:
                top.append(ln)
        rc, tree = sh(["callgrind_annotate", "--inclusive=no", "--tree=caller",
                       "--threshold=100", out_file], 120)
        callers = benchlib.callgrind_callers(tree, [benchlib.callgrind_fn(ln) for ln in top[:3]])
        keep = os.path.join(outdir, "%s-callgrind-%s.txt" % (stamp, name))
        with open(keep, "w") as f:
            f.write(ann + "\n\n# Call chains of the top functions (callgrind_annotate "
                    "--tree=caller)\n\n" + "\n\n".join(callers) + "\n")
        text.append("Callgrind on the %s core (workers not traced), %s under a 5 s "
                    "wrk -c10 load; instructions by function, self cost (full annotation: `%s`):" % (
                        name, "served %d requests" % res["requests"] if res else
                        "load failed: %s" % err, os.path.basename(keep)))
        text.append("```\n" + "\n".join(top) + "\n```")
        if callers:
            text.append("Who calls the three most expensive functions, followed up through C "
                        "library functions and thin wrappers (`<` lines are callers with the "
                        "inclusive cost of that call site, `*` the function's own cost):")
            text.append("```\n" + "\n\n".join(callers) + "\n```")
    except RuntimeError as e:
        text.append("Profiling run failed: %s" % e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return "\n\n".join(text) + "\n"


# ---------------------------------------------------------------------------------------------
# Report

def charts(rows, outdir, stamp):
    """Three PNG bar charts; returns their file names (or a reason string when matplotlib is
    missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return "matplotlib unavailable: %s" % e
    ok = [r for r in rows if r.get("status") == "ok"]
    names = [r["name"] for r in ok]
    colors = ["#d62728" if n.startswith("ferry") else "#1f77b4" for n in names]
    files = []

    def bar(fname, title, ylabel, series):
        fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names) + 2), 4.5))
        width = 0.8 / len(series)
        for i, (label, vals, hatch) in enumerate(series):
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(names))]
            ax.bar(xs, [v or 0 for v in vals], width, label=label, color=colors, hatch=hatch,
                   edgecolor="black", linewidth=0.5)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        if len(series) > 1:
            ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = os.path.join(outdir, "%s-%s.png" % (stamp, fname))
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(os.path.basename(path))

    bar("throughput", "hello world, requests/s, c100 (red: ferry)", "requests/s",
        [("keep-alive", [r.get("rps_ka") for r in ok], ""),
         ("Connection: close", [r.get("rps_close") for r in ok], "//")])
    bar("p99", "hello world, p99 latency at c100, keep-alive (lower is better)", "ms",
        [("p99", [r.get("p99_ka_ms") for r in ok], "")])
    bar("memory", "RSS of the whole process tree (MiB)", "MiB",
        [("idle", [r.get("idle_tree_rss_mib") for r in ok], ""),
         ("peak under hello c100", [r.get("peak_rss_mib") for r in ok], "//")])
    return files


def environment(ctx, args):
    env = {}
    env["host"] = socket.gethostname()
    env["kernel"] = platform.release()
    try:
        with open("/proc/cpuinfo") as f:
            models = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        env["cpu"] = "%s × %d" % (models[0], len(models)) if models else "unknown"
    except OSError:
        env["cpu"] = "unknown"
    try:
        with open("/proc/meminfo") as f:
            env["memory"] = "%.1f GiB" % (int(f.readline().split()[1]) / 1024 / 1024)
    except (OSError, ValueError, IndexError):
        env["memory"] = "unknown"
    with open("/etc/debian_version") as f:
        env["debian"] = f.read().strip()
    versions = {}
    for pkg in ("wrk", "nginx-light", "libfcgi0ldbl", "spawn-fcgi", "gunicorn", "uwsgi",
                "uwsgi-plugin-python3", "uwsgi-plugin-rack-ruby3.1", "puma", "unicorn",
                "passenger", "ruby-rack", "ruby3.1", "python3", "libuv1", "python3-matplotlib"):
        rc, out = sh(["dpkg-query", "-W", "-f=${Version}", pkg], 10)
        versions[pkg] = out.strip() if rc == 0 and out.strip() else "not installed"
    env["packages"] = versions
    rc, out = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], 10)
    env["ferry_commit"] = out.strip() if rc == 0 else "unknown"
    rc, out = sh(["git", "-C", ROOT, "status", "--porcelain"], 10)
    env["ferry_tree_dirty"] = bool(out.strip()) if rc == 0 else None
    env["ferry_build"] = ctx.get("ferry_build") or ctx.get("ferry_reason")
    env["cc"] = last_line(sh(["cc", "--version"], 10)[1].splitlines()[0]
                          if shutil.which("cc") else "no cc")
    return env


def write_report(path, args, env, rows, targets, ratio_rows, chart_files, commands, leftovers,
                 profile_md, started, finished, loads, v2_md=""):
    L = []
    mode = "QUICK (a subset, 1 repetition, short runs)" if args.quick else "full"
    if args.v2_only:
        mode += ", only the session-protocol v2 rows (--v2-only)"
    if args.smart_only:
        mode += ", only the smart-spawning rows (--smart-only)"
    if args.cycle_only:
        mode += ", only the cycle-time row (--cycle-only)"
    L.append("# ferry bench — %s, %s\n" % (started.strftime("%Y-%m-%d %H:%M UTC"), env["host"]))
    if args.cycle_only:
        L.append("Mode: **%s**. Repetitions: %d (each figure is the median; each repetition "
                 "starts, measures and stops every server of the row in turn). Duration: %d s "
                 "per measured run. Run took %.1f min.\n" % (
                     mode, args.reps, args.duration,
                     (finished - started).total_seconds() / 60.0))
    else:
        L.append("Mode: **%s**. Repetitions per server: %d (each figure is the median; each "
                 "repetition is a full start → measure → stop cycle). Durations: %d s per hello "
                 "run, %d s per 1 MiB run. Slow clients: %d slowloris connections. Run took "
                 "%.1f min.\n" % (mode, args.reps, args.duration, args.big_duration,
                                  args.slowloris, (finished - started).total_seconds() / 60.0))
    lmin = min((x for x in loads if x is not None), default=None)
    lmax = max((x for x in loads if x is not None), default=None)
    L.append("**Load average** (1 min, read before every measured run): min %s, max %s, on %s "
             "CPUs. The figure includes the bench's own previous run (wrk and a server keep both "
             "CPUs busy), so it cannot tell whether other work shared the machine; absolute "
             "figures drift with whatever else runs. Each row's column `load` is the median "
             "load before its runs. Ratios between servers measured minutes apart carry that "
             "drift too.\n" % (benchlib.fmt(lmin, 2), benchlib.fmt(lmax, 2), os.cpu_count()))
    L.append("## Environment\n")
    L.append("* Host `%s`, Debian %s, kernel %s, %s, %s RAM" % (
        env["host"], env["debian"], env["kernel"], env["cpu"], env["memory"]))
    L.append("* ferry commit `%s`%s; build: %s" % (
        env["ferry_commit"], " (work tree had uncommitted changes)" if env["ferry_tree_dirty"]
        else "", env["ferry_build"]))
    L.append("* Compiler: %s" % env["cc"])
    L.append("* Packages: " + ", ".join("%s %s" % kv for kv in env["packages"].items()))
    L.append("* Everything on 127.0.0.1; wrk and the servers share the same %d cores, so the "
             "load generator takes CPU from the server (as for every row alike).\n" %
             os.cpu_count())

    if args.cycle_only:  # no server row ran: the section of the row, then the cleanup
        L.append(v2_md)
        write_tail(path, L, leftovers, commands)
        return
    idle = [r for r in rows if r.get("status") == "ok" and r.get("idle_conns")]
    if idle:
        L.append("## Idle keep-alive connections\n")
        L.append("Each connection made one `GET /hello` and stayed open; RSS of the processes "
                 "that hold them (`measured`: for ferry the core, whose workers never see a "
                 "connection; for nginx the whole tree) before, with the connections idle for "
                 "1.5 s, and 2 s after they closed. nginx allocates its connection table "
                 "(`worker_connections`) when it starts and frees a connection's buffers when it "
                 "goes idle, so its figure barely moves.\n")
        L.append(benchlib.markdown_table(
            ["server", "measured", "connections", "RSS before MiB", "RSS with them MiB",
             "KiB each", "RSS after they closed MiB"],
            [[r["name"], r.get("idle_conns_measured", "tree"), benchlib.fmt(r.get("idle_conns")),
              benchlib.fmt(r.get("idle_conns_rss_before_mib"), 1),
              benchlib.fmt(r.get("idle_conns_rss_mib"), 1),
              benchlib.fmt(r.get("idle_conns_kib_each"), 2),
              benchlib.fmt(r.get("idle_conns_rss_after_mib"), 1)] for r in idle]))
        L.append("")

    L.append("## Targets\n")
    L.append(benchlib.markdown_table(["target", "measured", "verdict"], [
        [t["target"], t["measured"], "**%s**" % benchlib.met_label(t["met"])] for t in targets]))
    L.append("")

    L.append("## Results (medians)\n")
    base = benchlib.versus_baseline(rows, "nginx-return200", "rps_ka")
    headers = ["server", "if", "req/s keep-alive", "÷ nginx return 200", "req/s close",
               "p50 ms", "p99 ms", "p99 close ms", "cold start ms", "idle RSS MiB (tree/root)",
               "peak RSS MiB (hello/all)", "1 MiB down MiB/s", "1 MiB up MiB/s",
               "req/s under slowloris", "slowloris drop", "load"]
    trs = []
    for r in rows:
        if r.get("status") != "ok":
            trs.append([r["name"], r["interface"], r["status"]])
            continue
        trs.append([
            r["name"], r["interface"], benchlib.fmt(r.get("rps_ka")),
            benchlib.fmt_ratio(base.get(r["name"])), benchlib.fmt(r.get("rps_close")),
            benchlib.fmt(r.get("p50_ka_ms"), 2), benchlib.fmt(r.get("p99_ka_ms"), 2),
            benchlib.fmt(r.get("p99_close_ms"), 2), benchlib.fmt(r.get("cold_start_ms")),
            "%s / %s" % (benchlib.fmt(r.get("idle_tree_rss_mib"), 1),
                         benchlib.fmt(r.get("idle_core_rss_mib"), 1)),
            "%s / %s" % (benchlib.fmt(r.get("peak_rss_mib"), 1),
                         benchlib.fmt(r.get("peak_rss_all_mib"), 1)),
            benchlib.fmt(r.get("mib_down_s"), 1), benchlib.fmt(r.get("mib_up_s"), 1),
            benchlib.fmt(r.get("rps_slowloris")),
            benchlib.fmt(r.get("slowloris_drop_pct"), 1, " %") + (
                " (%d held)" % r["slowloris_open"] if r.get("slowloris_open") is not None
                else ""),
            benchlib.fmt(benchlib.median([r.get(k) for k in r if k.startswith("loadavg_")]), 2),
        ])
    L.append(benchlib.markdown_table(headers, trs))
    L.append("")
    L.append("`if`: the app interface (c, wsgi, rack). RSS is the sum of VmRSS over the whole "
             "process tree (the launched process, everything it forked, and anything that "
             "daemonized away carrying the bench's token), sampled every 100 ms; `root` is the "
             "launched process alone (for ferry: the core). Peak `hello` is during the "
             "keep-alive hello run, `all` over every run of the repetition. 1 MiB figures are "
             "requests/s of 1 MiB bodies, i.e. MiB/s. `slowloris drop` compares the keep-alive "
             "hello throughput while the slow connections are held with the mean of the same "
             "run just before and just after (same repetition); negative means it went up "
             "(noise); `held` is how many slow connections were open when wrk started.\n")

    L.append("### Configurations\n")
    L.append(benchlib.markdown_table(["server", "configuration", "notes"], [
        [r["name"], r["config"], "; ".join(r.get("notes", [])[:8])] for r in rows]))
    L.append("")

    L.append("## Ratios: ferry ÷ each peer (same interface)\n")
    if ratio_rows:
        L.append(benchlib.markdown_table(
            ["ferry", "peer", "req/s keep-alive", "req/s close", "p99 (lower is better)",
             "peak RSS (lower is better)", "1 MiB down", "1 MiB up"],
            [[f, p, benchlib.fmt_ratio(m["rps_ka"]), benchlib.fmt_ratio(m["rps_close"]),
              benchlib.fmt_ratio(m["p99_ka_ms"]), benchlib.fmt_ratio(m["peak_rss_mib"]),
              benchlib.fmt_ratio(m["mib_down_s"]), benchlib.fmt_ratio(m["mib_up_s"])]
             for f, p, m in ratio_rows]))
    else:
        L.append("No ratio: no ferry row and peer of the same interface both ran.")
    L.append("")

    if v2_md:
        L.append(v2_md)

    L.append("## Charts\n")
    if isinstance(chart_files, str):
        L.append(chart_files + "\n")
    else:
        for c in chart_files:
            L.append("![%s](%s)\n" % (c, c))

    L.append("## Where the time goes\n")
    L.append(profile_md)
    write_tail(path, L, leftovers, commands)


def write_tail(path, L, leftovers, commands):
    """The report's cleanup and exact-command sections; writes <L> to <path>."""
    L.append("## Cleanup\n")
    if leftovers:
        L.append("Problems found after stopping servers:\n")
        L.extend("* " + x for x in leftovers)
    else:
        L.append("Every server was stopped by pid (SIGTERM to its process group and any process "
                 "carrying its token, SIGKILL after 5 s); afterwards none of the %d ports used "
                 "was listening and no process of any server was alive." % len(
                     set(x for x in commands.get("_ports", []))))
    L.append("")

    L.append("## Exact commands\n")
    L.append("Run: `%s`\n" % " ".join(shlex.quote(a) for a in [PYTHON] + sys.argv))
    L.append("$PORT is a free port picked on 127.0.0.1 for each start; $TMP a fresh temp dir "
             "(`ferry-bench-*`) holding the server's config, pid file and logs.\n")
    L.append("```")
    for name, cmd in commands["list"]:
        L.append("# %s\n%s" % (name, cmd))
    L.append("```\n")
    with open(path, "w") as f:
        f.write("\n".join(L))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="~1 minute subset")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--duration", type=int, help="seconds per hello run")
    ap.add_argument("--big-duration", type=int, help="seconds per 1 MiB run")
    ap.add_argument("--slowloris", type=int, default=1000)
    ap.add_argument("--idle-conns", type=int, default=10000,
                    help="idle keep-alive connections for the memory row (0: skip)")
    ap.add_argument("--only", help="comma-separated server names")
    ap.add_argument("--ferry-bin", help="use this ferry binary instead of building build-release")
    ap.add_argument("--out", default=os.path.join(BENCH, "results"))
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--v2", metavar="SECTIONS",
                    help="session-protocol rows to run: all (default, unless --only is given), "
                         "none, or a comma list of %s" % ",".join(v2rows.SECTIONS))
    ap.add_argument("--v2-only", action="store_true",
                    help="only the session-protocol rows: the hello rows %s and the --v2 "
                         "sections; no profile; the report is named ...-v2.md" % ",".join(
                             v2rows.HELLO_ROWS))
    ap.add_argument("--metrics-row", dest="metrics_row", action="store_true", default=None,
                    help="measure the metrics endpoint's cost (bench/metricsrow.py); on by "
                         "default unless --only or --v2-only is given")
    ap.add_argument("--no-metrics-row", dest="metrics_row", action="store_false")
    ap.add_argument("--cycle-row", dest="cycle_row", action="store_true", default=None,
                    help="the cycle-time row: WSGI and Rack servers at c100 measured with "
                         "bench/loadgen.c, reconnects timed; on by default unless --quick, "
                         "--only, --v2-only or --smart-only is given")
    ap.add_argument("--no-cycle-row", dest="cycle_row", action="store_false")
    ap.add_argument("--cycle-only", action="store_true",
                    help="only the cycle-time row; the report is named ...-cycle.md")
    ap.add_argument("--smart", choices=("all", "none"),
                    help="the smart-spawning rows (Django and Rails, smart vs direct): all "
                         "(default, unless --only is given) or none")
    ap.add_argument("--smart-only", action="store_true",
                    help="only the smart-spawning rows; the report is named ...-smart.md")
    args = ap.parse_args()
    if args.cycle_only:
        if args.only or args.v2_only or args.smart_only or args.metrics_row or \
                args.cycle_row is False:
            ap.error("--cycle-only picks its own rows; do not combine it with --only, "
                     "--v2-only, --smart-only, --metrics-row or --no-cycle-row")
        args.metrics_row = False
        args.cycle_row = True
        args.smart = args.smart or "none"
        args.v2 = args.v2 or "none"
    if args.cycle_row is None:
        args.cycle_row = not (args.only or args.v2_only or args.smart_only or args.quick)
    if args.metrics_row is None:
        args.metrics_row = not (args.only or args.v2_only or args.smart_only)
    if args.smart_only and (args.only or args.v2_only):
        ap.error("--smart-only picks its own rows; do not combine it with --only or --v2-only")
    args.smart = args.smart_only or (args.smart or ("none" if args.only or args.v2_only
                                                     else "all")) == "all"
    if args.smart_only and args.v2 is None:
        args.v2 = "none"
    try:
        args.v2_sections = v2rows.parse_sections(
            args.v2 if args.v2 is not None else ("none" if args.only else "all"))
    except ValueError as e:
        ap.error(str(e))
    if args.v2_only and args.only:
        ap.error("--v2-only picks its own rows; do not combine it with --only")
    args.reps = args.reps or (1 if args.quick else 3)
    args.duration = args.duration or (2 if args.quick else 5)
    args.big_duration = args.big_duration or (1 if args.quick else 3)
    if not (1 <= args.reps <= 10 and 1 <= args.duration <= 60 and 1 <= args.big_duration <= 60
            and 0 <= args.slowloris <= 5000):
        ap.error("--reps 1..10, --duration/--big-duration 1..60 s, --slowloris 0..5000")
    if not shutil.which("wrk"):
        log("wrk is not installed: run scripts/install-deps --bench")
        return 1

    started = datetime.datetime.now(datetime.timezone.utc)
    host = socket.gethostname().split(".")[0]
    stamp = "%s-%s%s%s" % (started.strftime("%Y-%m-%d"), host, "-quick" if args.quick else "",
                           "-v2" if args.v2_only else "-smart" if args.smart_only
                           else "-cycle" if args.cycle_only else "")
    os.makedirs(args.out, exist_ok=True)
    args.workdir = tempfile.mkdtemp(prefix="ferry-bench-work-")
    try:
        return run(args, ap, started, stamp)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)


def run(args, ap, started, stamp):

    ctx = {}
    log("building ferry (release) ...")
    build_ferry(args, ctx)
    if ctx.get("ferry_reason"):
        log("ferry rows will be skipped: " + ctx["ferry_reason"])
    read_ferry_options(ctx)
    build_apps(ctx, os.path.join(ROOT, "build-release", "bench-apps") if not args.ferry_bin
               else os.path.join(args.workdir, "apps"))

    all_specs = servers.specs(ctx)
    if args.smart_only or args.cycle_only:
        chosen = []
    elif args.v2_only:
        chosen = [s for s in all_specs if s.name in v2rows.HELLO_ROWS
                  and "hello" in args.v2_sections]
    elif args.only:
        wanted = args.only.split(",")
        unknown = [w for w in wanted if w not in [s.name for s in all_specs]]
        if unknown:
            ap.error("unknown server(s): %s" % ", ".join(unknown))
        chosen = [s for s in all_specs if s.name in wanted]
    elif args.quick:
        chosen = [s for s in all_specs if s.quick]
    else:
        chosen = all_specs

    runner = Runner(args)
    rows = []
    for spec in chosen:
        log("%s ..." % spec.name)
        row = runner.run_spec(spec)
        if row["status"] != "ok":
            log("  %s: %s" % (spec.name, row["status"]))
        rows.append(row)

    v2runner = v2rows.V2(runner, ctx, args, {"sh": sh, "log": log, "loadavg": loadavg,
                                             "last_line": last_line, "read_text": read_text},
                         args.v2_sections)
    v2 = v2runner.run()
    v2_md = v2rows.report_md(v2, rows)
    metrics_row = {}
    if args.metrics_row:
        log("metrics row ...")
        metrics_row = metricsrow.run(v2runner)
        v2_md += "\n" + metricsrow.report_md(metrics_row)
    cycle = {"rows": []}
    if args.cycle_row:
        log("cycle-time row (bench/loadgen.c) ...")
        cycle = cycle_row(v2runner, ctx, {s.name: s for s in all_specs})
    cycle_md = benchlib.cycle_report_md(cycle)
    smart = {"rows": []}
    if args.smart:
        log("smart spawning rows ...")
        smart = smartrows.Smart(v2rows.V2(runner, ctx, args, {
            "sh": sh, "log": log, "loadavg": loadavg, "last_line": last_line,
            "read_text": read_text}, [])).run()
    v2_md += "\n" + smartrows.report_md(smart)
    v2_md = cycle_md if args.cycle_only else v2_md + "\n" + cycle_md

    targets = benchlib.evaluate_targets(rows)
    metrics = ["rps_ka", "rps_close", "p99_ka_ms", "peak_rss_mib", "mib_down_s", "mib_up_s"]
    ratio_rows = benchlib.ferry_vs_peers(rows, metrics)
    profile_md = "Every ferry target measured here was met; no profile taken.\n"
    unmet = [t for t in targets if t["met"] is not True]
    if unmet and not args.no_profile and not args.v2_only and not args.smart_only \
            and not args.cycle_only:
        log("profiling the ferry core (a target is not met) ...")
        profile_md = profile_ferry(runner, ctx, {s.name: s for s in all_specs}, rows, args.out,
                                   stamp)
    elif unmet:
        profile_md = "Profiling skipped (%s).\n" % (
            "--v2-only" if args.v2_only else "--smart-only" if args.smart_only
            else "--cycle-only" if args.cycle_only else "--no-profile")

    finished = datetime.datetime.now(datetime.timezone.utc)
    loads = [v for r in rows for rep in r.get("per_rep", []) for k, v in rep.items()
             if k.startswith("loadavg_")] + [
                 rep.get("loadavg") for r in cycle["rows"] for rep in r.get("per_rep", [])]
    still = sorted(set(runner.used_ports) & procs.listening_ports())
    if still:
        runner.leftovers.append("ports still listening at the end: %s" % still)
    chart_files = charts(rows, args.out, stamp) if rows else "No server row ran, so no chart."
    env = environment(ctx, args)
    md = os.path.join(args.out, stamp + ".md")
    write_report(md, args, env, rows, targets, ratio_rows, chart_files,
                 {"list": runner.commands, "_ports": runner.used_ports}, runner.leftovers,
                 profile_md, started, finished, loads, v2_md)
    with open(os.path.join(args.out, stamp + ".json"), "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items()}, "environment": env,
                   "rows": rows, "v2": v2, "metrics_row": metrics_row, "smart": smart,
                   "cycle": cycle,
                   "targets": targets,
                   "leftovers": runner.leftovers}, f,
                  indent=1, default=str)
    log("report: %s" % os.path.relpath(md, ROOT))
    for t in ([] if args.cycle_only else targets):
        log("  [%s] %s — %s" % (benchlib.met_label(t["met"]), t["target"], t["measured"]))
    for v in cycle.get("verdicts", []):
        log("  [%s] %s — %s vs %s ms (%s)" % (benchlib.met_label(v["met"]), v["label"],
                                             benchlib.fmt(v.get("ferry_p99"), 2),
                                             benchlib.fmt(v.get("best_p99"), 2), v.get("best")))
    return 1 if runner.leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
