"""The session-protocol (v2) rows of `make bench`: what docs/protocol.md §4 changes, measured.

Four sections, each selectable with run.py's --v2 (hello,mixed,slow,cpu):

* hello  — the server rows `ferry-c` (--session-protocol 2) and `ferry-c-v1` (--session-protocol
           1) of bench/servers.py, measured with every other row; here only their summary table
           beside nginx `return 200` and nginx + FastCGI.
* mixed  — one request in 20 sleeps 200 ms (/mix/slow), the rest are fast (/mix/fast), with
           --dispatch-ahead 0, 1, 2: throughput, and latency per path (bench/mixed.lua times each
           request itself), saturated (c100) and paced (c10, 100 ms between a connection's
           requests); plus all-fast hello c100 for what dispatch-ahead is meant to win.
* slow   — 20 clients each read a 20 MiB response at 64 KiB/s (bench/slowread.py, bounded in
           time) while one fast client (wrk -t1 -c1) asks for /hello: its latency alone and
           beside the slow readers; ferry with 6 workers as configured, ferry v1, nginx+FastCGI.
* cpu    — CPU µs per request of the core and of the C workers (/proc/PID/stat utime+stime over
           a wrk run) and system calls per request (perf's raw_syscalls:sys_enter, or strace -c),
           plus the commonest calls by strace -f -c, for v1 and v2.

Every row that needs an option this ferry does not have (checked in `ferry start --help`) is
reported as `skipped: …`; a server that does not start is `failed to start: …`; the run goes on.
Each repetition of a row is a full start → measure → stop cycle, like the server rows.
"""

import json
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import benchlib
import procs
import servers

SECTIONS = ("hello", "mixed", "slow", "cpu")
HELLO_ROWS = ("nginx-return200", "nginx-fastcgi-c", "ferry-c", "ferry-c-v1")

BENCH = os.path.dirname(os.path.abspath(__file__))
MIB = 1 << 20

MIX_EVERY = 20          # one request in MIX_EVERY goes to /mix/slow
MIX_SLOW_MS = 200       # what /mix/slow sleeps (bench/apps/c/app.c SLOW_MS)
MIX_DEPTHS = (0, 1, 2)  # --dispatch-ahead values
MIX_CONNS = 100         # saturated run
PACED_CONNS = 10        # paced run: 10 connections ...
PACED_DELAY_MS = 100    # ... each waiting 100 ms after every response
MIX_WORKERS = servers.WORKERS

SLOW_READERS = 20
SLOW_RATE = 64 * 1024   # bytes/s per reader
SLOW_PATH = "/20m"
SLOW_LEN = 20 * MIB
SLOW_WORKERS = 6        # ferry's default --max-pool-size

CPU_WORKERS = servers.WORKERS
CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_sections(text):
    """'all', 'none' or a comma list of SECTIONS -> list; raises ValueError."""
    if text in (None, "", "all"):
        return list(SECTIONS)
    if text == "none":
        return []
    out = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in out if x not in SECTIONS]
    if bad:
        raise ValueError("unknown --v2 section(s): %s (known: %s, all, none)" % (
            ", ".join(bad), ", ".join(SECTIONS)))
    return out


