"""The bench harness's pure functions (bench/benchlib.py): wrk parsing, medians, ratios, targets,
tables. Fast (no process, no socket); runs in `make test` with the other pytest files."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))

import benchlib  # noqa: E402

WRK_LATENCY = """Running 1s test @ http://127.0.0.1:18600/hello
  2 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   613.36us    1.32ms  16.09ms   88.16%
    Req/Sec    64.17k    18.77k  126.11k    85.71%
  Latency Distribution
     50%   37.00us
     75%  497.00us
     90%    2.21ms
     99%    5.80ms
  134335 requests in 1.10s, 20.50MB read
Requests/sec: 122050.83
Transfer/sec:     18.62MB
"""

WRK_NON_2XX = """Running 1s test @ http://127.0.0.1:18600/boom
  1 threads and 5 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   136.81us  321.93us   4.58ms   96.03%
    Req/Sec    32.41k     3.89k   36.69k    63.64%
  Latency Distribution
     50%   85.00us
     75%  104.00us
     90%  116.00us
     99%    1.78ms
  35490 requests in 1.13s, 11.47MB read
  Non-2xx or 3xx responses: 35490
Requests/sec:  31302.67
Transfer/sec:     10.12MB
"""

WRK_SOCKET_ERRORS = """Running 2s test @ http://127.0.0.1:18557/hello
  2 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    17.59ms   10.48ms  68.43ms   65.25%
    Req/Sec     2.72k   563.35     4.04k    65.00%
  11049 requests in 2.04s, 830.83KB read
  Socket errors: connect 0, read 10999, write 0, timeout 3
