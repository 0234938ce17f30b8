"""Pure functions of the bench harness: wrk output parsing, medians, ratios, targets, tables.

Nothing here touches processes, sockets or files, so tests/bench/test_bench_parse.py can check
all of it in well under a second. bench/run.py does the I/O and calls these.
"""

import re

# Units wrk prints for latencies, in milliseconds.
_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


IFACE_LABEL = {"c": "C", "wsgi": "WSGI", "rack": "Rack"}


class WrkParseError(ValueError):
    """wrk's output did not hold the figures the bench needs."""


def parse_time_ms(text):
    """'812.00us' -> 0.812, '1.20ms' -> 1.2, '2.00s' -> 2000.0, '1.00m' -> 60000.0.

    Raises WrkParseError on anything else."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)\s*", text)
    if not m:
        raise WrkParseError("not a wrk duration: %r" % text)
    return float(m.group(1)) * _TIME_UNITS_MS[m.group(2)]


def parse_size_bytes(text):
    """'1.50MB' -> 1572864.0, '512.00B' -> 512.0 (wrk uses powers of 1024).

    Raises WrkParseError on anything else."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)(B|KB|MB|GB|TB)\s*", text)
    if not m:
        raise WrkParseError("not a wrk size: %r" % text)
    return float(m.group(1)) * _SIZE_UNITS[m.group(2)]


def parse_wrk(text):
    """Parses the output of `wrk --latency`. Returns a dict with:
    rps (float), requests (int), duration_s (float), transfer_bps (bytes/s, float),
    p50_ms, p75_ms, p90_ms, p99_ms (floats, None when --latency was not given),
    errors (dict connect/read/write/timeout, zero when wrk printed no error line),
    non_2xx (int).

    Raises WrkParseError when the output has no 'Requests/sec' line or no request summary
    (wrk failed to connect at all, or was killed)."""
    out = {"p50_ms": None, "p75_ms": None, "p90_ms": None, "p99_ms": None,
           "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}, "non_2xx": 0}
    m = re.search(r"^Requests/sec:\s*([0-9]+(?:\.[0-9]+)?)\s*$", text, re.M)
    if not m:
        raise WrkParseError("no Requests/sec line in wrk output")
    out["rps"] = float(m.group(1))
    m = re.search(r"^\s*([0-9]+) requests in ([0-9.]+[a-z]+), ([0-9.]+[A-Z]+) read", text, re.M)
    if not m:
        raise WrkParseError("no request summary line in wrk output")
    out["requests"] = int(m.group(1))
    out["duration_s"] = parse_time_ms(m.group(2)) / 1000.0
    m = re.search(r"^Transfer/sec:\s*(\S+)\s*$", text, re.M)
    out["transfer_bps"] = parse_size_bytes(m.group(1)) if m else 0.0
    for pct in ("50", "75", "90", "99"):
        m = re.search(r"^\s*%s(?:\.0+)?%%\s+(\S+)\s*$" % pct, text, re.M)
        if m:
            out["p%s_ms" % pct] = parse_time_ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] = {"connect": int(m.group(1)), "read": int(m.group(2)),
                         "write": int(m.group(3)), "timeout": int(m.group(4))}
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        out["non_2xx"] = int(m.group(1))
    return out


def median(values):
    """The median of the numbers in <values>, ignoring None. None when no number is left.
    An even count gives the mean of the two middle values."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    mid = len(xs) // 2
    if len(xs) % 2:
        return xs[mid]
    return (xs[mid - 1] + xs[mid]) / 2.0


def ratio(numerator, denominator):
    """numerator / denominator, or None when either is missing or the denominator is not > 0."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def throughput_drop_pct(baseline, under_attack):
    """How much throughput was lost, in percent of <baseline> (negative: it went up).
    None when either figure is missing or the baseline is not > 0."""
    r = ratio(under_attack, baseline)
    if r is None:
        return None
    return (1.0 - r) * 100.0


def parse_loadavg(text):
    """'0.52 0.58 0.59 1/467 12345' (the text of /proc/loadavg) -> (0.52, 0.58, 0.59).
    Raises ValueError on anything else."""
    parts = text.split()
    if len(parts) < 3:
        raise ValueError("not /proc/loadavg: %r" % text)
    return tuple(float(p) for p in parts[:3])


