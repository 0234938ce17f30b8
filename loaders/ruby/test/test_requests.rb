# frozen_string_literal: true

# Requests against the conformance app (wrapped in Rack::Lint, so every env is SPEC-clean) and
# the misc test app, plus every way a request is refused.
require_relative 'helper'
require 'digest'

class RequestsTest < Minitest::Test
  include LoaderTest::Support

  def worker
    @worker ||= main_app
  end

  def misc
    @misc ||= start(File.join(__dir__, 'apps/misc')).tap { |w| assert w.ready?, w.stderr }
  end

  def test_hello_is_sent_byte_for_byte
    assert_equal "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n",
                 worker.request('GET', '/hello').raw
  end

  def test_env_lists_the_request_variables_sorted_without_the_password
    r = worker.request('GET', '/env?a=1&b', extra: [%w[HTTP_X_FOO bar], ['CONTENT_TYPE', '']])
    lines = r.body.lines
    assert_equal lines.sort, lines
    assert_includes lines, "QUERY_STRING=a=1&b\n"
    assert_includes lines, "HTTP_X_FOO=bar\n"
    assert_includes lines, "CONTENT_TYPE=\n"
    assert_includes lines, "SCRIPT_NAME=\n"
    assert_includes lines, "PATH_INFO=/env\n"
    refute_includes r.body, 'FERRY_CONNECT_PASSWORD'
    refute_includes r.body, worker.secret
  end

  # The core sends PATH_INFO decoded (CGI); the app gets the undecoded path of REQUEST_URI, as
  # from any Rack server, so it decodes exactly once.
  def test_path_info_reaches_the_app_percent_encoded
    pairs = [['REQUEST_METHOD', 'GET'], ['REQUEST_URI', '/path/a%2Fb/%2541?q=%2F'],
             ['PATH_INFO', '/path/a/b/%41'], %w[QUERY_STRING q=%2F], ['SCRIPT_NAME', ''],
             %w[SERVER_NAME 127.0.0.1], %w[SERVER_PORT 3000],
             ['FERRY_CONNECT_PASSWORD', misc.secret]]
    r = LoaderTest::Worker.parse(misc.exchange(LoaderTest::Worker.block(pairs)))
    assert_equal 200, r.status
    assert_equal "|/path/a%2Fb/%2541\n", r.body
  end

  def test_sha256_of_a_small_body
    r = worker.request('POST', '/sha256', body: 'abc')
    assert_equal "3 #{Digest::SHA256.hexdigest('abc')}\n", r.body
  end

  def test_sha256_of_a_body_past_the_memory_threshold
    body = Random.new(7).bytes(3 * 1024 * 1024 + 17)
    r = worker.request('POST', '/sha256', body: body)
    assert_equal "#{body.bytesize} #{Digest::SHA256.hexdigest(body)}\n", r.body
  end

  def test_large_bodies_are_a_rewindable_temp_file
    r = misc.request('POST', '/input', body: 'q' * (2 * 1024 * 1024))
    assert_equal "FerryExt::Input #{2 * 1024 * 1024} ASCII-8BIT true", r.body
    assert_equal ['stderr.log', 'stdout.log'], Dir.children(misc.dir).sort, 'the body file was left behind'
  end

  def test_small_bodies_are_rewindable_too
    assert_equal 'FerryExt::Input 5 ASCII-8BIT true', misc.request('POST', '/input', body: 'hello').body
  end

  def test_echo_keeps_the_content_type
    r = worker.request('POST', '/echo', body: "\x00\xFFdata".b, extra: [%w[CONTENT_TYPE image/png]])
    assert_equal 'image/png', r['Content-Type']
    assert_equal "\x00\xFFdata".b, r.body
  end

  def test_echo_defaults_to_octet_stream
    assert_equal 'application/octet-stream', worker.request('POST', '/echo', body: 'x')['Content-Type']
  end

  def test_stream_is_sent_without_content_length_and_with_the_pattern
    r = worker.request('GET', '/stream?mib=3')
    assert_nil r['Content-Length']
    expected = (0...(3 * 1024 * 1024)).map { |i| i % 251 }.pack('C*')
    assert_equal expected.bytesize, r.body.bytesize
    assert_equal expected, r.body
  end

  def test_cookies_are_two_headers_in_order
    assert_equal ['a=1; Path=/', 'b=2; Path=/'], worker.request('GET', '/cookies').values('Set-Cookie')
  end

  def test_status_204_has_no_body_and_no_entity_headers
    r = worker.request('GET', '/status/204')
    assert_equal "Status: 204 No Content\r\n\r\n", r.raw
  end

  def test_status_410_has_its_text
    r = worker.request('GET', '/status/410')
    assert_equal 'Status: 410 Gone', r.status_line
    assert_equal "status 410\n", r.body
  end

  def test_unknown_route_is_404
    r = worker.request('GET', '/nope')
    assert_equal 404, r.status
    assert_equal "not found\n", r.body
  end

  def test_pid_is_the_worker_pid
    assert_equal worker.pid.to_s, worker.request('GET', '/pid').body
  end

  def test_slow_sleeps_then_answers
    assert_equal "slept 50\n", worker.request('GET', '/slow?ms=50').body
  end

  def test_head_sends_the_head_with_content_length_and_no_body
    assert_equal "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n",
                 worker.request('HEAD', '/hello').raw
  end

  def test_body_close_is_called_for_get_and_head
    assert_equal "tracked\n", worker.request('GET', '/close-tracked').body
    assert_equal '', worker.request('HEAD', '/close-tracked').body.to_s
    assert_equal '2', worker.request('GET', '/close-count').body
  end

  def test_an_app_exception_is_a_generic_500_and_the_worker_goes_on
    r = worker.request('GET', '/raise')
    assert_equal 500, r.status
    id = r.body[/Error id: (\h{12})/, 1]
    assert id, r.body
    refute_includes r.body, 'asked to fail'
    assert_match(/\[error\] rack: .*request="GET \/raise" error_id=#{id}: the app raised RuntimeError/, worker.stderr)
    assert_includes worker.stderr, 'config.ru'
    assert_equal 200, worker.request('GET', '/hello').status
  end

  def test_in_development_the_500_shows_the_backtrace
    w = main_app(env: { 'FERRY_ENV' => 'development' })
    r = w.request('GET', '/raise')
    assert_equal 500, r.status
    assert_includes r.body, 'RuntimeError: conformance: /raise was asked to fail'
    assert_includes r.body, 'config.ru:'
  end

  def test_a_500_for_head_has_no_body
    r = worker.request('HEAD', '/raise')
    assert_equal 500, r.status
    assert_equal '', r.body.to_s
  end

  def test_https_sets_the_url_scheme
    assert_equal 'https', misc.request('GET', '/url-scheme', extra: [%w[HTTPS on]]).body
    assert_equal 'http', misc.request('GET', '/url-scheme').body
  end

  def test_invalid_responses_are_a_500
    %w[/bad-header /bad-header-name /bad-status /not-array].each do |path|
      assert_equal 500, misc.request('GET', path).status, path
    end
    assert_match(/the app raised FerryExt::InvalidResponse: invalid value for header X-Bad/, misc.stderr)
  end

  def test_a_body_failing_after_the_head_closes_the_connection
    r = misc.request('GET', '/body-raises')
    assert_equal 200, r.status
    assert_equal "first piece\n", r.body
    assert_match(/the app failed after the response head was sent: RuntimeError/, misc.stderr)
    assert_equal 200, misc.request('GET', '/').status
  end

  def test_a_failing_body_close_is_logged_and_the_worker_goes_on
    assert_equal "body\n", misc.request('GET', '/close-raises').body
    assert_match(/body.close raised RuntimeError: close failed/, misc.stderr)
    assert_equal 200, misc.request('GET', '/').status
  end

  def test_rack_headers_are_not_sent_and_unknown_codes_get_a_reason
    r = misc.request('GET', '/rack-header')
    refute r.raw.include?('rack.hint')
    assert_equal [''], r.values('Empty')
    assert_equal 'Status: 299 Unknown', misc.request('GET', '/status-299').status_line
  end

  def test_exit_in_the_app_ends_the_worker_with_its_status
    w = start(File.join(__dir__, 'apps/misc'), env: { 'FERRY_NO_ABSTRACT_NAMESPACE_SOCKETS' => '1' })
    path = w.address.delete_prefix('unix:')
    assert_equal 500, w.request('GET', '/exit').status
    assert_equal 3, w.wait(5)&.exitstatus
    refute File.exist?(path)
  end

  # --- the protocol's refusals (password, block, body, timeouts) are the C runtime's, checked by
  # tests/conformance for every loader; a request without a REQUEST_METHOD (which the core never
  # sends) cannot become a Rack env: 400.

  def test_a_missing_request_method_is_a_400
    pairs = LoaderTest::Worker.pairs_for('GET', '/hello').reject { |n, _| n == 'REQUEST_METHOD' }
    pairs << ['FERRY_CONNECT_PASSWORD', worker.secret]
    r = LoaderTest::Worker.parse(worker.exchange(LoaderTest::Worker.block(pairs)))
    assert_equal 400, r.status
    assert wait_for { worker.stderr.include?('request refused: REQUEST_METHOD is missing') }, worker.stderr
    assert_equal 200, worker.request('GET', '/hello').status
  end
end