Requests/sec:   5417.76
Transfer/sec:    407.39KB
"""

WRK_NOTHING = "unable to connect to 127.0.0.1:18600 Connection refused\n"


def test_parse_wrk_reads_rate_and_latency_percentiles():
    r = benchlib.parse_wrk(WRK_LATENCY)
    assert r["rps"] == pytest.approx(122050.83)
    assert r["requests"] == 134335
    assert r["duration_s"] == pytest.approx(1.10)
    assert r["p50_ms"] == pytest.approx(0.037)
    assert r["p75_ms"] == pytest.approx(0.497)
    assert r["p90_ms"] == pytest.approx(2.21)
    assert r["p99_ms"] == pytest.approx(5.80)
    assert r["transfer_bps"] == pytest.approx(18.62 * 1024 * 1024)
    assert r["non_2xx"] == 0
    assert r["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}


def test_parse_wrk_counts_non_2xx_responses():
    assert benchlib.parse_wrk(WRK_NON_2XX)["non_2xx"] == 35490


def test_parse_wrk_reads_socket_errors_and_no_percentiles_without_latency_flag():
    r = benchlib.parse_wrk(WRK_SOCKET_ERRORS)
    assert r["errors"] == {"connect": 0, "read": 10999, "write": 0, "timeout": 3}
    assert r["p99_ms"] is None
    assert r["transfer_bps"] == pytest.approx(407.39 * 1024)


def test_parse_wrk_refuses_output_without_requests_per_second():
    with pytest.raises(benchlib.WrkParseError):
        benchlib.parse_wrk(WRK_NOTHING)


def test_parse_wrk_refuses_output_without_request_summary():
    with pytest.raises(benchlib.WrkParseError):
        benchlib.parse_wrk("Requests/sec: 12.0\n")


@pytest.mark.parametrize("text,ms", [("812.00us", 0.812), ("1.20ms", 1.2), ("2.00s", 2000.0),
                                     ("1.00m", 60000.0), ("3us", 0.003)])
def test_parse_time_ms_converts_every_wrk_unit(text, ms):
    assert benchlib.parse_time_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["", "12", "1.2ns", "ms", "-1ms", "1.2 parsecs"])
def test_parse_time_ms_refuses_garbage(text):
    with pytest.raises(benchlib.WrkParseError):
        benchlib.parse_time_ms(text)


def test_parse_size_bytes_uses_powers_of_1024_and_refuses_garbage():
    assert benchlib.parse_size_bytes("1.50MB") == pytest.approx(1.5 * 1024 * 1024)
    assert benchlib.parse_size_bytes("512.00B") == 512.0
    with pytest.raises(benchlib.WrkParseError):
        benchlib.parse_size_bytes("12 bytes")


def test_median_of_odd_and_even_counts_ignoring_none():
    assert benchlib.median([3, 1, 2]) == 2
    assert benchlib.median([4, 1, 3, 2]) == 2.5
    assert benchlib.median([None, 5, None]) == 5
    assert benchlib.median([]) is None
    assert benchlib.median([None]) is None


def test_ratio_is_none_when_a_side_is_missing_or_denominator_not_positive():
    assert benchlib.ratio(10, 4) == 2.5
    assert benchlib.ratio(None, 4) is None
    assert benchlib.ratio(10, None) is None
    assert benchlib.ratio(10, 0) is None


def test_throughput_drop_pct():
    assert benchlib.throughput_drop_pct(1000, 900) == pytest.approx(10.0)
    assert benchlib.throughput_drop_pct(1000, 0) == pytest.approx(100.0)
    assert benchlib.throughput_drop_pct(1000, 1100) == pytest.approx(-10.0)
    assert benchlib.throughput_drop_pct(0, 5) is None


def test_parse_loadavg_reads_three_averages_and_refuses_garbage():
    assert benchlib.parse_loadavg("0.52 0.58 0.59 1/467 12345\n") == (0.52, 0.58, 0.59)
    with pytest.raises(ValueError):
        benchlib.parse_loadavg("0.5")


def test_summarize_takes_medians_per_metric():
    s = benchlib.summarize([{"rps_ka": 10, "p99_ka_ms": 3.0}, {"rps_ka": 30, "p99_ka_ms": None},
                            {"rps_ka": 20}])
    assert s == {"rps_ka": 20, "p99_ka_ms": 3.0, "reps": 3}


def rows_fixture():
    return [
        {"name": "nginx-return200", "interface": "c", "status": "ok", "rps_ka": 100000.0,
         "p99_ka_ms": 1.0},
        {"name": "nginx-fastcgi-c", "interface": "c", "status": "ok", "rps_ka": 20000.0,
         "p99_ka_ms": 8.0},
        {"name": "ferry-c", "interface": "c", "status": "ok", "rps_ka": 60000.0,
         "p99_ka_ms": 5.0, "idle_core_rss_mib": 6.0, "slowloris_drop_pct": 12.0},
        {"name": "ferry-wsgi", "interface": "wsgi", "status": "ok", "rps_ka": 9000.0,
         "p99_ka_ms": 30.0, "idle_core_rss_mib": 7.5, "slowloris_drop_pct": 3.0},
        {"name": "gunicorn-sync", "interface": "wsgi", "status": "ok", "rps_ka": 5000.0,
         "p99_ka_ms": 20.0},
        {"name": "uwsgi-python", "interface": "wsgi", "status": "failed to start: boom"},
        {"name": "puma-2x1", "interface": "rack", "status": "ok", "rps_ka": 4000.0},
        {"name": "puma-0x16", "interface": "rack", "status": "ok", "rps_ka": 6000.0},
        {"name": "ferry-rack", "interface": "rack", "status": "skipped: ruby missing"},
    ]


def test_versus_baseline_divides_by_nginx_and_leaves_failed_rows_empty():
    v = benchlib.versus_baseline(rows_fixture(), "nginx-return200", "rps_ka")
    assert v["nginx-return200"] == 1.0
    assert v["ferry-c"] == pytest.approx(0.6)
    assert v["uwsgi-python"] is None


def test_versus_baseline_is_all_none_without_the_baseline():
    rows = [r for r in rows_fixture() if r["name"] != "nginx-return200"]
    assert set(benchlib.versus_baseline(rows, "nginx-return200", "rps_ka").values()) == {None}


def test_ferry_vs_peers_pairs_only_rows_that_ran_with_the_same_interface():
    pairs = benchlib.ferry_vs_peers(rows_fixture(), ["rps_ka"])
    names = [(f, p) for f, p, _ in pairs]
    assert names == [("ferry-c", "nginx-return200"), ("ferry-c", "nginx-fastcgi-c"),
                     ("ferry-wsgi", "gunicorn-sync")]
    assert pairs[1][2]["rps_ka"] == pytest.approx(3.0)


def targets_by_name(rows):
    return {t["target"]: t for t in benchlib.evaluate_targets(rows)}


def test_targets_met_not_met_and_not_measured():
    t = targets_by_name(rows_fixture())
    assert t["C hello via ferry ≥ 0.5× nginx return 200 (keep-alive c100)"]["met"] is True
    assert t["C hello via ferry ≥ 2× nginx + FastCGI"]["met"] is True
    assert t["WSGI hello via ferry ≥ 2× gunicorn sync"]["met"] is False  # 9000 / 5000 = 1.8
    assert t["WSGI hello via ferry ≥ 1.0× uWSGI"]["met"] is None
    assert t["Rack hello via ferry ≥ 1.5× Puma's best config"]["met"] is None
    assert t["ferry-c p99 ≤ best C peer's p99 (c100)"]["met"] is True
    assert t["ferry-wsgi p99 ≤ best WSGI peer's p99 (c100)"]["met"] is False
    assert t["ferry core RSS ≤ 10 MiB idle"]["met"] is True
    assert "7.5 MiB" in t["ferry core RSS ≤ 10 MiB idle"]["measured"]
    assert t["1 000 slowloris connections cost ferry-c ≤ 10 % of throughput"]["met"] is False
    assert t["1 000 slowloris connections cost ferry-wsgi ≤ 10 % of throughput"]["met"] is True
    assert t["1 000 slowloris connections cost ferry-rack ≤ 10 % of throughput"]["met"] is None


def test_rack_target_uses_the_best_puma_config():
    rows = rows_fixture()
    rows[-1] = {"name": "ferry-rack", "interface": "rack", "status": "ok", "rps_ka": 8000.0}
    t = targets_by_name(rows)["Rack hello via ferry ≥ 1.5× Puma's best config"]
    assert t["met"] is False  # 8000 / 6000 = 1.33, below 1.5
    assert t["measured"].startswith("1.33×")
    t = targets_by_name(rows)["Rack hello via ferry ≥ 1.5× Puma 2×1"]
    assert t["met"] is True  # 8000 / 4000
    assert targets_by_name(rows)["Rack hello via ferry ≥ 1.5× Unicorn"]["met"] is None
    rows.append({"name": "unicorn", "interface": "rack", "status": "ok", "rps_ka": 6000.0})
    assert targets_by_name(rows)["Rack hello via ferry ≥ 1.5× Unicorn"]["met"] is False


def test_met_label():
    assert benchlib.met_label(True) == "met"
    assert benchlib.met_label(False) == "not met"
    assert benchlib.met_label(None) == "not met (not measured)"


def test_markdown_table_pads_short_rows_escapes_pipes_and_refuses_long_rows():
    t = benchlib.markdown_table(["a", "b"], [["x|y"], ["1", "2"]])
    assert t.splitlines() == ["| a | b |", "|---|---|", "| x\\|y |  |", "| 1 | 2 |"]
    with pytest.raises(ValueError):
        benchlib.markdown_table(["a"], [["1", "2"]])


def test_fmt_and_fmt_ratio():
    assert benchlib.fmt(None) == "—"
    assert benchlib.fmt(12345.6) == "12,346"
    assert benchlib.fmt(1.234, 2, " %") == "1.23 %"
    assert benchlib.fmt_ratio(0.534) == "0.53×"
    assert benchlib.fmt_ratio(None) == "—"


CALLGRIND_FLAT_LINE = ("176,132,032 (81.51%)  ./string/../sysdeps/x86_64/multiarch/memset-vec-"
                       "unaligned-erms.S:__memset_avx2_unaligned_erms [/usr/lib/libc.so.6]")

CALLGRIND_TREE = """--------------------------------------------------------------------------------
Ir                file:function
--------------------------------------------------------------------------------

