"""The metrics row of `make bench`: what --metrics-address costs (docs/operations.md,
"Monitoring"; docs/performance.md, "Metrics").

ferry-c (the C hello app, 2 workers) keep-alive c100 for /hello, twice: metrics off, and metrics
on with GET /metrics scraped once a second during the run (as a Prometheus server would, at a
higher rate than its usual 15 s). The two configurations alternate repetition by repetition
(V2.rows_over_reps), so a drift of the machine's load hits both alike; the ratio on ÷ off of the
medians is the cost. The counting itself runs whether the endpoint is on or not; what "on" adds is
the listener and the rendering of the text once a second.
"""

import threading
import time

import benchlib
import procs
import servers
import v2rows

WORKERS = servers.WORKERS
CONNS = 100
SCRAPE_EVERY_S = 1.0


class Scraper:
    """GET /metrics on <port> every SCRAPE_EVERY_S seconds until stopped; counts the answers."""

    def __init__(self, port):
        self.port = port
        self.ok = 0
        self.failed = 0
        self.last_len = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                st, _, body = procs.http_get(self.port, "/metrics", timeout=5)
                if st == 200 and body.startswith(b"# HELP "):
                    self.ok += 1
                    self.last_len = len(body)
                else:
                    self.failed += 1
            except Exception:  # a refused or cut connection counts as a failed scrape
                self.failed += 1
            self._stop.wait(SCRAPE_EVERY_S)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(timeout=10)
        return False


def run(v):
    """Measures the row with the helpers of <v> (a v2rows.V2); returns {"rows": [...]}."""
    why = v.ferry_missing() or v.opt("metrics-address")
    rows = []
    for name, on in (("metrics off", False), ("metrics on, scraped 1/s", True)):
        r = {"name": name, "on": on, "notes": [],
             "config": "ferry-c, %d workers%s" % (WORKERS, ", --metrics-address 127.0.0.1:PORT"
                                                  if on else "")}
        if why:
            r["status"] = "skipped: " + why
        rows.append(r)
    d = v.args.duration

    def one(r, rep):
        extra = []
        mport = None
        if r["on"]:
            mport = procs.free_port()
            v.runner.used_ports.append(mport)
            extra = ["--metrics-address", "127.0.0.1:%d" % mport]
        with v2rows.Served(v, "metrics row, %s" % r["name"], v.ferry_maker(WORKERS, extra)) as s:
            v.runner.wrk(s.port, "/hello", CONNS, 1)  # warm-up
            fig = {}
            if r["on"]:
                with Scraper(mport) as sc:
                    res, err = v.runner.wrk(s.port, "/hello", CONNS, d,
                                            note="metrics row: hello keep-alive c100")
                fig["scrapes"] = sc.ok
                fig["metrics_bytes"] = sc.last_len
                if sc.failed or sc.ok == 0:
                    raise RuntimeError("failed: %d of %d scrapes of /metrics failed" % (
                        sc.failed, sc.ok + sc.failed))
            else:
                res, err = v.runner.wrk(s.port, "/hello", CONNS, d,
                                        note="metrics row: hello keep-alive c100")
            if err:
                raise RuntimeError("failed: " + err)
            fig.update(rps_ka=res["rps"], p50_ka_ms=res["p50_ms"], p99_ka_ms=res["p99_ms"])
            return fig

    return {"rows": v.rows_over_reps(rows, one)}


def report_md(m):
    """The markdown section of the row."""
    f, fr = benchlib.fmt, benchlib.fmt_ratio
    rows = m.get("rows", [])
    L = ["## Metrics endpoint cost\n",
         "C hello, %d workers, wrk -t2 -c%d keep-alive; \"on\": --metrics-address with GET "
         "/metrics scraped every %g s during the run. Target: on costs ≤ 2 %% of throughput "
         "(on ÷ off ≥ 0.98).\n" % (WORKERS, CONNS, SCRAPE_EVERY_S)]
    L.append("| configuration | req/s | p50 ms | p99 ms | scrapes | status |")
    L.append("|---|---:|---:|---:|---:|---|")
    for r in rows:
        L.append("| %s | %s | %s | %s | %s | %s |" % (
            r["name"], f(r.get("rps_ka")), f(r.get("p50_ka_ms")), f(r.get("p99_ka_ms")),
            f(r.get("scrapes")), r.get("status", "?")))
    ok = [r for r in rows if r.get("status") == "ok"]
    if len(ok) == 2:
        ratio = benchlib.ratio(ok[1].get("rps_ka"), ok[0].get("rps_ka"))
        m["ratio"] = ratio
        L.append("\nratio on ÷ off (req/s): **%s**%s\n" % (
            fr(ratio), "" if ratio is None else
            (" — target met" if ratio >= 0.98 else " — target NOT met")))
    notes = [n for r in rows for n in r.get("notes", [])]
    if notes:
        L.append("\nNotes: " + "; ".join(notes) + "\n")
    return "\n".join(L) + "\n"
