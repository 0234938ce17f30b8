"""The smart-spawning rows of `make bench` (docs/configuration.md "Smart spawning"): a Django app
and a Rails app (the e2e framework apps, tests/e2e/apps/frameworks/), each under
--spawn-method smart and --spawn-method direct, 4 workers started at boot:

* cold start   — launch → the first 200, and launch → all 4 workers ready (`ferry status`);
* memory       — the total PSS of everything below the core (the workers and, under smart, the
                 preloader), from `ferry status --json` once the 4 workers served a request each;
                 smart ÷ direct per app (target ≤ 0.6);
* one more worker — an idle worker is SIGKILLed (min-instances brings a replacement) three
                 times per repetition; the replacement's spawn time (the core's request → its
                 ready message, `spawn_ms` in `ferry status`), min/median/max over every sample
                 (target ≤ 10 ms under smart; direct is the app's whole boot).

Each repetition is a full start → measure → stop cycle; a server that does not start is a
`failed to start: …` row and the run goes on.
"""

import os
import signal
import statistics
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
KILLS_PER_REP = 3
PSS_RATIO_TARGET = 0.6
SPAWN_MS_TARGET = 10


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

    def one(self, app, method):
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
            for _ in range(2 * WORKERS):
                procs.http_get(s.port, "/", timeout=10.0)
            doc = self.idle(s, WORKERS, 20)
            if doc is None:
                raise RuntimeError("the workers did not come back idle")
            pss = sum(int(w["pss_kib"] or 0) for w in doc["workers"])
            pre = doc["pool"].get("preloader") or {}
            pss += int(pre.get("pss_kib") or 0)
            fig["pss_below_core_mib"] = pss / 1024.0
            fig["preloader_pss_mib"] = (pre.get("pss_kib") or 0) / 1024.0
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
            for method in METHODS:
                r = {"name": "ferry-%s-%s" % (app[0], method), "app": app[0],
                     "method": method, "notes": []}
                if not self.v.ctx.get("ferry_bin"):
                    r["status"] = "skipped: " + (self.v.ctx.get("ferry_reason") or "no ferry")
                elif missing:
                    r["status"] = "skipped: " + missing
                rows.append(r)
        samples = {r["name"]: [] for r in rows}

        def one(r, rep):
            fig = self.one((r["app"], dict(APPS)[r["app"]]), r["method"])
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


def report_md(smart):
    """The report's "Smart spawning" section (Markdown)."""
    f, fr = benchlib.fmt, benchlib.fmt_ratio
    L = ["## Smart spawning (docs/configuration.md, \"Smart spawning\")\n"]
    rows = smart.get("rows", [])
    if not rows:
        L.append("Not run (--smart none).\n")
        return "\n".join(L)
    L.append("%d workers started at boot (`--min-instances %d --max-pool-size %d`), the e2e "
             "framework apps. PSS below the core: the workers' PSS plus the preloader's, from "
             "`ferry status --json` after each worker served requests. One more worker: an idle "
             "worker SIGKILLed %d times per repetition, the replacement's spawn time (request → "
             "ready, as the core measures it). Medians over the repetitions; spawn times over "
             "every sample.\n" % (WORKERS, WORKERS, WORKERS, KILLS_PER_REP))
    trs = []
    for r in rows:
        if r.get("status") != "ok":
            trs.append([r["app"], r["method"], r.get("status", "?"), "", "", "", ""])
            continue
        trs.append([r["app"], r["method"], f(r.get("cold_start_ms"), 0),
                    f(r.get("ready_all_ms"), 0), f(r.get("pss_below_core_mib"), 1),
                    f(r.get("preloader_pss_mib"), 1),
                    "%s / %s / %s (%d)" % (f(r.get("spawn_ms_min"), 1),
                                           f(r.get("spawn_ms_median"), 1),
                                           f(r.get("spawn_ms_max"), 1),
                                           r.get("spawn_samples", 0))])
    L.append(benchlib.markdown_table(
        ["app", "spawn method", "cold start: first 200 (ms)", "%d workers ready (ms)" % WORKERS,
         "PSS below the core (MiB)", "of which preloader (MiB)",
         "one more worker: min / median / max ms (samples)"], trs))
    L.append("")
    by = {(r["app"], r["method"]): r for r in rows if r.get("status") == "ok"}
    for app, _ in APPS:
        s, d = by.get((app, "smart")), by.get((app, "direct"))
        if s and d and s.get("pss_below_core_mib") and d.get("pss_below_core_mib"):
            ratio = s["pss_below_core_mib"] / d["pss_below_core_mib"]
            L.append("* %s: PSS smart ÷ direct = %s (target ≤ %.1f: %s); one more worker, median "
                     "%s ms smart vs %s ms direct (target ≤ %d ms smart: %s)" % (
                         app, fr(ratio), PSS_RATIO_TARGET,
                         "met" if ratio <= PSS_RATIO_TARGET else "NOT met",
                         f(s.get("spawn_ms_median"), 1), f(d.get("spawn_ms_median"), 1),
                         SPAWN_MS_TARGET,
                         "met" if (s.get("spawn_ms_median") or 1e9) <= SPAWN_MS_TARGET
                         else "NOT met"))
        else:
            L.append("* %s: no ratio (a row did not run)" % app)
    L.append("* Passenger smart spawning on the same Rails app: not measured here (no peer row "
             "yet).")
    L.append("")
    for n in smart.get("notes", []):
        L.append("* " + n)
    return "\n".join(L)