144,637 (19.74%)  < ./elf/./elf/dl-lookup.c:_dl_lookup_symbol_x (362x) [/usr/lib/ld.so]
100,992 (13.79%)  *  ./elf/./elf/dl-lookup.c:do_lookup_x [/usr/lib/ld.so]

 31,728 ( 4.33%)  < ./malloc/./malloc/malloc.c:malloc (237x) [/usr/lib/libc.so.6]
    346 ( 0.05%)  < ./malloc/./malloc/malloc.c:tcache_init.part.0 (1x) [/usr/lib/libc.so.6]
 30,903 ( 4.22%)  *  ./malloc/./malloc/malloc.c:_int_malloc [/usr/lib/libc.so.6]
"""


def test_callgrind_fn_takes_the_function_name_of_a_flat_line():
    assert benchlib.callgrind_fn(CALLGRIND_FLAT_LINE) == "__memset_avx2_unaligned_erms"
    assert benchlib.callgrind_fn("  2,624,201 ( 1.21%)  ???:fy_reqblock_add [ferry]") == \
        "fy_reqblock_add"
    assert benchlib.callgrind_fn("-----------") is None


def test_callgrind_callers_returns_the_block_of_each_function_in_order():
    blocks = benchlib.callgrind_callers(CALLGRIND_TREE, ["_int_malloc", None, "do_lookup_x",
                                                         "absent_fn"])
    assert len(blocks) == 2
    assert blocks[0].splitlines()[0].endswith("malloc.c:malloc (237x) [/usr/lib/libc.so.6]")
    assert blocks[0].splitlines()[-1].strip().endswith("_int_malloc [/usr/lib/libc.so.6]")
    assert len(blocks[0].splitlines()) == 3
    assert "do_lookup_x" in blocks[1].splitlines()[-1]


CALLGRIND_CHAIN = """
243,375,737 (81.50%)  < ./malloc/./malloc/malloc.c:calloc (3,705x) [/usr/lib/libc.so.6]
         96 ( 0.00%)  < ./time/./time/strftime_l.c:__strftime_internal (6x) [/usr/lib/libc.so.6]
