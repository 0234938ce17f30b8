# frozen_string_literal: true

# No leak per request: 20 000 requests (GET /hello, and a POST with a body every tenth) through
# one worker; its RSS after them is within a small bound of its RSS after a warm-up.
require_relative 'helper'

class MemoryTest < Minitest::Test
  include LoaderTest::Support

  WARMUP = 2_000
  REQUESTS = 20_000
  BOUND_KIB = 2_048

  def rss_kib(pid)
    File.read("/proc/#{pid}/status")[/^VmRSS:\s+(\d+) kB/, 1].to_i
  end

  def run_requests(w, count)
    body = 'b' * 3000
    count.times do |i|
      r = i % 10 == 9 ? w.request('POST', '/sha256', body: body) : w.request('GET', '/hello')
      assert_equal 200, r.status
    end
  end

  def test_rss_stays_flat_over_20000_requests
    w = main_app
    run_requests(w, WARMUP)
    before = rss_kib(w.pid)
    run_requests(w, REQUESTS)
    after = rss_kib(w.pid)
    $stderr.puts "\nrack worker RSS: #{before} KiB after #{WARMUP} requests, #{after} KiB after " \
                 "#{REQUESTS} more (#{after - before} KiB)"
    assert_operator after - before, :<, BOUND_KIB, "RSS grew from #{before} to #{after} KiB"
  end
end
