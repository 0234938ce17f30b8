# frozen_string_literal: true

# The worker's lifecycle: the owner pipe, signals, and what it leaves behind.
require_relative 'helper'

class LifecycleTest < Minitest::Test
  include LoaderTest::Support

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def file_worker(app = File.join(LoaderTest::APPS, 'main'), env: {})
    w = start(app, env: { 'FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS' => '1' }.merge(env))
    assert w.ready?, w.stderr
    [w, w.address.delete_prefix('unix:')]
  end

  # Starts <method> <uri> in a thread; returns the thread (its value is the response).
  def in_background(w, method, uri)
    t = Thread.new { w.request(method, uri) }
    sleep 0.3 # the request reaches the app
    t
  end

  def test_owner_eof_ends_an_idle_worker_within_1s_and_removes_the_socket_file
    w, path = file_worker
    started = now
    w.owner_w.close
    assert w.wait(1.0), 'still running 1 s after the owner pipe closed'
    assert_operator now - started, :<, 1.0
    refute File.exist?(path)
    assert_match(/owner pipe closed: exiting/, w.stderr)
  end

  def test_owner_eof_ends_a_worker_whose_app_is_sleeping
    w, path = file_worker
    t = in_background(w, 'GET', '/slow?ms=10000')
    started = now
    w.owner_w.close
    assert w.wait(1.0), 'still running 1 s after the owner pipe closed'
    assert_operator now - started, :<, 1.0
    refute File.exist?(path)
    assert_equal '', t.value.raw
  end

  def test_owner_eof_ends_a_worker_whose_app_is_busy_on_the_cpu
    w, = file_worker(File.join(__dir__, 'apps/misc'))
    t = in_background(w, 'GET', '/spin')
    started = now
    w.owner_w.close
    assert w.wait(1.0), 'still running 1 s after the owner pipe closed'
    assert_operator now - started, :<, 1.0
    t.value
  end

  def test_owner_eof_during_a_slow_boot_ends_the_worker
    # The boot sleeps 10 s; the handshake read ends when the worker's control channel closes.
    w = start(File.join(__dir__, 'apps/misc'), env: { 'FERRY_TEST_BOOT_SLEEP' => '10' }, handshake: false)
    sleep 0.5
    closed_at = now
    w.owner_w.close
    assert_nil w.read_message(5), 'got a handshake from a worker whose owner left'
    assert w.wait(1.0)
    assert_operator now - closed_at, :<, 1.0
  end

  def test_sigusr1_during_boot_exits_0_right_after_ready
    w = start(File.join(__dir__, 'apps/misc'), env: { 'FERRY_TEST_BOOT_SLEEP' => '1' }, handshake: false)
    sleep 0.4
    w.kill('USR1')
    assert_equal 'ready', w.read_message(10)&.first
    assert_equal 0, w.wait(2)&.exitstatus
  end

  def test_sigterm_during_boot_exits_at_once
    w = start(File.join(__dir__, 'apps/misc'), env: { 'FERRY_TEST_BOOT_SLEEP' => '10' }, handshake: false)
    sleep 0.5
    started = now
    w.kill('TERM')
    assert_equal 15, w.wait(1.0)&.termsig # dies by SIGTERM, as native workers do
    assert_operator now - started, :<, 1.0
  end

  def test_sigusr1_ends_an_idle_worker_with_status_0
    w, path = file_worker
    w.kill('USR1')
    assert_equal 0, w.wait(2)&.exitstatus
    refute File.exist?(path)
    assert_match(/SIGUSR1: exiting after the current request/, w.stderr)
    assert_match(/\[notice\] rack: pid=\d+ app=\S+: stopped after 0 requests/, w.stderr)
  end

  def test_sigusr1_finishes_the_current_request_first
    w, = file_worker
    t = in_background(w, 'GET', '/slow?ms=1000')
    w.kill('USR1')
    assert w.alive?
    assert_equal "slept 1000\n", t.value.body
    assert_equal 0, w.wait(2)&.exitstatus
  end

  def test_sigterm_ends_the_worker_during_a_request
    w, path = file_worker
    t = in_background(w, 'GET', '/slow?ms=10000')
    started = now
    w.kill('TERM')
    assert_equal 15, w.wait(1.0)&.termsig
    assert_operator now - started, :<, 1.0
    refute File.exist?(path)
    assert_equal '', t.value.raw
  end

  def test_sighup_is_ignored
    w = main_app
    w.kill('HUP')
    sleep 0.2
    assert w.alive?
    assert_equal 200, w.request('GET', '/hello').status
  end

  def test_sigquit_writes_every_threads_backtrace_and_goes_on
    w = main_app
    t = in_background(w, 'GET', '/slow?ms=800')
    w.kill('QUIT')
    assert_equal "slept 800\n", t.value.body
    log = w.stderr
    assert_match(/\[notice\] rack: .*request="GET \/slow\?ms=800": SIGQUIT: backtraces of 2 threads/, log)
    assert_match(/in `sleep'/, log)
    assert_match(/config.ru:\d+:in `call'/, log)
    assert_match(/thread #<Thread:\S+@ferry-sigquit run>/, log)
    assert_match(/\[warn\] worker: SIGQUIT: pid=\d+ busy=\/slow/, log) # the runtime's line
    assert_equal 200, w.request('GET', '/hello').status
  end

  def test_a_worker_serves_many_requests_in_turn_without_leaking_fds
    w = main_app
    3.times { w.request('GET', '/hello') }
    before = Dir.children("/proc/#{w.pid}/fd").size
    40.times { assert_equal 200, w.request('POST', '/sha256', body: 'x' * 2_000_000).status }
    # The worker closes a finished request's connection after answering it, so the count may
    # lag by one for a moment on a busy machine (at either reading); a leak would be +40.
    fds = -> { Dir.children("/proc/#{w.pid}/fd").size }
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 5
    sleep 0.05 while fds.call > before && Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
    assert_operator fds.call, :<=, before
  end

  def test_an_idle_worker_uses_no_cpu
    w = main_app
    ticks = -> { File.read("/proc/#{w.pid}/stat").split(') ').last.split[11, 2].map(&:to_i).sum }
    before = ticks.call
    sleep 1
    assert_operator ticks.call - before, :<=, 5, 'an idle worker is spinning'
  end

  def test_a_1_gib_response_streams_in_bounded_memory
    w = main_app
    sock = w.connect
    pairs = LoaderTest::Worker.pairs_for('GET', '/stream?mib=1024') + [['FERRY_CONNECT_PASSWORD', w.secret]]
    sock.write(LoaderTest::Worker.block(pairs))
    sock.shutdown(Socket::SHUT_WR)
    total = 0
    max_rss = 0
    buf = +''
    deadline = now + 120
    loop do
      raise 'timed out streaming 1 GiB' if now > deadline

      chunk = sock.read_nonblock(1 << 20, buf, exception: false)
      break if chunk.nil?

      if chunk == :wait_readable
        sock.wait_readable(5)
        next
      end
      total += chunk.bytesize
      if (total >> 26) != ((total - chunk.bytesize) >> 26) # every 64 MiB
        rss = File.read("/proc/#{w.pid}/status")[/VmRSS:\s+(\d+)/, 1].to_i
        max_rss = rss if rss > max_rss
      end
    end
    head = "Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
    assert_equal head.bytesize + (1 << 30), total
    assert_operator max_rss, :>, 0, 'RSS was never sampled'
    assert_operator max_rss, :<, 200 * 1024, "RSS reached #{max_rss} KiB"
  ensure
    sock&.close
  end
end