243,375,894 (81.50%)  *  ./string/memset-vec-unaligned-erms.S:__memset_avx2 [/usr/lib/libc.so.6]

243,000,000 (81.40%)  < ???:fy_xcalloc (3,705x) [ferry]
    230,067 ( 0.08%)  *  ./malloc/./malloc/malloc.c:calloc [/usr/lib/libc.so.6]

243,000,000 (81.40%)  < ???:fy_http_conn_new (3,705x) [ferry]
     12,000 ( 0.00%)  *  ???:fy_xcalloc [ferry]
"""


def test_callgrind_callers_follows_a_libc_caller_up_to_the_program():
    blocks = benchlib.callgrind_callers(CALLGRIND_CHAIN, ["__memset_avx2"])
    assert len(blocks) == 3  # fy_http_conn_new has no block of its own: the chain ends
    assert "calloc (3,705x)" in blocks[0]
    assert "fy_xcalloc (3,705x)" in blocks[1]
    assert "fy_http_conn_new (3,705x)" in blocks[2]


def test_callgrind_callers_stops_at_depth():
    assert len(benchlib.callgrind_callers(CALLGRIND_CHAIN, ["__memset_avx2"], depth=1)) == 1


def test_callgrind_callers_follows_thin_wrappers_but_stops_at_real_work():
    chain = CALLGRIND_CHAIN + """
243,000,000 (81.40%)  < ???:on_accept (3,705x) [ferry]
  1,000,000 ( 0.40%)  *  ???:fy_http_conn_new [ferry]

243,500,000 (81.50%)  < ???:uv__io_poll (3,705x) [libuv.so]
  90,000,000 (30.00%)  *  ???:on_accept [ferry]

300,000,000 (99.00%)  < ???:uv_run (1x) [libuv.so]
  1,000,000 ( 0.40%)  *  ???:uv__io_poll [libuv.so]
"""
    blocks = benchlib.callgrind_callers(chain, ["__memset_avx2"], depth=10)
    # memset -> calloc (libc) -> fy_xcalloc -> fy_http_conn_new (both cost little of what
    # passes through them) -> on_accept, which does real work itself: the chain stops there.
    assert [b.splitlines()[-1].split(":")[-1].split()[0] for b in blocks] == [
        "__memset_avx2", "calloc", "fy_xcalloc", "fy_http_conn_new", "on_accept"]


def test_closes_every_response_spots_read_errors_on_every_request():
    r = benchlib.parse_wrk(WRK_SOCKET_ERRORS.replace("timeout 3", "timeout 0"))
    assert benchlib.closes_every_response(r) is True
    assert benchlib.closes_every_response(benchlib.parse_wrk(WRK_SOCKET_ERRORS)) is False
    assert benchlib.closes_every_response(benchlib.parse_wrk(WRK_LATENCY)) is False


def test_merge_notes_keeps_common_notes_once_and_tags_the_others():
    merged = benchlib.merge_notes([["a", "b"], ["a"], ["a", "c", "b"]])
    assert merged == ["a", "rep 1, 3: b", "rep 3: c"]
    assert benchlib.merge_notes([]) == []


# ---- session protocol v2 rows (bench/v2rows.py) ---------------------------------------------

MIXED_OUT = """Running 5s test @ http://127.0.0.1:18600/mix/fast
  2 threads and 100 connections