def fmt(value, digits=0, suffix=""):
    """A number for a table cell: '—' for None, else rounded to <digits> with thousands commas."""
    if value is None:
        return "—"
    return "{:,.{d}f}{s}".format(value, d=digits, s=suffix)


def fmt_ratio(value):
    """A ratio for a table cell: '0.53×', or '—' for None."""
    if value is None:
        return "—"
    return "%.2f×" % value


def markdown_table(headers, rows):
    """A GitHub-flavoured Markdown table. <rows> holds lists of cells already formatted as
    strings; a row shorter than <headers> is padded with empty cells, a longer one refused with
    ValueError. '|' inside a cell is escaped."""
    def cell(c):
        return str(c).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        if len(row) > len(headers):
            raise ValueError("row has %d cells, table has %d columns" % (len(row), len(headers)))
        padded = list(row) + [""] * (len(headers) - len(row))
        lines.append("| " + " | ".join(cell(c) for c in padded) + " |")
    return "\n".join(lines)


def summarize(reps):
    """Folds the per-repetition figures of one server into medians.
    <reps> is a list of dicts metric -> number or None; returns metric -> median (None when no
    repetition measured it), plus 'reps': the number of repetitions."""
    keys = []
    for rep in reps:
        for k in rep:
            if k not in keys:
                keys.append(k)
    out = {k: median(rep.get(k) for rep in reps) for k in keys}
    out["reps"] = len(reps)
    return out


def ferry_vs_peers(rows, metrics, ferry_prefix="ferry"):
    """Ratios of each ferry row to each peer of the same interface.
    <rows>: list of dicts with 'name', 'interface', 'status' ('ok' or a reason) and medians.
    <metrics>: metric keys to divide. Returns a list of (ferry_name, peer_name, {metric: ratio}),
    one per (ferry row, peer row) pair where both ran; rows not 'ok' are left out."""
    ok = [r for r in rows if r.get("status") == "ok"]
    ferries = [r for r in ok if r["name"].startswith(ferry_prefix)]
    peers = [r for r in ok if not r["name"].startswith(ferry_prefix)]
    out = []
    for f in ferries:
        for p in peers:
            if p["interface"] != f["interface"]:
                continue
            out.append((f["name"], p["name"], {m: ratio(f.get(m), p.get(m)) for m in metrics}))
    return out


def versus_baseline(rows, baseline_name, metric):
    """Each row's <metric> divided by the baseline row's: {name: ratio or None}.
    All None when the baseline did not run."""
    base = next((r for r in rows if r["name"] == baseline_name and r.get("status") == "ok"), None)
    base_v = base.get(metric) if base else None
    return {r["name"]: (ratio(r.get(metric), base_v) if r.get("status") == "ok" else None)
            for r in rows}


def _row(rows, name):
    return next((r for r in rows if r["name"] == name and r.get("status") == "ok"), None)


def _get(rows, name, metric):
    r = _row(rows, name)
    return r.get(metric) if r else None


def _at_least(label, value, other, factor, other_label):
    """A throughput target: value >= factor * other."""
    r = ratio(value, other)
    if r is None:
        missing = []
        if value is None:
            missing.append("ferry row")
        if other is None or (other is not None and other <= 0):
            missing.append(other_label)
        return {"target": label, "measured": "not measured (%s did not run)" % " and ".join(
            missing), "met": None}
    return {"target": label, "measured": "%.2f× %s" % (r, other_label), "met": r >= factor}


