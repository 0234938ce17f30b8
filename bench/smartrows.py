"""The smart-spawning rows of `make bench` (docs/configuration.md "Smart spawning"): a Django app
and a Rails app (the e2e framework apps, tests/e2e/apps/frameworks/), each under
--spawn-method smart and --spawn-method direct, 4 workers started at boot:

* cold start   — launch → the first 200, and launch → all 4 workers ready (`ferry status`);
* memory       — the total PSS of everything below the core (the workers and, under smart, the
                 preloader), read from /proc (see below; `ferry status --json`'s own figure is
                 kept beside it) once the 4 workers served requests; smart ÷ direct per app and
                 repetition (target ≤ 0.6);
* one more worker — an idle worker is SIGKILLed (min-instances brings a replacement) five
                 times per repetition; the replacement's spawn time (the core's request → its
                 ready message, `spawn_ms` in `ferry status`), min/median/max over every sample
                 (target ≤ 10 ms under smart; direct is the app's whole boot).

The peer row: Passenger Standalone (Debian's `passenger`, servers.passenger_command) on the same
Rails app, 4 processes (`--max-pool-size 4 --min-instances 4`), `--spawn-method smart` and
`direct`: the same cold-start and memory figures (its AppPreloader and RubyApp processes are the
"app processes"; its front end, watchdog, core and temp-dir toucher the "core processes").
Passenger has no per-process spawn time to read, so it has no "one more worker" figure.

Memory is read the same way for every row: the PSS of each process of the server's tree from
/proc/PID/smaps_rollup (bench/procs.py), after the same requests (WARM_STREAMS concurrent slow
requests, twice, so that every worker serves at least one, then 2 × WORKERS `GET /`).

Re-forking (docs/configuration.md "Re-forking"): two more ferry rows per app, both smart, both
warmed the same way — REFORK_WARM_ROUNDS rounds of REFORK_WARM_REQUESTS requests over the app's
routes (REFORK_PATHS), WORKERS at a time — one without and one with `--refork-after
REFORK_AFTER`; for the latter the second round starts once the re-fork is over (the preloader
replaced, every worker forked from it). The figure is the PSS of the app processes after the
warm-up, re-fork ÷ no re-fork per repetition: what sharing the warmed worker's pages saves.

Each repetition is a full start → measure → stop cycle; a server that does not start is a
`failed to start: …` row and the run goes on.
"""

import os
import shutil
import signal
import statistics
import threading
import time

import benchlib
import procs
import servers
import v2rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORKS = os.path.join(ROOT, "tests", "e2e", "apps", "frameworks")
APPS = (("django", os.path.join(FRAMEWORKS, "django")), ("rails", os.path.join(FRAMEWORKS, "rails")))
METHODS = ("smart", "direct")
WORKERS = 4
KILLS_PER_REP = 5
PSS_RATIO_TARGET = 0.6
SPAWN_MS_TARGET = 10
# Each holds a worker for ~0.2 s (the apps' /stream route, 3 lines 0.1 s apart), so WORKERS of
# them at once reach WORKERS different workers under either server.
WARM_PATH = "/stream?n=3&gap=0.1"
PASSENGER_APP_PREFIXES = ("Passenger AppPreloader", "Passenger RubyApp")
REFORK_METHODS = ("warmed", "refork")
REFORK_AFTER = 100
REFORK_WARM_ROUNDS = 2
REFORK_WARM_REQUESTS = 800
# GET routes of the framework apps that run the framework's routing, views, sessions and
# templates/renderers: what a real app loads and caches during its first requests.
REFORK_PATHS = {
    "django": ("/", "/meta", "/csrf", "/echo/warm", "/session", "/redirect",
               "/stream?n=1&gap=0"),
    "rails": ("/", "/meta", "/params?a=1", "/echo/warm", "/session", "/redirect",
              "/stream?n=1&gap=0"),
}


