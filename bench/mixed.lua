-- wrk script for the mixed run (bench/v2rows.py): every 20th request of each wrk thread goes to
-- /mix/slow (the app sleeps 200 ms), the others to /mix/fast. Each request carries its send time
-- (CLOCK_MONOTONIC, microseconds) in its query string, which the app sends back as the body, so
-- response() knows which path it answers and how long it took; wrk's own latency figures mix
-- both paths. Per thread, latencies go into a histogram with buckets 1 % wide; done() merges
-- the threads' and prints one line per path:
--   mixed <path> count=N p50_us=X p90_us=X p99_us=X max_us=X
-- and `mixed unmatched=N duration_us=D` (responses whose body was not a time of ours).
-- Arguments (after --): EVERY (default 20: one request in EVERY goes to the slow path) and
-- PACE_MS (default 0): each connection waits that long after a response before its next request,
-- so the offered load is about connections / (PACE_MS + latency) instead of as fast as the
-- server answers. wrk decides whether delay() exists before init() runs, so it always exists
-- and returns 0 when there is no pace.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")
local CLOCK_MONOTONIC = 1

local function now_us()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local LOG_STEP = math.log(1.01)

local function bucket(us)
    if us < 1 then us = 1 end
    return math.floor(math.log(us) / LOG_STEP)
end

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    every = tonumber(args[1]) or 20
    pace = tonumber(args[2]) or 0
    sent = 0
    unmatched = 0
    hist_fast = {}
    hist_slow = {}
    count_fast = 0
    count_slow = 0
    max_fast = 0
    max_slow = 0
end

function request()
    sent = sent + 1
    local kind = (sent % every == 0) and "s" or "f"
    local path = (kind == "s") and "/mix/slow?s" or "/mix/fast?f"
    return wrk.format("GET", path .. now_us())
end

function delay()
    return pace
end

function response(status, headers, body)
    local kind, t = string.match(body or "", "^([fs])(%d+)$")
    if not kind or status ~= 200 then
        unmatched = unmatched + 1
        return
    end
    local lat = now_us() - tonumber(t)
    local b = bucket(lat)
    if kind == "f" then
        hist_fast[b] = (hist_fast[b] or 0) + 1
        count_fast = count_fast + 1
        if lat > max_fast then max_fast = lat end
    else
        hist_slow[b] = (hist_slow[b] or 0) + 1
        count_slow = count_slow + 1
        if lat > max_slow then max_slow = lat end
    end
end

local function percentiles(name, merged, count, max)
    local keys = {}
    for k in pairs(merged) do table.insert(keys, k) end
    table.sort(keys)
    local want = {50, 90, 99}
    local out = {}
    local seen = 0
    local wi = 1
    for _, k in ipairs(keys) do
        seen = seen + merged[k]
        while wi <= #want and seen >= count * want[wi] / 100 do
            -- the bucket's upper edge, capped by the largest latency seen
            out[want[wi]] = math.min(math.exp((k + 1) * LOG_STEP), max)
            wi = wi + 1
        end
    end
    local function f(p) return out[p] and string.format("%.0f", out[p]) or "nan" end
    io.write(string.format("mixed %s count=%d p50_us=%s p90_us=%s p99_us=%s max_us=%d\n",
        name, count, f(50), f(90), f(99), max))
end

function done(summary, latency, requests)
    local mf, ms = {}, {}
    local cf, cs, xf, xs, un = 0, 0, 0, 0, 0
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("hist_fast")) do mf[k] = (mf[k] or 0) + v end
        for k, v in pairs(t:get("hist_slow")) do ms[k] = (ms[k] or 0) + v end
        cf = cf + t:get("count_fast")
        cs = cs + t:get("count_slow")
        xf = math.max(xf, t:get("max_fast"))
        xs = math.max(xs, t:get("max_slow"))
        un = un + t:get("unmatched")
    end
    percentiles("fast", mf, cf, xf)
    percentiles("slow", ms, cs, xs)
    io.write(string.format("mixed unmatched=%d duration_us=%d\n", un, summary.duration))
end