def evaluate_targets(rows):
    """The targets of the bench issue, each {'target', 'measured', 'met'} with met True, False
    or None (could not be measured, which the report prints as 'not met (not measured)').
    Row names used: nginx-return200, nginx-fastcgi-c, ferry-c, ferry-wsgi, ferry-rack,
    gunicorn-sync, uwsgi-python, puma-2x1, puma-0x16, unicorn, passenger-rack (and all peers
    for p99)."""
    t = []
    rps = "rps_ka"
    t.append(_at_least("C hello via ferry ≥ 0.5× nginx return 200 (keep-alive c100)",
                       _get(rows, "ferry-c", rps), _get(rows, "nginx-return200", rps), 0.5,
                       "nginx-return200"))
    t.append(_at_least("C hello via ferry ≥ 2× nginx + FastCGI",
                       _get(rows, "ferry-c", rps), _get(rows, "nginx-fastcgi-c", rps), 2.0,
                       "nginx-fastcgi-c"))
    # WSGI and Rack on the C worker runtime (docs/performance.md): 2× gunicorn sync, 1.5× Puma
    # 2×1 and Unicorn; the earlier 1.5× of Puma's best configuration stays.
    t.append(_at_least("WSGI hello via ferry ≥ 2× gunicorn sync",
                       _get(rows, "ferry-wsgi", rps), _get(rows, "gunicorn-sync", rps), 2.0,
                       "gunicorn-sync"))
    t.append(_at_least("WSGI hello via ferry ≥ 1.0× uWSGI",
                       _get(rows, "ferry-wsgi", rps), _get(rows, "uwsgi-python", rps), 1.0,
                       "uwsgi-python"))
    pumas = [v for v in (_get(rows, "puma-2x1", rps), _get(rows, "puma-0x16", rps))
             if v is not None]
    t.append(_at_least("Rack hello via ferry ≥ 1.5× Puma's best config",
                       _get(rows, "ferry-rack", rps), max(pumas) if pumas else None, 1.5,
                       "best Puma"))
    t.append(_at_least("Rack hello via ferry ≥ 1.5× Puma 2×1",
                       _get(rows, "ferry-rack", rps), _get(rows, "puma-2x1", rps), 1.5,
                       "puma-2x1"))
    t.append(_at_least("Rack hello via ferry ≥ 1.5× Unicorn",
                       _get(rows, "ferry-rack", rps), _get(rows, "unicorn", rps), 1.5,
                       "unicorn"))
    t.append(_at_least("Rack hello via ferry ≥ 2× Passenger",
                       _get(rows, "ferry-rack", rps), _get(rows, "passenger-rack", rps), 2.0,
                       "passenger-rack"))
    for iface in ("c", "wsgi", "rack"):
        fname = "ferry-" + iface
        fp99 = _get(rows, fname, "p99_ka_ms")
        peers = [r for r in rows if r.get("status") == "ok" and r["interface"] == iface
                 and not r["name"].startswith("ferry") and r["name"] != "nginx-return200"
                 and r.get("p99_ka_ms") is not None]
        label = "%s p99 ≤ best %s peer's p99 (c100)" % (fname, IFACE_LABEL[iface])
        if fp99 is None or not peers:
            t.append({"target": label, "measured": "not measured (%s)" % (
                "ferry row did not run" if fp99 is None else "no peer ran"), "met": None})
            continue
        best = min(peers, key=lambda r: r["p99_ka_ms"])
        t.append({"target": label, "measured": "%.2f ms vs %.2f ms (%s)" % (
            fp99, best["p99_ka_ms"], best["name"]), "met": fp99 <= best["p99_ka_ms"]})
    cores = [(n, _get(rows, n, "idle_core_rss_mib")) for n in ("ferry-c", "ferry-wsgi",
                                                              "ferry-rack")]
    cores = [(n, v) for n, v in cores if v is not None]
    if cores:
        worst = max(cores, key=lambda nv: nv[1])
        t.append({"target": "ferry core RSS ≤ 10 MiB idle",
                  "measured": "%.1f MiB (largest, %s)" % (worst[1], worst[0]),
                  "met": worst[1] <= 10.0})
    else:
        t.append({"target": "ferry core RSS ≤ 10 MiB idle",
                  "measured": "not measured (no ferry row ran)", "met": None})
    for iface in ("c", "wsgi", "rack"):
        fname = "ferry-" + iface
        drop = _get(rows, fname, "slowloris_drop_pct")
        label = "1 000 slowloris connections cost %s ≤ 10 %% of throughput" % fname
        if drop is None:
            t.append({"target": label, "measured": "not measured", "met": None})
        else:
            t.append({"target": label, "measured": "%.1f %% drop" % drop, "met": drop <= 10.0})
    return t


def met_label(met):
    """'met' / 'not met' / 'not met (not measured)' for a target's <met> value."""
    if met is True:
        return "met"
    if met is False:
        return "not met"
    return "not met (not measured)"