class Served:
    """A server started for one repetition of a v2 row: start in a new session, wait for the
    first 200 on /hello, 1 s for the workers to spawn; on exit stop it by pid and check nothing
    of it is left (into runner.leftovers), as run.py does for the server rows."""

    def __init__(self, v, name, make, start_timeout_s=30.0, path="/hello", settle_s=1.0):
        self.v = v
        self.name = name
        self.make = make
        self.start_timeout_s = start_timeout_s
        self.path = path          # polled for the first 200
        self.settle_s = settle_s  # then waited, for the workers to spawn
        self.first_200_s = None   # launch → first 200
        self.server = None

    def __enter__(self):
        v = self.v
        self.port = procs.free_port()
        v.runner.used_ports.append(self.port)
        self.tmp = tempfile.mkdtemp(prefix="ferry-bench-v2-")
        try:
            argv, env, cwd = self.make(self.port, self.tmp)
        except RuntimeError as e:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise RuntimeError("failed to start: %s" % e)
        self.env = dict(env)
        self.env["TMPDIR"] = self.tmp
        if self.name not in v.recorded:
            v.recorded.add(self.name)
            cmd = " ".join(shlex.quote(x) for x in argv)
            v.runner.commands.append((self.name, cmd.replace(self.tmp, "$TMP").replace(
                str(self.port), "$PORT")))
        self.log_path = os.path.join(self.tmp, "server.log")
        self.server = procs.Server(argv, env=self.env, cwd=cwd, log_path=self.log_path)
        try:
            launched = time.monotonic()
            self.server.start()
            procs.wait_first_200(self.port, self.start_timeout_s, self.server.proc,
                                 path=self.path)
            self.first_200_s = time.monotonic() - launched
        except (OSError, RuntimeError) as e:
            tail = v.last_line(v.read_text(self.log_path), 2)
            self._stop()
            raise RuntimeError("failed to start: %s; log: %s" % (e, tail))
        time.sleep(self.settle_s)
        return self

    def __exit__(self, *exc):
        self._stop()
        return False

    def _stop(self):
        v = self.v
        if self.server is not None and self.server.proc is not None:
            killed = self.server.stop()
            if killed:
                v.notes.append("%s: needed SIGKILL: %d process(es)" % (self.name, len(killed)))
            end = time.monotonic() + 5
            while self.port in procs.listening_ports() and time.monotonic() < end:
                time.sleep(0.1)
            if self.port in procs.listening_ports():
                v.runner.leftovers.append("%s: port %d still listening after stop" % (
                    self.name, self.port))
            if self.server.tree():
                v.runner.leftovers.append("%s: pids %s still alive after stop" % (
                    self.name, self.server.tree()))
        self.server = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def core_pid(self):
        return self.server.proc.pid


class PeakSampler:
    """RSS of the launched process (ferry: the core) and of the whole tree, every 100 ms."""

    def __init__(self, server):
        self.server = server
        self.core = 0
        self.tree = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.core = max(self.core, self.server.root_rss())
                self.tree = max(self.tree, self.server.tree_rss())
            except Exception:  # a process vanished between listdir and read
                pass
            self._stop.wait(0.1)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(timeout=5)
        return False