class Smart:
    """Runs the rows. <v2> is a v2rows.V2 (its runner, status helper and logging are reused)."""

    def __init__(self, v2):
        self.v = v2
        self.notes = []

    def idle(self, served, want, timeout_s):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            doc, _ = self.v.status(served)
            if doc is not None and doc["pool"].get("idle") == want:
                return doc
            time.sleep(0.05)
        return None

    def exercise(self, port):
        """The same requests for every row: WORKERS concurrent slow requests, twice (each
        worker serves one), then 2 × WORKERS sequential `GET /`. Raises RuntimeError when one
        does not answer 200."""
        bad = []

        def get(path):
            try:
                st = procs.http_get(port, path, timeout=20.0)[0]
            except OSError as e:
                st = str(e)
            if st != 200:
                bad.append("%s: %s" % (path, st))
        for _ in range(2):
            ts = [threading.Thread(target=get, args=(WARM_PATH,)) for _ in range(WORKERS)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        for _ in range(2 * WORKERS):
            get("/")
        if bad:
            raise RuntimeError("requests failed: " + "; ".join(bad[:3]))

    @staticmethod
    def memory(s, is_app, pids=None):
        """{app_pss_mib, core_pss_mib, app_procs, app_uss_mib: [..]} of the server <s>: the PSS
        of every process of its tree (or of <pids>), split by is_app(pid)."""
        app, core, uss = 0, 0, []
        n = 0
        for pid in (pids if pids is not None else s.server.tree()):
            kib = procs.pss_kib(pid)
            if is_app(pid):
                app += kib
                n += 1
                uss.append(procs.uss_kib(pid) / 1024.0)
            else:
                core += kib
        return {"pss_below_core_mib": app / 1024.0, "core_pss_mib": core / 1024.0,
                "app_procs": n, "app_uss_mib": uss}

    def one_passenger(self, method):
        name = "passenger-rails-%s" % method
        rails = dict(APPS)["rails"]

        def make(port, tmp):
            return servers.passenger_command(rails, port, tmp, WORKERS, method)

        def is_app(pid):
            return procs.cmdline(pid).startswith(PASSENGER_APP_PREFIXES)

        def workers(s):
            return [p for p in s.server.tree()
                    if procs.cmdline(p).startswith("Passenger RubyApp")]
        fig = {}
        launched = time.monotonic()
        with v2rows.Served(self.v, name, make, start_timeout_s=90.0, path="/",
                           settle_s=0.0) as s:
            fig["cold_start_ms"] = s.first_200_s * 1000.0
            end = time.monotonic() + 90
            while len(workers(s)) < WORKERS and time.monotonic() < end:
                time.sleep(0.02)
            if len(workers(s)) < WORKERS:
                raise RuntimeError("%d RubyApp processes were not up within 90 s" % WORKERS)
            # Passenger has no "ready" to read: a process is counted once it exists and the
            # next request is answered.
            procs.http_get(s.port, "/", timeout=10.0)
            fig["ready_all_ms"] = (time.monotonic() - launched) * 1000.0
            self.exercise(s.port)
            time.sleep(1.0)
            fig.update(self.memory(s, is_app))
            fig["preloader_pss_mib"] = sum(
                procs.pss_kib(p) for p in s.server.tree()
                if procs.cmdline(p).startswith("Passenger AppPreloader")) / 1024.0
            if fig["app_procs"] != WORKERS + (1 if method == "smart" else 0):
                self.notes.append("%s: %d app processes when memory was read" % (
                    name, fig["app_procs"]))
        fig["spawn_samples"] = []
        return fig

    def warm(self, port, app_name):
        """REFORK_WARM_REQUESTS requests over the app's routes, WORKERS streams at once.
        Raises RuntimeError when one gets no answer or a 5xx."""
        paths = REFORK_PATHS[app_name]
        bad = []

        def stream(k):
            for i in range(REFORK_WARM_REQUESTS // WORKERS):
                path = paths[(i + k) % len(paths)]
                try:
                    st = procs.http_get(port, path, timeout=20.0)[0]
                except OSError as e:
                    st = str(e)
                if not isinstance(st, int) or st >= 500:
                    bad.append("%s: %s" % (path, st))
        ts = [threading.Thread(target=stream, args=(k,)) for k in range(WORKERS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if bad:
            raise RuntimeError("warm-up requests failed: " + "; ".join(bad[:3]))

    def one_refork(self, app, method):
        """A warmed smart row, with (method "refork") or without ("warmed") re-forking."""
        name = "ferry-%s-%s" % (app[0], method)
        extra = ["--spawn-method", "smart", "--max-preloader-idle-time", "0"]
        if method == "refork":
            extra += ["--refork-after", str(REFORK_AFTER)]
        make = self.v.ferry_maker(WORKERS, extra, app_dir=app[1])
        fig = {}
        with v2rows.Served(self.v, name, make, start_timeout_s=60.0, path="/",
                           settle_s=0.0) as s:
            if self.idle(s, WORKERS, 60) is None:
                raise RuntimeError("%d workers were not ready within 60 s" % WORKERS)
            for round_no in range(REFORK_WARM_ROUNDS):
                self.warm(s.port, app[0])
                if method == "refork" and round_no == 0:
                    end = time.monotonic() + 90
                    doc = None
                    while time.monotonic() < end:
                        d, _ = self.v.status(s)
                        p = (d or {}).get("pool", {})
                        if (p.get("reforks") == 1 and not p.get("restarting")
                                and p.get("idle") == WORKERS):
                            doc = d
                            break
                        time.sleep(0.1)
                    if doc is None:
                        raise RuntimeError("no re-fork within 90 s of %d requests" %
                                           REFORK_WARM_REQUESTS)
            doc = self.idle(s, WORKERS, 20)
            if doc is None:
                raise RuntimeError("the workers did not come back idle")
            reforks = doc["pool"].get("reforks", 0)
            if reforks != (1 if method == "refork" else 0):
                self.notes.append("%s: %d re-forks during the warm-up" % (name, reforks))
            time.sleep(1.0)
            # After a re-fork the preloader and its workers are no longer below the core in the
            # process tree (their parent, the warmed worker, has exited): the pids come from
            # `ferry status`, for both rows alike.
            core = s.core_pid()
            pre = doc["pool"].get("preloader") or {}
            pids = [core] + [w["pid"] for w in doc["workers"]] + (
                [pre["pid"]] if pre.get("pid") else [])
            fig.update(self.memory(s, lambda pid: pid != core, pids))
            fig["preloader_pss_mib"] = procs.pss_kib(pre["pid"]) / 1024.0 if pre.get("pid") else 0
        fig["spawn_samples"] = []
        return fig

    def one(self, app, method):
        if method in REFORK_METHODS:
            return self.one_refork(app, method)
        name = "ferry-%s-%s" % (app[0], method)
        make = self.v.ferry_maker(WORKERS, ["--spawn-method", method,
                                            "--max-preloader-idle-time", "0"], app_dir=app[1])
        fig = {}
        launched = time.monotonic()
        with v2rows.Served(self.v, name, make, start_timeout_s=60.0, path="/",
                           settle_s=0.0) as s:
            fig["cold_start_ms"] = s.first_200_s * 1000.0
            doc = self.idle(s, WORKERS, 60)
            if doc is None:
                raise RuntimeError("%d workers were not ready within 60 s" % WORKERS)
            fig["ready_all_ms"] = (time.monotonic() - launched) * 1000.0
            self.exercise(s.port)
            doc = self.idle(s, WORKERS, 20)
            if doc is None:
                raise RuntimeError("the workers did not come back idle")
            idle_ones = [w["pid"] for w in doc["workers"] if not w.get("requests")]
            if idle_ones:
                self.notes.append("%s: worker(s) %s served no request before memory was read"
                                  % (name, idle_ones))
            time.sleep(1.0)
            core = s.core_pid()
            fig.update(self.memory(s, lambda pid: pid != core))
            # ferry's own figure, for comparison with the /proc reading above.
            doc, _ = self.v.status(s)
            pre = (doc or {}).get("pool", {}).get("preloader") or {}
            fig["preloader_pss_mib"] = (pre.get("pss_kib") or 0) / 1024.0
            if doc is not None:
                fig["status_pss_below_core_mib"] = (sum(
                    int(w["pss_kib"] or 0) for w in doc["workers"]) + int(
                    pre.get("pss_kib") or 0)) / 1024.0
            spawns = []
            for _ in range(KILLS_PER_REP):
                before = {w["pid"] for w in doc["workers"]}
                victim = sorted(before)[0]
                os.kill(victim, signal.SIGKILL)
                end = time.monotonic() + 60
                doc = None
                while time.monotonic() < end:
                    d, _ = self.v.status(s)
                    if d is not None:
                        new = [w for w in d["workers"]
                               if w["pid"] not in before and w["state"] == "idle"]
                        if new and d["pool"]["idle"] == WORKERS:
                            spawns.append(float(new[0]["spawn_ms"]))
                            doc = d
                            break
                    time.sleep(0.02)
                if doc is None:
                    raise RuntimeError("no replacement worker within 60 s")
            fig["spawn_samples"] = spawns
        return fig

    def run(self):
        rows = []
        missing = self.v.opt("spawn-method")
        for app in APPS:
            for method in METHODS + REFORK_METHODS:
                r = {"name": "ferry-%s-%s" % (app[0], method), "server": "ferry",
                     "app": app[0], "method": method, "notes": []}
                if not self.v.ctx.get("ferry_bin"):
                    r["status"] = "skipped: " + (self.v.ctx.get("ferry_reason") or "no ferry")
                elif missing:
                    r["status"] = "skipped: " + missing
                rows.append(r)
        for method in METHODS:
            r = {"name": "passenger-rails-%s" % method, "server": "passenger", "app": "rails",
                 "method": method, "notes": []}
            if shutil.which("passenger") is None:
                r["status"] = "skipped: passenger not found (package passenger)"
            rows.append(r)
        samples = {r["name"]: [] for r in rows}

        def one(r, rep):
            if r["server"] == "passenger":
                fig = self.one_passenger(r["method"])
            else:
                fig = self.one((r["app"], dict(APPS)[r["app"]]), r["method"])
            uss = fig.pop("app_uss_mib", [])
            fig["app_uss_max_mib"] = max(uss) if uss else None
            samples[r["name"]].extend(fig.pop("spawn_samples"))
            return fig

        self.v.rows_over_reps(rows, one)
        for r in rows:
            got = samples[r["name"]]
            if got:
                r["spawn_ms_min"] = min(got)
                r["spawn_ms_median"] = statistics.median(got)
                r["spawn_ms_max"] = max(got)
                r["spawn_samples"] = len(got)
        return {"rows": rows, "notes": self.notes}


def rep_ratios(num, den, key):
    """num[key] ÷ den[key] for each repetition both rows ran (the rows alternate within a
    repetition, so each ratio compares figures measured a minute apart at most)."""
    a, b = num.get("per_rep") or [], den.get("per_rep") or []
    return [x[key] / y[key] for x, y in zip(a, b) if x.get(key) and y.get(key)]


def verdicts(smart):
    """[(app, server, ratios per repetition, median ratio, smart row, direct row)] for each
    (server, app) with both methods measured."""
    rows = smart.get("rows", [])
    by = {(r.get("server", "ferry"), r["app"], r["method"]): r for r in rows
          if r.get("status") == "ok"}
    out = []
    for server, app in [("ferry", a) for a, _ in APPS] + [("passenger", "rails")]:
        sm, di = by.get((server, app, "smart")), by.get((server, app, "direct"))
        if sm and di:
            rs = rep_ratios(sm, di, "pss_below_core_mib")
            out.append((app, server, rs, statistics.median(rs) if rs else None, sm, di))
    return out


def refork_md(rows):
    """The re-fork lines of the section: warmed smart rows with and without --refork-after."""
    f, fr = benchlib.fmt, benchlib.fmt_ratio
    by = {(r["app"], r["method"]): r for r in rows
          if r.get("server", "ferry") == "ferry" and r.get("status") == "ok"}
    L = ["Re-forking: smart, %d rounds of %d requests over the app's routes (%d at a time); "
         "`--refork-after %d` re-forks during the first round, the second runs on workers "
         "forked from the warmed one. PSS of the app processes after the warm-up:\n" % (
             REFORK_WARM_ROUNDS, REFORK_WARM_REQUESTS, WORKERS, REFORK_AFTER)]
    trs = []
    for app, _ in APPS:
        wa, rf = by.get((app, "warmed")), by.get((app, "refork"))
        if not (wa and rf):
            trs.append([app, "—", "—", "—", "a row did not run"])
            continue
        rs = rep_ratios(rf, wa, "pss_below_core_mib")
        trs.append([app, f(wa.get("pss_below_core_mib"), 1), f(rf.get("pss_below_core_mib"), 1),
                    "%s (%s)" % (fr(statistics.median(rs)) if rs else "—",
                                 ", ".join("%.2f" % x for x in rs) or "—"),
                    "%s / %s" % (f(wa.get("app_uss_max_mib"), 1),
                                 f(rf.get("app_uss_max_mib"), 1))])
    L.append(benchlib.markdown_table(
        ["app", "no re-fork (MiB)", "re-fork (MiB)", "re-fork ÷ no re-fork (per repetition)",
         "largest worker USS, no re-fork / re-fork (MiB)"], trs))
    L.append("")
    return L


def report_md(smart):
    """The report's "Smart spawning" section (Markdown)."""
    f, fr = benchlib.fmt, benchlib.fmt_ratio
    L = ["## Smart spawning (docs/configuration.md, \"Smart spawning\")\n"]
    rows = smart.get("rows", [])
    if not rows:
        L.append("Not run (--smart none).\n")
        return "\n".join(L)
    L.append("%d workers started at boot (ferry `--min-instances %d --max-pool-size %d`, "
             "Passenger the same flags), the e2e framework apps (tests/e2e/apps/frameworks/). "
             "Memory: after %d concurrent `GET %s`, twice, and %d `GET /`, the PSS of every "
             "process of the server's tree (/proc/PID/smaps_rollup): *app processes* are "
             "ferry's workers and preloader, Passenger's RubyApp and AppPreloader processes; "
             "*core processes* the rest (ferry: the core; Passenger: its front end, watchdog, "
             "core and temp-dir toucher). One more worker (ferry only): an idle worker "
             "SIGKILLed %d times per repetition, the replacement's spawn time (request → ready, "
             "`spawn_ms` as the core measures it, 1 ms resolution). Medians over the "
             "repetitions; spawn times over every sample.\n" % (
                 WORKERS, WORKERS, WORKERS, WORKERS, WARM_PATH, 2 * WORKERS, KILLS_PER_REP))
    trs = []
    for r in rows:
        srv = r.get("server", "ferry")
        if r.get("status") != "ok":
            trs.append([srv, r["app"], r["method"], r.get("status", "?")])
            continue
        spawn = "—"
        if r.get("spawn_samples"):
            spawn = "%s / %s / %s (%d)" % (f(r.get("spawn_ms_min"), 1),
                                           f(r.get("spawn_ms_median"), 1),
                                           f(r.get("spawn_ms_max"), 1), r["spawn_samples"])
        trs.append([srv, r["app"], r["method"], f(r.get("cold_start_ms"), 0),
                    f(r.get("ready_all_ms"), 0), f(r.get("pss_below_core_mib"), 1),
                    f(r.get("preloader_pss_mib"), 1), f(r.get("app_uss_max_mib"), 1),
                    f(r.get("core_pss_mib"), 1), spawn, str(r.get("reps", 0))])
    L.append(benchlib.markdown_table(
        ["server", "app", "spawn method", "cold start: first 200 (ms)",
         "%d workers ready (ms)" % WORKERS, "PSS of the app processes (MiB)",
         "of which preloader (MiB)", "largest worker USS (MiB)",
         "PSS of the core processes (MiB)",
         "one more worker: min / median / max ms (samples)", "reps"], trs))
    L.append("")
    L.append("Passenger's \"%d workers ready\" is launch → %d RubyApp processes exist and a "
             "request is answered (Passenger has no ready message to read; it starts the "
             "first one for the first request, the others soon after)." % (WORKERS, WORKERS))
    L.append("")
    done = {(app, server) for app, server, *_ in verdicts(smart)}
    for app, server, rs, ratio, sm, di in verdicts(smart):
        line = "* %s %s: PSS of the app processes smart ÷ direct = %s (per repetition: %s)" % (
            server, app, fr(ratio), ", ".join("%.2f" % x for x in rs) or "—")
        if server == "ferry":
            med = sm.get("spawn_ms_median")
            line += ("; target ≤ %.1f: **%s**; one more worker, median %s ms smart vs %s ms "
                     "direct (max %s ms smart; target median ≤ %d ms smart: **%s**)" % (
                         PSS_RATIO_TARGET,
                         "met" if ratio is not None and ratio <= PSS_RATIO_TARGET
                         else "NOT met", f(med, 1), f(di.get("spawn_ms_median"), 1),
                         f(sm.get("spawn_ms_max"), 1), SPAWN_MS_TARGET,
                         "met" if med is not None and med <= SPAWN_MS_TARGET else "NOT met"))
        L.append(line)
    for app, server in [("django", "ferry"), ("rails", "ferry"), ("rails", "passenger")]:
        if (app, server) not in done:
            L.append("* %s %s: no ratio (a row did not run)" % (server, app))
    by = {(r.get("server", "ferry"), r["method"]): r for r in rows
          if r.get("status") == "ok" and r["app"] == "rails"}
    for method in METHODS:
        fe, pa = by.get(("ferry", method)), by.get(("passenger", method))
        if fe and pa and pa.get("pss_below_core_mib"):
            L.append("* Rails, %s: ferry ÷ Passenger, PSS of the app processes %s, of the core "
                     "processes %s, cold start %s" % (
                         method, fr(fe["pss_below_core_mib"] / pa["pss_below_core_mib"]),
                         fr(fe["core_pss_mib"] / pa["core_pss_mib"])
                         if pa.get("core_pss_mib") else "—",
                         fr(fe["cold_start_ms"] / pa["cold_start_ms"])
                         if pa.get("cold_start_ms") else "—"))
    L.append("")
    L.extend(refork_md(rows))
    for n in smart.get("notes", []):
        L.append("* " + n)
    for r in rows:
        for n in r.get("notes", []):
            L.append("* %s: %s" % (r["name"], n))
    return "\n".join(L)