def callgrind_fn(line):
    """The function name of one line of callgrind_annotate's flat listing
    ('176,132,032 (81.51%)  file.c:func [obj]' -> 'func'), or None when it has none."""
    m = re.match(r"\s*[0-9,]+\s+\(\s*[0-9.]+%\)\s+(?:[*<]\s+)?(\S+)", line)
    if not m:
        return None
    return m.group(1).rsplit(":", 1)[-1]


def _cost(line):
    m = re.match(r"\s*([0-9,]+)", line)
    return int(m.group(1).replace(",", "")) if m else None


def callgrind_callers(tree_text, functions, depth=4):
    """From `callgrind_annotate --tree=caller` output, the blocks (callers + the '*' line) of
    each name in <functions> (None entries ignored), in that order, at most 8 callers each.
    When a block's costliest caller is a C library function (its file starts with './', as
    glibc's do: calloc calling memset), or the function itself costs under a tenth of what
    passes through that caller (a thin wrapper such as fy_xcalloc), that caller's block
    follows, up to <depth> levels, so the chain reaches the code that decides the cost."""
    blocks = [b for b in re.split(r"\n\s*\n", tree_text) if "*" in b]

    def block_of(fn):
        for b in blocks:
            lines = b.strip("\n").splitlines()
            star = [ln for ln in lines if re.search(r"\*\s+\S*:%s(\s|$)" % re.escape(fn), ln)]
            if star:
                callers = [ln for ln in lines if "<" in ln.split("%)", 1)[-1][:6]]
                return callers, star
        return None

    out = []
    for fn in functions:
        level = 0
        while fn and level < depth:
            found = block_of(fn)
            if not found:
                break
            callers, star = found
            out.append("\n".join(callers[:8] + star))
            level += 1
            top = callers[0] if callers else ""
            m = re.search(r"<\s+(\S+)", top)
            if not m:
                break
            through = _cost(top) or 0
            passes_on = through > 0 and _cost(star[0]) < 0.1 * through
            if not (m.group(1).startswith("./") or passes_on):
                break
            fn = callgrind_fn(top)
    return out


def closes_every_response(res):
    """True when a parsed wrk run looks like a server that closes the connection after each
    response without saying so: only read errors, about one per request (uWSGI --http-socket).
    """
    e = res["errors"]
    return (res["requests"] > 0 and e["read"] >= 0.9 * res["requests"]
            and e["connect"] == 0 and e["write"] == 0 and e["timeout"] == 0)


def merge_notes(per_rep):
    """Folds the notes of each repetition (<per_rep>: a list of lists) into one list: a note
    every repetition made appears once as is; others get their repetitions, 'rep 1, 3: ...'."""
    order = []
    seen = {}
    for i, notes in enumerate(per_rep):
        for n in notes:
            if n not in seen:
                seen[n] = []
                order.append(n)
            if i + 1 not in seen[n]:
                seen[n].append(i + 1)
    out = []
    for n in order:
        if len(seen[n]) == len(per_rep):
            out.append(n)
        else:
            out.append("rep %s: %s" % (", ".join(str(r) for r in seen[n]), n))
    return out


# ---------------------------------------------------------------------------------------------
# Session protocol v2 rows (bench/v2rows.py)

def parse_mixed(text):
    """The lines bench/mixed.lua's done() prints after wrk's own output:
        mixed fast count=N p50_us=X p90_us=X p99_us=X max_us=X
        mixed slow count=N ...
        mixed unmatched=N duration_us=D
    Returns {'fast': {count, p50_ms, p90_ms, p99_ms, max_ms, rps}, 'slow': {...},
    'unmatched': int, 'duration_s': float}; a percentile printed as 'nan' (no response on that
    path) is None, and so is rps without a duration. Raises WrkParseError when a line is
    missing."""
    out = {}
    for path in ("fast", "slow"):
        m = re.search(r"^mixed %s count=(\d+) p50_us=(\S+) p90_us=(\S+) p99_us=(\S+) "
                      r"max_us=(\d+)\s*$" % path, text, re.M)
        if not m:
            raise WrkParseError("no `mixed %s` line (bench/mixed.lua's done())" % path)

        def ms(v):
            return None if v == "nan" else float(v) / 1000.0
        out[path] = {"count": int(m.group(1)), "p50_ms": ms(m.group(2)),
                     "p90_ms": ms(m.group(3)), "p99_ms": ms(m.group(4)),
                     "max_ms": float(m.group(5)) / 1000.0}
    m = re.search(r"^mixed unmatched=(\d+) duration_us=(\d+)\s*$", text, re.M)
    if not m:
        raise WrkParseError("no `mixed unmatched=` line (bench/mixed.lua's done())")
    out["unmatched"] = int(m.group(1))
    out["duration_s"] = int(m.group(2)) / 1e6
    for path in ("fast", "slow"):
        out[path]["rps"] = (out[path]["count"] / out["duration_s"]
                            if out["duration_s"] > 0 else None)
    return out