class V2:
    """Runs the selected sections. <runner> is run.py's Runner (wrk, commands, ports,
    leftovers); <tools> gives run.py's sh, log, loadavg, last_line and read_text."""

    def __init__(self, runner, ctx, args, tools, sections):
        self.runner = runner
        self.ctx = ctx
        self.args = args
        self.sh = tools["sh"]
        self.log = tools["log"]
        self.loadavg = tools["loadavg"]
        self.last_line = tools["last_line"]
        self.read_text = tools["read_text"]
        self.sections = sections
        self.recorded = set()
        self.notes = []

    # -- helpers -------------------------------------------------------------------------------

    def opt(self, name):
        return servers.option_missing(self.ctx, name)

    def ferry_maker(self, workers, extra, app_dir=None):
        """A ferry start command for <app_dir> (default: the C bench app)."""
        def make(port, tmp):
            return servers.ferry_command(self.ctx, app_dir or self.ctx.get("ferry_c_app"), port,
                                         tmp, workers, extra)
        return make

    def ferry_missing(self):
        if not self.ctx.get("ferry_bin"):
            return self.ctx.get("ferry_reason") or "ferry not built"
        if not self.ctx.get("ferry_c_app"):
            return self.ctx.get("ferry_c_reason") or "the C bench app was not built"
        return None

    def status(self, served):
        """`ferry status --json --pid CORE` of <served> as a dict, or (None, reason)."""
        argv = [self.ctx["ferry_bin"], "status", "--json", "--pid", str(served.core_pid())]
        try:
            p = subprocess.run(argv, env=served.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=15)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, "ferry status: %s" % e
        if p.returncode != 0:
            return None, "ferry status --json exited %d: %s" % (
                p.returncode, self.last_line(p.stderr.decode("utf-8", "replace")))
        doc = procs.status_document(p.stdout)
        if doc is None:
            return None, "ferry status --json printed no status document"
        return doc, None

    def worker_pids(self, served, want, timeout_s=10.0):
        """The pids of <want> spawned workers from `ferry status --json`, or (None, reason)."""
        end = time.monotonic() + timeout_s
        why = "no status"
        while time.monotonic() < end:
            doc, why = self.status(served)
            if doc is not None:
                ws = [w for w in doc.get("workers", []) if w.get("state") in ("idle", "busy")]
                if len(ws) >= want:
                    return sorted(int(w["pid"]) for w in ws), None
                why = "%d of %d workers up" % (len(ws), want)
            time.sleep(0.2)
        return None, why

    def requests_done(self, served):
        doc, _ = self.status(served)
        if doc is None:
            return None
        v = doc.get("pool", {}).get("requests_done")
        return int(v) if isinstance(v, int) else None

    def note_cmd(self, name, argv, port=None):
        if name in self.recorded:
            return
        self.recorded.add(name)
        cmd = " ".join(shlex.quote(a) for a in argv).replace(os.path.dirname(BENCH) + "/", "")
        if port:
            cmd = cmd.replace("127.0.0.1:%d" % port, "127.0.0.1:$PORT").replace(
                " %d " % port, " $PORT ")
        self.runner.commands.append((name, cmd))

    def rows_over_reps(self, rows, one):
        """Runs one(row, rep) -> figures for each runnable row, repetition by repetition (the
        rows alternate, so a drift of the machine's load hits them alike), then folds each
        row's repetitions into medians."""
        per = {r["name"]: [] for r in rows}
        for rep in range(self.args.reps):
            for r in rows:
                if r.get("status"):  # skipped, or failed in an earlier repetition
                    continue
                self.log("  v2 %s rep %d ..." % (r["name"], rep + 1))
                try:
                    fig = one(r, rep)
                except RuntimeError as e:
                    if per[r["name"]]:
                        r["notes"].append("rep %d: %s" % (rep + 1, e))
                        r["status"] = "ok"
                    else:
                        r["status"] = str(e)
                    continue
                fig["loadavg"] = self.loadavg()[0]
                per[r["name"]].append(fig)
        for r in rows:
            reps = per[r["name"]]
            if reps:
                r.update(benchlib.summarize(reps))
                r["per_rep"] = reps
                r["status"] = "ok"
            elif not r.get("status"):
                r["status"] = "no repetition ran"
            if r["status"] != "ok":
                self.log("  v2 %s: %s" % (r["name"], r["status"]))
        return rows

    # -- sections ------------------------------------------------------------------------------

    def run(self):
        out = {"sections": self.sections}
        for sec in SECTIONS:
            if sec == "hello" or sec not in self.sections:
                continue
            self.log("v2 section %s ..." % sec)
            out[sec] = getattr(self, "run_" + sec)()
        out["notes"] = self.notes
        return out

    def run_mixed(self):
        rows = []
        fm = self.ferry_missing()
        for depth in MIX_DEPTHS:
            r = {"name": "dispatch-ahead %d" % depth, "depth": depth, "notes": []}
            extra = []
            why = fm or self.opt("dispatch-ahead")
            if why and (depth > 0 or fm):
                r["status"] = "skipped: " + why
            elif why:
                r["notes"].append("run without the option (%s): it never dispatches ahead" % why)
            else:
                extra = ["--dispatch-ahead", str(depth)]
            r["extra"] = extra
            r["config"] = "ferry-c, %d workers%s" % (MIX_WORKERS, "".join(" " + x for x in extra))
            rows.append(r)
        d = self.args.duration
        script = os.path.join(BENCH, "mixed.lua")

        def one(r, rep):
            fig = {}
            with Served(self, "v2 mixed, %s" % r["name"],
                        self.ferry_maker(MIX_WORKERS, r["extra"])) as s:
                st, _, body = procs.http_get(s.port, "/mix/fast?f1", timeout=5)
                if st != 200 or body != b"f1":
                    raise RuntimeError("failed: /mix/fast?f1 answered %d %r (is bench/apps/c "
                                       "rebuilt?)" % (st, body[:40]))
                self.runner.wrk(s.port, "/hello", 100, 1)  # warm-up
                for key, conns, dur, pace in (("sat", MIX_CONNS, d, 0),
                                              ("paced", PACED_CONNS, 2 * d, PACED_DELAY_MS)):
                    res, err = self.runner.wrk(
                        s.port, "/mix/fast", conns, dur, ["-s", script],
                        script_args=(str(MIX_EVERY), str(pace)), timeout="10s", note="v2 mixed (%s): 1 in %d requests sleeps %d ms" % (
                            "saturated" if not pace else "paced", MIX_EVERY, MIX_SLOW_MS))
                    if err:
                        r["notes"].append("%s: %s" % (key, err))
                        continue
                    try:
                        m = benchlib.parse_mixed(res["output"])
                    except benchlib.WrkParseError as e:
                        r["notes"].append("%s: %s" % (key, e))
                        continue
                    fig[key + "_rps"] = res["rps"]
                    for path in ("fast", "slow"):
                        for k in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms"):
                            fig["%s_%s_%s" % (key, path, k)] = m[path][k]
                    if m["unmatched"]:
                        r["notes"].append("%s: %d responses not matched to a request" % (
                            key, m["unmatched"]))
                    if res["errors"]["timeout"]:
                        r["notes"].append("%s: %d wrk timeouts (10 s)" % (
                            key, res["errors"]["timeout"]))
                res, err = self.runner.wrk(s.port, "/hello", 100, d,
                                           note="v2 all fast: hello keep-alive c100")
                if err:
                    r["notes"].append("all fast: %s" % err)
                else:
                    fig.update(fast_only_rps=res["rps"], fast_only_p99_ms=res["p99_ms"])
            return fig

        return {"rows": self.rows_over_reps(rows, one)}

    def run_slow(self):
        rows = []
        fm = self.ferry_missing()
        rows.append({"name": "ferry-c", "notes": [], "status": ("skipped: " + fm) if fm else None,
                     "config": "ferry start, C app, --max-pool-size %d --min-instances %d, "
                               "everything else default" % (SLOW_WORKERS, SLOW_WORKERS),
                     "make": self.ferry_maker(SLOW_WORKERS, [])})
        why = fm or self.opt("session-protocol")
        rows.append({"name": "ferry-c-v1", "notes": [],
                     "status": ("skipped: " + why) if why else None,
                     "config": "the same, --session-protocol 1",
                     "make": self.ferry_maker(SLOW_WORKERS, ["--session-protocol", "1"])})
        why = None
        for exe, pkg in servers.NGINX_NEEDS:
            if shutil.which(exe) is None:
                why = "%s not found (package %s)" % (exe, pkg)
        why = why or (None if self.ctx.get("fcgi_app") else
                      self.ctx.get("fcgi_reason") or "FastCGI app not built")
        rows.append({"name": "nginx-fastcgi-c", "notes": [],
                     "status": ("skipped: " + why) if why else None,
                     "config": "nginx 2 workers + libfcgi app, spawn-fcgi -F %d (nginx buffers "
                               "the response: fastcgi_buffering on)" % SLOW_WORKERS,
                     "make": lambda port, tmp: servers.nginx_fcgi_command(self.ctx, port, tmp,
                                                                          SLOW_WORKERS)})
        d = self.args.duration

        def fast(s, key, fig, r):
            res, err = self.runner.wrk(s.port, "/hello", 1, d, timeout="5s", threads=1,
                                       allow_zero=True, note="v2 fast client: hello wrk -t1 -c1")
            if err:
                r["notes"].append("%s: %s" % (key, err))
                return
            fig[key + "_rps"] = res["rps"]
            fig[key + "_requests"] = res["requests"]
            if res["requests"]:
                fig[key + "_p50_ms"] = res["p50_ms"]
                fig[key + "_p99_ms"] = res["p99_ms"]
            if res["errors"]["timeout"]:
                fig[key + "_timeouts"] = res["errors"]["timeout"]

        def one(r, rep):
            fig = {}
            with Served(self, "v2 slow readers, %s" % r["name"], r["make"]) as s:
                st, _, body = procs.http_get(s.port, SLOW_PATH, timeout=30)
                if st != 200 or len(body) != SLOW_LEN:
                    raise RuntimeError("failed: %s answered %d with %d bytes" % (
                        SLOW_PATH, st, len(body)))
                self.runner.wrk(s.port, "/hello", 1, 1, threads=1)  # warm-up
                fast(s, "alone", fig, r)
                max_s = d + 10
                argv = ["/usr/bin/python3", os.path.join(BENCH, "slowread.py"), str(s.port),
                        str(SLOW_READERS), SLOW_PATH, str(SLOW_RATE), str(max_s)]
                self.note_cmd("v2 slow readers (held during the fast client's second run)",
                              argv, s.port)
                sr = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
                stats = None
                try:
                    sel = selectors.DefaultSelector()
                    sel.register(sr.stdout, selectors.EVENT_READ)
                    line = sr.stdout.readline() if sel.select(timeout=15) else b""
                    sel.close()
                    if not line.startswith(b"open "):
                        raise RuntimeError("failed: slowread.py did not open its connections")
                    fig["readers_open"] = int(line.split()[1])
                    time.sleep(1.0)  # the readers' requests reach the workers
                    with PeakSampler(s.server) as ps:
                        fast(s, "readers", fig, r)
                    fig["readers_core_peak_mib"] = ps.core / MIB
                    fig["readers_tree_peak_mib"] = ps.tree / MIB
                finally:
                    try:
                        os.killpg(sr.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                    try:
                        out, _ = sr.communicate(timeout=10)
                    except subprocess.TimeoutExpired:
                        os.killpg(sr.pid, signal.SIGKILL)
                        out, _ = sr.communicate(timeout=5)
                for ln in out.decode("utf-8", "replace").splitlines():
                    if ln.startswith("{"):
                        try:
                            stats = json.loads(ln)
                        except ValueError:
                            pass
                if stats:
                    fig["readers_heads"] = stats.get("heads")
                    fig["readers_200"] = stats.get("status_200")
                    fig["readers_mib"] = stats.get("bytes", 0) / MIB
                    fig["readers_s"] = stats.get("elapsed_s")
                    if stats.get("errors"):
                        r["notes"].append("slow readers: " + "; ".join(stats["errors"]))
            return fig

        return {"rows": self.rows_over_reps(rows, one)}

    def run_cpu(self):
        rows = []
        fm = self.ferry_missing()
        v2why = self.opt("session-protocol")
        rows.append({"name": "v2", "notes": [], "status": ("skipped: " + fm) if fm else None,
                     "extra": [] if v2why else ["--session-protocol", "2"],
                     "config": "ferry-c, %d workers, %s" % (
                         CPU_WORKERS, "--session-protocol 2" if not v2why else
                         "no --session-protocol option (%s): ferry's only protocol" % v2why)})
        why = fm or v2why
        rows.append({"name": "v1", "notes": [], "status": ("skipped: " + why) if why else None,
                     "extra": ["--session-protocol", "1"],
                     "config": "ferry-c, %d workers, --session-protocol 1" % CPU_WORKERS})
        # The loaders on the C worker runtime: the same measurement with the bench's WSGI and
        # Rack hello apps (docs/performance.md, "WSGI and Rack on the C worker runtime").
        no_bin = None if self.ctx.get("ferry_bin") else (
            self.ctx.get("ferry_reason") or "ferry not built")
        for iface in ("wsgi", "rack"):
            rows.append({"name": iface, "notes": [],
                         "status": ("skipped: " + no_bin) if no_bin else None, "extra": [],
                         "app": os.path.join(servers.APPS, iface),
                         "config": "ferry-%s, %d workers" % (iface, CPU_WORKERS)})
        d = self.args.duration
        rc, out = self.sh(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "true"], 30) \
            if shutil.which("perf") else (-1, "perf not installed")
        perf_ok = rc == 0 and benchlib.parse_perf_stat_count(out) is not None
        strace_ok = shutil.which("strace") is not None
        how = ("perf stat -e raw_syscalls:sys_enter" if perf_ok else
               "strace -f -c (perf stat -e raw_syscalls:sys_enter does not work here: %s)" %
               self.last_line(out) if strace_ok else None)

        def ticks(pid):
            try:
                with open("/proc/%d/stat" % pid) as f:
                    return benchlib.parse_proc_stat_ticks(f.read())
            except (OSError, ValueError):
                return None

        def tracers(kind, core, workers, tmp):
            """Starts one counter on the core and one on all workers: [(label, Popen, file)]."""
            out = []
            for label, pids in (("core", [core]), ("workers", workers)):
                path = os.path.join(tmp, "%s-%s.txt" % (kind, label))
                if kind == "perf":
                    argv = ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-o", path,
                            "-p", ",".join(str(p) for p in pids)]
                else:
                    argv = ["strace", "-f", "-c", "-o", path] + [
                        x for p in pids for x in ("-p", str(p))]
                shown = [a.replace(tmp, "$TMP") for a in argv]
                shown = [("$CORE_PID" if label == "core" else "$WORKER_PID")
                         if a.isdigit() and int(a) in pids else a for a in shown]
                if kind == "perf" and label == "workers":
                    shown[-1] = "$WORKER_PIDS (comma-separated)"
                self.note_cmd("v2 syscalls (%s, %s)" % (kind, label), shown)
                p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
                out.append((label, p, path))
            time.sleep(0.5)  # attached
            return out

        def stop_tracers(ts):
            for _, p, _ in ts:
                try:
                    os.kill(p.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
            for _, p, _ in ts:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)

        def one(r, rep):
            fig = {}
            with Served(self, "v2 cpu, %s" % r["name"],
                        self.ferry_maker(CPU_WORKERS, r["extra"], r.get("app"))) as s:
                core = s.core_pid()
                self.runner.wrk(s.port, "/hello", 100, 1)  # warm-up
                workers, why = self.worker_pids(s, CPU_WORKERS)
                if workers is None:
                    r["notes"].append("worker pids unknown (%s): core only" % why)
                    workers = []
                # 1. CPU time: utime + stime over a full-speed run
                before = {p: ticks(p) for p in [core] + workers}
                n0 = self.requests_done(s)
                res, err = self.runner.wrk(s.port, "/hello", 100, d,
                                           note="v2 cpu: hello keep-alive c100")
                after = {p: ticks(p) for p in [core] + workers}
                n1 = self.requests_done(s)
                if err:
                    raise RuntimeError("failed: " + err)
                n = (n1 - n0) if n0 is not None and n1 is not None else res["requests"]
                fig["cpu_requests"] = n
                fig["rps"] = res["rps"]
                for label, pids in (("core", [core]), ("worker", workers)):
                    if not pids or any(before[p] is None or after[p] is None for p in pids):
                        continue
                    u = sum(after[p][0] - before[p][0] for p in pids)
                    sy = sum(after[p][1] - before[p][1] for p in pids)
                    fig[label + "_user_us"] = benchlib.per_request_us(u, CLK_TCK, n)
                    fig[label + "_sys_us"] = benchlib.per_request_us(sy, CLK_TCK, n)
                    fig[label + "_us"] = benchlib.per_request_us(u + sy, CLK_TCK, n)
                # 2. system calls per request at the same load
                if perf_ok:
                    n0 = self.requests_done(s)
                    ts = tracers("perf", core, workers, s.tmp)
                    res, err = self.runner.wrk(s.port, "/hello", 100, d)
                    stop_tracers(ts)
                    n1 = self.requests_done(s)
                    n = (n1 - n0) if n0 is not None and n1 is not None else (
                        res["requests"] if res else None)
                    for label, _, path in ts:
                        c = benchlib.parse_perf_stat_count(self.read_text(path))
                        if c is not None and n:
                            fig[label.rstrip("s") + "_syscalls"] = c / n
                # 3. which calls: strace -f -c, at c10 (strace slows the traced processes)
                if strace_ok:
                    n0 = self.requests_done(s)
                    ts = tracers("strace", core, workers, s.tmp)
                    res, err = self.runner.wrk(s.port, "/hello", 10, min(d, 3), timeout="5s",
                                               note="v2 syscalls under strace: hello c10")
                    stop_tracers(ts)
                    n1 = self.requests_done(s)
                    n = (n1 - n0) if n0 is not None and n1 is not None else (
                        res["requests"] if res else None)
                    fig["strace_requests"] = n
                    for label, _, path in ts:
                        text = self.read_text(path)
                        calls = benchlib.parse_strace_summary(text)
                        key = label.rstrip("s")
                        for name, cnt in calls.items():
                            if n:
                                fig["strace_%s:%s" % (key, name)] = cnt / n
                        if key == "worker" and n and calls:
                            ok = benchlib.parse_strace_summary(text, successful=True)
                            fig["worker_accepts"] = sum(
                                ok.get(k, 0) for k in ("accept", "accept4")) / n
                        if not perf_ok and n and calls:
                            fig[key + "_syscalls"] = sum(calls.values()) / n
            return fig

        rows = self.rows_over_reps(rows, one)
        for r in rows:
            for key in ("core", "worker"):
                calls = {k.split(":", 1)[1]: v for k, v in r.items()
                         if k.startswith("strace_%s:" % key) and v is not None}
                r["top_" + key] = benchlib.top_per_request(calls, 1.0)
            r["protocol_in_effect"] = benchlib.protocol_in_effect(r.get("worker_accepts"))
        return {"rows": rows, "syscalls_by": how}