Requests/sec:   1000.00
mixed fast count=950 p50_us=1200 p90_us=2500 p99_us=9100 max_us=20000
mixed slow count=50 p50_us=200400 p90_us=201000 p99_us=215000 max_us=230000
mixed unmatched=0 duration_us=5000000
"""


def test_parse_mixed_reads_both_paths_and_derives_rps():
    m = benchlib.parse_mixed(MIXED_OUT)
    assert m["fast"] == {"count": 950, "p50_ms": 1.2, "p90_ms": 2.5, "p99_ms": 9.1,
                         "max_ms": 20.0, "rps": 190.0}
    assert m["slow"]["p99_ms"] == 215.0 and m["slow"]["rps"] == 10.0
    assert m["unmatched"] == 0 and m["duration_s"] == 5.0


def test_parse_mixed_nan_percentile_is_none_and_zero_duration_has_no_rps():
    text = MIXED_OUT.replace("p99_us=215000", "p99_us=nan").replace(
        "duration_us=5000000", "duration_us=0")
    m = benchlib.parse_mixed(text)
    assert m["slow"]["p99_ms"] is None
    assert m["fast"]["rps"] is None and m["slow"]["rps"] is None


@pytest.mark.parametrize("missing", ["mixed fast", "mixed slow", "mixed unmatched"])
def test_parse_mixed_without_a_line_raises(missing):
    text = "\n".join(line for line in MIXED_OUT.splitlines() if not line.startswith(missing))
    with pytest.raises(benchlib.WrkParseError):
        benchlib.parse_mixed(text)


def test_parse_proc_stat_ticks_survives_spaces_and_parens_in_the_name():
    fields = ["S"] + [str(i) for i in range(4, 14)] + ["1234", "567"] + ["0"] * 30
    text = "4242 (ferry (x) y) " + " ".join(fields)
    assert benchlib.parse_proc_stat_ticks(text) == (1234, 567)


@pytest.mark.parametrize("text", ["not a stat line", "42 (ferry) S 1 2 3"])
def test_parse_proc_stat_ticks_refuses_other_text(text):
    with pytest.raises(ValueError):
        benchlib.parse_proc_stat_ticks(text)


def test_per_request_us():
    assert benchlib.per_request_us(200, 100, 1000) == 2000.0
    assert benchlib.per_request_us(None, 100, 1000) is None
    assert benchlib.per_request_us(200, 100, 0) is None
    assert benchlib.per_request_us(200, 0, 10) is None


def test_parse_perf_stat_count_sums_lines_and_knows_not_counted():
    text = "123,,raw_syscalls:sys_enter,1000,100.00,,\n77,,raw_syscalls:sys_enter,1,1,,\n" \
           "5,,cycles,1,1,,\n"
    assert benchlib.parse_perf_stat_count(text) == 200
    assert benchlib.parse_perf_stat_count("<not counted>,,raw_syscalls:sys_enter,0,0,,") is None
    assert benchlib.parse_perf_stat_count("5,,cycles,1,1,,") is None


STRACE_C = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 40.00    0.004000           4      1000           writev
 30.00    0.003000           3      1000       250 accept4
 30.00    0.003000           3       500           epoll_wait
------ ----------- ----------- --------- --------- ----------------
100.00    0.010000           4      2500       250 total
"""


def test_parse_strace_summary_counts_calls_and_successes():
    assert benchlib.parse_strace_summary(STRACE_C) == {"writev": 1000, "accept4": 1000,
                                                      "epoll_wait": 500}
    assert benchlib.parse_strace_summary(STRACE_C, successful=True)["accept4"] == 750


def test_top_per_request_orders_by_count_then_name():
    calls = {"writev": 1000, "read": 1000, "epoll_wait": 500, "close": 10}
    assert benchlib.top_per_request(calls, 1000, n=3) == "read 1.00, writev 1.00, epoll_wait 0.50"
    assert benchlib.top_per_request({}, 1000) == "—"
    assert benchlib.top_per_request(calls, 0) == "—"


@pytest.mark.parametrize("accepts,word", [(1.0, "v1"), (0.5, "v1"), (0.01, "persistent, v2"),
                                          (0.2, "mixed")])
def test_protocol_in_effect(accepts, word):
    assert benchlib.protocol_in_effect(accepts).startswith(word)


def test_protocol_in_effect_unknown():
    assert benchlib.protocol_in_effect(None) is None