def parse_proc_stat_ticks(text):
    """(utime, stime) in clock ticks from the text of /proc/PID/stat (fields 14 and 15; the
    command name in parentheses may hold spaces). Raises ValueError on anything else."""
    if ")" not in text:
        raise ValueError("not /proc/PID/stat: %r" % text[:60])
    rest = text.rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state), so field N is rest[N - 3].
    if len(rest) < 13:
        raise ValueError("/proc/PID/stat too short")
    return int(rest[11]), int(rest[12])


def per_request_us(ticks, clk_tck, requests):
    """CPU microseconds per request from a delta of <ticks> (clock ticks, <clk_tck> a second)
    over <requests>; None when either is missing or requests is not > 0."""
    if ticks is None or not requests or requests <= 0 or not clk_tck:
        return None
    return ticks * 1e6 / clk_tck / requests


def parse_perf_stat_count(text, event="raw_syscalls:sys_enter"):
    """The count of <event> in `perf stat -x,` output (CSV on stderr: value,unit,event,...),
    summed over the lines naming it; None when perf printed `<not counted>`/`<not supported>`
    or no such line."""
    total = None
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) >= 3 and parts[2].strip() == event:
            v = parts[0].strip()
            if not v.isdigit():
                return None
            total = (total or 0) + int(v)
    return total


def parse_strace_summary(text, successful=False):
    """{syscall: calls} from the table `strace -c` writes (its -o file): the rows between the
    dashed lines, without the `total` row; with <successful>, calls minus the errors column
    (an accept4 that found nothing waiting fails with EAGAIN). Lines it does not understand
    are skipped."""
    calls = {}
    for line in text.splitlines():
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(parts) < 5 or parts[-1] == "total" or line.startswith("%") or "----" in line:
            continue
        try:
            float(parts[0])
            n = int(parts[3])
            errors = int(parts[4]) if len(parts) >= 6 else 0
        except ValueError:
            continue
        if successful:
            n -= errors
        calls[parts[-1]] = calls.get(parts[-1], 0) + n
    return calls