# ---------------------------------------------------------------------------------------------
# Report

def _cells_or_status(r, cells):
    return cells if r.get("status") == "ok" else [r["name"], r.get("status", "not run")]


def report_md(v2, rows):
    """The report's "Session protocol v2" section (Markdown text). <v2> is V2.run()'s result,
    <rows> the server rows (for the hello table)."""
    f, fr = benchlib.fmt, benchlib.fmt_ratio
    L = ["## Session protocol v2 (docs/protocol.md §4)\n"]
    secs = v2.get("sections", [])
    if not secs:
        L.append("Not run (--v2 none).\n")
        return "\n".join(L)
    L.append("How each of these is measured: docs/performance.md, \"Session protocol v2 rows "
             "(how they are measured)\". Each figure is the median over the repetitions; every "
             "repetition starts and stops the server.\n")

    cpu_rows = {r["name"]: r for r in v2.get("cpu", {}).get("rows", [])}
    if "hello" in secs:
        L.append("### C hello through ferry: v2 and v1 (keep-alive c100, 2 workers)\n")
        by = {r["name"]: r for r in rows}
        base = by.get("nginx-return200", {})
        fcgi = by.get("nginx-fastcgi-c", {})
        ok = (lambda r: r and r.get("status") == "ok")
        trs = []
        for name, proto in (("ferry-c", "v2"), ("ferry-c-v1", "v1"), ("nginx-return200", None),
                            ("nginx-fastcgi-c", None)):
            r = by.get(name)
            if not r:
                trs.append([name, "not run (not chosen)"])
                continue
            if not ok(r):
                trs.append([name, r.get("status")])
                continue
            eff = cpu_rows.get(proto, {}).get("protocol_in_effect") if proto else None
            trs.append([
                name, (eff or ("asked: " + proto)) if proto else "—", f(r.get("rps_ka")),
                fr(benchlib.ratio(r.get("rps_ka"), base.get("rps_ka")) if ok(base) else None),
                fr(benchlib.ratio(r.get("rps_ka"), fcgi.get("rps_ka")) if ok(fcgi) else None),
                f(r.get("p50_ka_ms"), 2), f(r.get("p99_ka_ms"), 2),
                fr(benchlib.ratio(r.get("p99_ka_ms"), fcgi.get("p99_ka_ms")) if ok(fcgi)
                   else None)])
        v2r, v1r = by.get("ferry-c"), by.get("ferry-c-v1")
        if ok(v2r) and ok(v1r):
            trs.append(["v2 ÷ v1", "", fr(benchlib.ratio(v2r.get("rps_ka"), v1r.get("rps_ka"))),
                        "", "", fr(benchlib.ratio(v2r.get("p50_ka_ms"), v1r.get("p50_ka_ms"))),
                        fr(benchlib.ratio(v2r.get("p99_ka_ms"), v1r.get("p99_ka_ms"))), ""])
        L.append(benchlib.markdown_table(
            ["row", "protocol", "req/s", "÷ nginx return 200", "÷ nginx + FastCGI", "p50 ms",
             "p99 ms", "p99 ÷ nginx + FastCGI (lower is better)"], trs))
        L.append("\n`protocol`: what the C worker's system calls showed in the cpu run below "
                 "(accepts per request), else what was asked for. The same rows, with every "
                 "other figure, are in the results table above.\n")

    if "mixed" in secs:
        rs = v2.get("mixed", {}).get("rows", [])
        L.append("### Mixed workload: 1 request in %d sleeps %d ms (C app, %d workers)\n" % (
            MIX_EVERY, MIX_SLOW_MS, MIX_WORKERS))
        d0 = next((r for r in rs if r.get("depth") == 0 and r.get("status") == "ok"), None)
        trs = []
        for r in rs:
            for key, label in (("sat", "saturated c%d" % MIX_CONNS),
                               ("paced", "paced c%d, %d ms apart" % (PACED_CONNS,
                                                                     PACED_DELAY_MS))):
                trs.append(_cells_or_status(r, [
                    r["name"], label, f(r.get(key + "_rps")), f(r.get(key + "_fast_rps")),
                    f(r.get(key + "_fast_p50_ms"), 2), f(r.get(key + "_fast_p99_ms"), 2),
                    fr(benchlib.ratio(r.get(key + "_fast_p99_ms"),
                                      d0.get(key + "_fast_p99_ms")) if d0 else None),
                    f(r.get(key + "_slow_p50_ms"), 1), f(r.get(key + "_slow_p99_ms"), 1),
                    f(r.get("loadavg"), 2)]))
                if r.get("status") != "ok":
                    break
        L.append(benchlib.markdown_table(
            ["dispatch-ahead", "load", "req/s (all)", "fast req/s", "fast p50 ms",
             "fast p99 ms", "fast p99 ÷ dispatch-ahead 0", "slow p50 ms", "slow p99 ms",
             "load avg"], trs))
        L.append("")
        trs = [_cells_or_status(r, [
            r["name"], f(r.get("fast_only_rps")),
            fr(benchlib.ratio(r.get("fast_only_rps"), d0.get("fast_only_rps")) if d0 else None),
            f(r.get("fast_only_p99_ms"), 2)]) for r in rs]
        L.append("All requests fast (hello keep-alive c100, same server start), where "
                 "dispatch-ahead can only help:\n")
        L.append(benchlib.markdown_table(["dispatch-ahead", "req/s", "÷ dispatch-ahead 0",
                                          "p99 ms"], trs))
        notes = ["%s: %s" % (r["name"], "; ".join(r["notes"][:6])) for r in rs if r["notes"]]
        L.append("\n" + ("Notes: " + " · ".join(notes) + "\n" if notes else ""))

    if "slow" in secs:
        rs = v2.get("slow", {}).get("rows", [])
        L.append("### Slow readers: %d clients reading a 20 MiB response at %d KiB/s, beside "
                 "one fast client\n" % (SLOW_READERS, SLOW_RATE // 1024))
        trs = []
        for r in rs:
            starved = r.get("status") == "ok" and not r.get("readers_requests")
            trs.append(_cells_or_status(r, [
                r["name"], f(r.get("alone_rps")), f(r.get("alone_p50_ms"), 2),
                f(r.get("alone_p99_ms"), 2),
                "starved: 0 responses" if starved else f(r.get("readers_rps")),
                f(r.get("readers_p50_ms"), 2), f(r.get("readers_p99_ms"), 2),
                fr(benchlib.ratio(r.get("readers_p99_ms"), r.get("alone_p99_ms"))),
                "%s / %s" % (f(r.get("readers_heads")), f(r.get("readers_open"))),
                f(r.get("readers_mib"), 1), f(r.get("readers_core_peak_mib"), 1),
                f(r.get("readers_tree_peak_mib"), 1), f(r.get("loadavg"), 2)]))
        L.append(benchlib.markdown_table(
            ["server", "fast req/s alone", "p50 ms alone", "p99 ms alone",
             "fast req/s with readers", "p50 ms with readers", "p99 ms with readers",
             "p99 ÷ alone", "readers answered / connected", "MiB read by readers",
             "peak RSS MiB core/launched", "peak RSS MiB tree", "load avg"], trs))
        L.append("\nConfigurations: " + "; ".join("%s: %s" % (r["name"], r["config"])
                                                  for r in rs) + ".")
        notes = ["%s: %s" % (r["name"], "; ".join(r["notes"][:6])) for r in rs if r["notes"]]
        L.append(("Notes: " + " · ".join(notes) + "\n") if notes else "")

    if "cpu" in secs:
        c = v2.get("cpu", {})
        rs = c.get("rows", [])
        L.append("### CPU and system calls per request (hello, keep-alive c100, 2 workers)\n")
        L.append("Rows v2 and v1: the C app; rows wsgi and rack: the WSGI and Rack hello apps "
                 "on the C worker runtime (their workers are interpreters with the extension "
                 "module).\n")
        trs = []
        for r in rs:
            def us(k):
                if r.get(k + "_us") is None:
                    return "—"
                return "%s (%s user + %s sys)" % (f(r.get(k + "_us"), 1),
                                                 f(r.get(k + "_user_us"), 1),
                                                 f(r.get(k + "_sys_us"), 1))
            trs.append(_cells_or_status(r, [
                r["name"], r.get("protocol_in_effect") or "—", f(r.get("cpu_requests")),
                us("core"), us("worker"), f(r.get("core_syscalls"), 1),
                f(r.get("worker_syscalls"), 1), r.get("top_core", "—"),
                r.get("top_worker", "—")]))
        by = {r["name"]: r for r in rs if r.get("status") == "ok"}
        if "v1" in by and "v2" in by:
            a, b = by["v2"], by["v1"]
            trs.append(["v2 ÷ v1", "", "", fr(benchlib.ratio(a.get("core_us"), b.get("core_us"))),
                        fr(benchlib.ratio(a.get("worker_us"), b.get("worker_us"))),
                        fr(benchlib.ratio(a.get("core_syscalls"), b.get("core_syscalls"))),
                        fr(benchlib.ratio(a.get("worker_syscalls"), b.get("worker_syscalls"))),
                        "", ""])
        L.append(benchlib.markdown_table(
            ["row", "in effect (worker accepts)", "requests (CPU run)",
             "core µs/request", "workers µs/request (both)", "core syscalls/request",
             "worker syscalls/request", "core's commonest calls/request (strace, c10)",
             "workers' commonest calls/request (strace, c10)"], trs))
        L.append("\nSystem calls counted with: %s. µs are CPU time (utime + stime from "
                 "/proc/PID/stat, %d ticks a second) divided by the requests the core counted "
                 "(`ferry status --json`, pool.requests_done).\n" % (
                     c.get("syscalls_by") or "nothing (neither perf nor strace works)", CLK_TCK))
        notes = ["%s: %s" % (r["name"], "; ".join(r["notes"][:6])) for r in rs if r["notes"]]
        L.append(("Notes: " + " · ".join(notes) + "\n") if notes else "")
    if v2.get("notes"):
        L.append("Stops: " + "; ".join(v2["notes"][:10]) + "\n")
    return "\n".join(L)