def top_per_request(calls, requests, n=6):
    """'read 1.00, writev 1.00, epoll_wait 0.52' — the <n> most frequent system calls of
    <calls> ({name: count}) per request, or '—' when nothing was counted."""
    if not calls or not requests or requests <= 0:
        return "—"
    top = sorted(calls.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return ", ".join("%s %.2f" % (k, v / requests) for k, v in top)


def protocol_in_effect(accepts):
    """What the workers' successful accepts per request say about the core ⇄ worker protocol
    actually used: ≥ 0.5 is v1 (a connection per request), ≤ 0.05 a persistent session (v2),
    in between mixed; None when not counted."""
    if accepts is None:
        return None
    if accepts >= 0.5:
        return "v1 (%.2f accepts/request)" % accepts
    if accepts <= 0.05:
        return "persistent, v2 (%.2f accepts/request)" % accepts
    return "mixed (%.2f accepts/request)" % accepts


# ---------------------------------------------------------------------------------------------
# bench/loadgen.c and the cycle-time row (docs/performance.md, "Cycle time at c100")

LOADGEN_KEYS = ("requests", "errors", "error_kinds", "non_2xx", "connects", "retries",
                "connections", "duration_s", "rps", "cycle_ms", "write_ms")
LOADGEN_PCTS = ("p50", "p90", "p99", "p99.9", "max", "mean")


def parse_loadgen(text):
    """The JSON line bench/loadgen.c prints (the last line starting with '{'). Raises ValueError
    when there is none or it lacks a field."""
    import json
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    if not lines:
        raise ValueError("no JSON line in loadgen output")
    doc = json.loads(lines[-1])
    missing = [k for k in LOADGEN_KEYS if k not in doc]
    for k in ("cycle_ms", "write_ms"):
        if k in doc:
            missing += ["%s.%s" % (k, p) for p in LOADGEN_PCTS if p not in doc[k]]
    if missing:
        raise ValueError("loadgen output lacks %s" % ", ".join(missing))
    return doc


def loadgen_figures(res):
    """The figures of one loadgen run that the cycle row keeps (flat, so summarize() can take
    their medians)."""
    c, w = res["cycle_ms"], res["write_ms"]
    req = res["requests"]
    return {"rps": res["rps"], "requests": req, "errors": res["errors"],
            "cycle_p50_ms": c["p50"], "cycle_p90_ms": c["p90"], "cycle_p99_ms": c["p99"],
            "cycle_p999_ms": c["p99.9"], "cycle_max_ms": c["max"], "cycle_mean_ms": c["mean"],
            "write_p50_ms": w["p50"], "write_p99_ms": w["p99"], "write_mean_ms": w["mean"],
            "connects_per_req": ratio(res["connects"], req),
            # Little's law for a closed loop: each connection is always in some request's
            # cycle, so the mean cycle should be connections ÷ throughput.
            "little_ms": ratio(res["connections"] * 1000.0, res["rps"])}


def cycle_verdicts(rows):
    """Per interface (wsgi, rack): ferry's cycle-time p99 against the best (lowest) peer's,
    and ferry ÷ that peer for p99, p50 and req/s. A list of dicts; 'met' is None when the ferry
    row or every peer is missing."""
    out = []
    ok = [r for r in rows if r.get("status") == "ok" and r.get("cycle_p99_ms") is not None]
    for iface in ("wsgi", "rack"):
        f = next((r for r in ok if r["interface"] == iface and r["name"].startswith("ferry")),
                 None)
        peers = [r for r in ok if r["interface"] == iface and not r["name"].startswith("ferry")]
        v = {"interface": iface, "ferry": f["name"] if f else None, "met": None,
             "label": "ferry-%s cycle-time p99 ≤ best %s peer's (c100)" % (iface,
                                                                           IFACE_LABEL[iface])}
        if f and peers:
            best = min(peers, key=lambda r: r["cycle_p99_ms"])
            v.update(best=best["name"], ferry_p99=f["cycle_p99_ms"], best_p99=best["cycle_p99_ms"],
                     p99_ratio=ratio(f["cycle_p99_ms"], best["cycle_p99_ms"]),
                     p50_ratio=ratio(f.get("cycle_p50_ms"), best.get("cycle_p50_ms")),
                     rps_ratio=ratio(f.get("rps"), best.get("rps")),
                     met=f["cycle_p99_ms"] <= best["cycle_p99_ms"])
        out.append(v)
    return out


def cycle_paired_ratios(rows, metric="cycle_p99_ms"):
    """ferry ÷ peer of <metric> repetition by repetition (per_rep lists), for each ferry row and
    each peer of its interface: [{'ferry', 'peer', 'ratios', 'median', 'wins'}], wins being the
    repetitions where ferry's figure was ≤ the peer's."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("per_rep")]
    out = []
    for f in (r for r in ok if r["name"].startswith("ferry")):
        for p in (r for r in ok if r["interface"] == f["interface"]
                  and not r["name"].startswith("ferry")):
            rs = [ratio(a.get(metric), b.get(metric)) for a, b in zip(f["per_rep"], p["per_rep"])]
            rs = [x for x in rs if x is not None]
            if rs:
                out.append({"ferry": f["name"], "peer": p["name"], "ratios": rs,
                            "median": median(rs), "wins": sum(1 for x in rs if x <= 1.0)})
    return out


def cycle_report_md(cyc):
    """The markdown section of the cycle-time row: <cyc> is {'rows', 'conns', 'duration',
    'threads', 'reps'} as bench/run.py's cycle_row returns it."""
    rows = cyc.get("rows", [])
    L = ["## Cycle time: WSGI and Rack at c100, reconnects timed (bench/loadgen.c)\n"]
    if not rows:
        L.append("Not run (--no-cycle-row).\n")
        return "\n".join(L) + "\n"
    L.append("`loadgen -c%d -t%d -d%d` on `GET /hello`, %d repetitions, the servers alternating "
             "within each repetition (medians). **cycle**: from the moment the client is ready "
             "to send (the end of the previous response on that connection) to the last byte "
             "of the response, so a reconnect the server forces (it closes after every "
             "response) is inside it; **write**: from the request's write to the last byte, "
             "which is what wrk times. `c÷rps` is connections ÷ throughput, the mean cycle "
             "Little's law predicts for a closed loop: when the mean cycle matches it, no time "
             "went untimed. `connects/req` 1.00 means a new connection for every request.\n" % (
                 cyc.get("conns", 100), cyc.get("threads", 2), cyc.get("duration", 0),
                 cyc.get("reps", 0)))
    f = fmt
    L.append(markdown_table(
        ["server", "if", "req/s", "cycle p50 ms", "cycle p90 ms", "cycle p99 ms",
         "cycle p99.9 ms", "cycle mean ms", "c÷rps ms", "write p50 ms", "write p99 ms",
         "connects/req", "errors", "status"],
        [[r["name"], r["interface"], f(r.get("rps")), f(r.get("cycle_p50_ms"), 2),
          f(r.get("cycle_p90_ms"), 2), f(r.get("cycle_p99_ms"), 2),
          f(r.get("cycle_p999_ms"), 2), f(r.get("cycle_mean_ms"), 2), f(r.get("little_ms"), 2),
          f(r.get("write_p50_ms"), 2), f(r.get("write_p99_ms"), 2),
          f(r.get("connects_per_req"), 2), f(r.get("errors")), r.get("status", "?")]
         for r in rows]))
    L.append("")
    verdicts = cycle_verdicts(rows)
    cyc["verdicts"] = verdicts
    L.append("### Ferry ÷ the best peer by cycle-time p99\n")
    L.append(markdown_table(
        ["target", "measured", "p99 ratio", "p50 ratio", "req/s ratio", "verdict"],
        [[v["label"], "%s vs %s ms (%s)" % (f(v.get("ferry_p99"), 2), f(v.get("best_p99"), 2),
                                              v.get("best")) if v["met"] is not None
          else "not measured", fmt_ratio(v.get("p99_ratio")), fmt_ratio(v.get("p50_ratio")),
          fmt_ratio(v.get("rps_ratio")), "**%s**" % met_label(v["met"])] for v in verdicts]))
    L.append("\nRatios are ferry ÷ peer: p99 and p50 lower is better, req/s higher is better.\n")
    paired = cycle_paired_ratios(rows)
    cyc["paired"] = paired
    if paired:
        L.append("Cycle-time p99, ferry ÷ each peer within the same repetition (the two ran "
                 "minutes apart at most, so a drift of the machine's load hits both alike):\n")
        L.append(markdown_table(
            ["ferry", "peer", "each repetition", "median", "repetitions ferry ≤ peer"],
            [[p["ferry"], p["peer"], " / ".join(fmt_ratio(x) for x in p["ratios"]),
              fmt_ratio(p["median"]), "%d of %d" % (p["wins"], len(p["ratios"]))]
             for p in paired]))
        L.append("")
    per = []
    for r in rows:
        for i, rep in enumerate(r.get("per_rep", [])):
            per.append([r["name"], str(i + 1), f(rep.get("rps")), f(rep.get("cycle_p50_ms"), 2),
                        f(rep.get("cycle_p99_ms"), 2), f(rep.get("write_p99_ms"), 2),
                        f(rep.get("loadavg"), 2)])
    if per:
        L.append("Each repetition:\n")
        L.append(markdown_table(["server", "rep", "req/s", "cycle p50 ms", "cycle p99 ms",
                                 "write p99 ms", "load after"], per))
        L.append("")
    notes = ["%s: %s" % (r["name"], n) for r in rows for n in r.get("notes", [])]
    if notes:
        L.append("Notes: " + "; ".join(notes) + "\n")
    return "\n".join(L) + "\n"
