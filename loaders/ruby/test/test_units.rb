# frozen_string_literal: true

# In-process tests of the loader's pure parts: the array message codec, the request block, the
# Rack env, the response head, and the main loop's error rule.
require_relative 'helper'
require 'rack'
require 'rack/utils'
require 'stringio'
require 'ferry_loader/log'
require 'ferry_loader/request'
require 'ferry_loader/response'
require 'ferry_loader/socket'
require 'ferry_loader/request_handler'

class MessageChannelTest < Minitest::Test
  MC = FerryLoader::MessageChannel

  def test_encodes_items_each_followed_by_nul_after_a_u16_be_length
    assert_equal "\x00\x0Aready\x0042\x00\x00".b, MC.encode_array(['ready', 42, ''])
  end

  def test_round_trips_through_decode
    items = ['error', 'summary', "two\nlines"]
    assert_equal items, MC.decode_array(MC.encode_array(items))
  end

  def test_refuses_an_item_with_a_nul
    assert_raises(ArgumentError) { MC.encode_array(["a\0b"]) }
  end

  def test_refuses_an_empty_message
    assert_raises(ArgumentError) { MC.encode_array([]) }
  end

  def test_refuses_a_payload_past_65535_bytes
    assert_raises(ArgumentError) { MC.encode_array(['x' * 65_535]) }
    assert_equal 65_537, MC.encode_array(['x' * 65_534]).bytesize
  end

  def test_decode_refuses_truncated_wire_at_every_byte
    wire = MC.encode_array(%w[ready 1 abstract:x secret])
    (0...wire.bytesize).each do |n|
      assert_raises(ArgumentError, "prefix of #{n} bytes") { MC.decode_array(wire.byteslice(0, n)) }
    end
  end

  def test_sanitize_replaces_nul_and_cuts_to_the_limit
    assert_equal 'a\\0b', MC.sanitize_item("a\0b", 100)
    cut = MC.sanitize_item('é' * 100, 50)
    assert_operator cut.bytesize, :<=, 50
    assert cut.valid_encoding?
    assert cut.end_with?('[truncated]')
  end
end

class RequestBlockTest < Minitest::Test
  R = FerryLoader::Request

  def test_parses_pairs_in_order_with_empty_values
    assert_equal [%w[A 1], ['QUERY_STRING', '']], R.parse_block("A\x001\x00QUERY_STRING\x00\x00")
  end

  def test_an_empty_block_has_no_pairs
    assert_equal [], R.parse_block('')
  end

  def test_secure_equal_compares_whole_strings
    secret = 'a3f09c1d2e4b5a6978c0d1e2f3a4b5c6'
    assert R.secure_equal?(secret.dup, secret)
    refute R.secure_equal?(secret.sub(/6\z/, '7'), secret)
    refute R.secure_equal?("b#{secret[1..]}", secret)
    refute R.secure_equal?(secret[0..-2], secret)
    refute R.secure_equal?("\0#{secret[1..]}", secret)
    assert R.secure_equal?('', '')
    refute R.secure_equal?('', secret)
  end

  def test_refuses_a_block_not_ending_in_nul
    e = assert_raises(FerryLoader::BadRequest) { R.parse_block("A\x001") }
    assert_match(/does not end in NUL/, e.message)
  end

  def test_refuses_an_odd_item_count
    e = assert_raises(FerryLoader::BadRequest) { R.parse_block("A\x001\x00B\x00") }
    assert_match(/odd item count/, e.message)
  end

  def test_refuses_an_empty_name
    e = assert_raises(FerryLoader::BadRequest) { R.parse_block("\x00value\x00") }
    assert_match(/empty name/, e.message)
  end

  def test_read_pairs_refuses_a_block_past_128_kib_without_reading_it
    io = StringIO.new([131_073].pack('N') + ('x' * 10))
    def io.read_nonblock(n, **) = read(n)
    def io.wait_readable(_) = true
    e = assert_raises(FerryLoader::BadRequest) { R.read_pairs(io, 1) }
    assert_match(/131073 bytes is over the limit of 131072/, e.message)
  end

  def test_read_pairs_returns_nil_when_the_peer_sends_nothing
    a, b = UNIXSocket.pair
    b.close
    assert_nil R.read_pairs(a, 1)
  ensure
    a&.close
  end

  def test_read_pairs_refuses_a_truncated_size_prefix
    a, b = UNIXSocket.pair
    b.write("\x00\x00")
    b.close
    e = assert_raises(FerryLoader::BadRequest) { R.read_pairs(a, 1) }
    assert_match(/closed after 2 of 4 bytes of the header size/, e.message)
  ensure
    a&.close
  end

  def test_read_pairs_times_out_on_a_stalled_peer
    a, b = UNIXSocket.pair
    b.write("\x00\x00\x00\x10abc")
    e = assert_raises(FerryLoader::BadRequest) { R.read_pairs(a, 0.2) }
    assert_match(/timed out after 0.2s reading the header block/, e.message)
  ensure
    a&.close
    b&.close
  end
end

class HeaderDeadlineTest < Minitest::Test
  def test_a_header_trickling_in_byte_by_byte_still_times_out_in_all
    a, b = UNIXSocket.pair
    trickle = Thread.new do
      20.times do
        b.write('x')
        sleep 0.1
      end
    rescue IOError, SystemCallError
      nil
    end
    b.write("\x00\x00\x01\x00")
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    assert_raises(FerryLoader::BadRequest) { FerryLoader::Request.read_pairs(a, 0.5) }
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 1.0
  ensure
    a&.close
    b&.close
    trickle&.join
  end
end

class RackEnvTest < Minitest::Test
  R = FerryLoader::Request

  def base(extra = [])
    [%w[REQUEST_METHOD GET], ['REQUEST_URI', '/x?y=1']] + extra
  end

  def test_drops_the_password_and_rack_prefixed_names
    env = R.cgi_env(base([%w[FERRY_CONNECT_PASSWORD secret], %w[rack.input spoof]]))
    refute env.key?('FERRY_CONNECT_PASSWORD')
    refute env.key?('rack.input')
  end

  def test_first_of_duplicate_names_wins
    env = R.cgi_env(base([%w[HTTP_X first], %w[HTTP_X second]]))
    assert_equal 'first', env['HTTP_X']
  end

  def test_drops_http_content_type_and_length
    env = R.cgi_env(base([%w[HTTP_CONTENT_TYPE a], %w[HTTP_CONTENT_LENGTH 1]]))
    refute env.key?('HTTP_CONTENT_TYPE')
    refute env.key?('HTTP_CONTENT_LENGTH')
  end

  def test_refuses_a_missing_request_method
    assert_raises(FerryLoader::BadRequest) { R.cgi_env([%w[PATH_INFO /]]) }
  end

  def test_refuses_a_request_method_that_is_not_a_token
    assert_raises(FerryLoader::BadRequest) { R.cgi_env([['REQUEST_METHOD', 'G T']]) }
  end

  def test_refuses_a_content_length_that_is_not_digits
    assert_raises(FerryLoader::BadRequest) { R.cgi_env(base([%w[CONTENT_LENGTH -1]])) }
  end

  def test_an_empty_content_length_is_dropped
    refute R.cgi_env(base([['CONTENT_LENGTH', '']])).key?('CONTENT_LENGTH')
  end

  def test_defaults_query_string_server_and_protocol
    env = R.cgi_env([%w[REQUEST_METHOD GET], ['HTTP_HOST', 'example.com:8080']])
    assert_equal '', env['QUERY_STRING']
    assert_equal 'example.com', env['SERVER_NAME']
    assert_equal '8080', env['SERVER_PORT']
    assert_equal 'HTTP/1.1', env['SERVER_PROTOCOL']
  end

  def test_server_defaults_without_host_follow_the_scheme
    env = R.cgi_env([%w[REQUEST_METHOD GET], %w[HTTPS on]])
    assert_equal 'localhost', env['SERVER_NAME']
    assert_equal '443', env['SERVER_PORT']
  end

  def test_root_mount_has_empty_script_name_and_slash_path
    env = R.cgi_env([%w[REQUEST_METHOD GET], %w[SCRIPT_NAME /], ['PATH_INFO', '']])
    assert_equal '', env['SCRIPT_NAME']
    assert_equal '/', env['PATH_INFO']
  end

  def test_path_info_comes_from_request_uri_without_the_mount_point
    env = R.cgi_env([%w[REQUEST_METHOD GET], %w[SCRIPT_NAME /app/], ['REQUEST_URI', '/app/a%20b?q=1']])
    assert_equal '/app', env['SCRIPT_NAME']
    assert_equal '/a%20b', env['PATH_INFO']
  end

  # Rack's PATH_INFO stays percent-encoded (as under WEBrick, Puma, Unicorn): the app decodes it
  # once. The core's decoded PATH_INFO would be decoded twice ("%2541" → "A") and "%2F" would
  # become a segment separator.
  def test_path_info_is_the_undecoded_path_of_request_uri
    env = R.cgi_env([%w[REQUEST_METHOD GET], ['REQUEST_URI', '/echo/a%2Fb/%2541/caf%C3%A9?x=%2F'],
                     ['PATH_INFO', "/echo/a/b/%41/caf\xC3\xA9".b], %w[QUERY_STRING x=%2F],
                     ['SCRIPT_NAME', '']])
    assert_equal '/echo/a%2Fb/%2541/caf%C3%A9', env['PATH_INFO']
    assert_equal '', env['SCRIPT_NAME']
    assert_equal 'x=%2F', env['QUERY_STRING']
    assert_equal Encoding::BINARY, env['PATH_INFO'].encoding
  end

  def test_path_info_from_request_uri_stops_at_a_fragment
    env = R.cgi_env([%w[REQUEST_METHOD GET], ['REQUEST_URI', '/a%20b#frag'], ['PATH_INFO', '/a b']])
    assert_equal '/a%20b', env['PATH_INFO']
  end

  def test_path_info_as_sent_without_an_origin_form_request_uri
    env = R.cgi_env([%w[REQUEST_METHOD OPTIONS], %w[REQUEST_URI *], ['PATH_INFO', '']])
    assert_equal '/', env['PATH_INFO']
    env = R.cgi_env([%w[REQUEST_METHOD GET], %w[SCRIPT_NAME /app], %w[REQUEST_URI /other/x],
                     %w[PATH_INFO /x]])
    assert_equal '/x', env['PATH_INFO']
  end

  def test_path_info_sent_by_the_core_is_kept_as_the_part_after_script_name
    env = R.cgi_env([%w[REQUEST_METHOD GET], %w[SCRIPT_NAME /app], %w[PATH_INFO /app/x]])
    assert_equal '/app/x', env['PATH_INFO']
  end

  def test_cgi_values_are_binary
    env = R.cgi_env(base([["HTTP_X", "caf\xC3\xA9".b]]))
    assert_equal Encoding::BINARY, env['PATH_INFO'].encoding
    assert_equal Encoding::BINARY, env['HTTP_X'].encoding
  end

  def test_small_bodies_are_read_into_a_binary_string_io
    a, b = UNIXSocket.pair
    b.write('hello')
    input = R.read_body(a, { 'CONTENT_LENGTH' => '5' }, 1)
    assert_instance_of StringIO, input
    assert_equal 'hello', input.read
    assert_equal Encoding::BINARY, input.external_encoding
  ensure
    a&.close
    b&.close
  end

  def test_large_bodies_go_to_an_unlinked_temp_file
    a, b = UNIXSocket.pair
    size = R::BODY_MEMORY_MAX + 1
    writer = Thread.new { b.write('z' * size) }
    input = R.read_body(a, { 'CONTENT_LENGTH' => size.to_s }, 5)
    writer.join
    assert_instance_of File, input
    refute File.exist?(input.path)
    assert_equal size, input.read.bytesize
    assert input.binmode?
  ensure
    input&.close
    a&.close
    b&.close
  end

  def test_a_short_body_is_refused
    a, b = UNIXSocket.pair
    b.write('abc')
    b.close
    e = assert_raises(FerryLoader::BadRequest) { R.read_body(a, { 'CONTENT_LENGTH' => '10' }, 1) }
    assert_match(/closed after 3 of 10 bytes of the body/, e.message)
  ensure
    a&.close
  end

  def test_the_full_env_passes_rack_lint
    env = R.rack_env(R.cgi_env(base), StringIO.new(+''.b).tap(&:binmode), $stderr)
    app = Rack::Lint.new(->(_) { [200, { 'Content-Type' => 'text/plain' }, []] })
    assert_equal 200, app.call(env)[0]
    assert_equal false, env['rack.multithread']
    assert_equal true, env['rack.multiprocess']
    assert_equal 'http', env['rack.url_scheme']
  end
end

class ResponseHeadTest < Minitest::Test
  RS = FerryLoader::Response

  def test_writes_status_line_and_headers_with_crlf
    assert_equal "Status: 404 Not Found\r\nA: b\r\n\r\n", RS.build_head(404, { 'A' => 'b' })
  end

  def test_splits_newline_values_into_repeated_headers
    head = RS.build_head(200, { 'Set-Cookie' => "a=1\nb=2" })
    assert_equal "Status: 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n", head
  end

  def test_array_values_are_repeated_headers
    assert_includes RS.build_head(200, { 'V' => %w[1 2] }), "V: 1\r\nV: 2\r\n"
  end

  def test_skips_rack_and_status_headers_and_keeps_empty_values
    head = RS.build_head(200, { 'rack.hijack' => 'x', 'Status' => '500', 'E' => '' })
    assert_equal "Status: 200 OK\r\nE: \r\n\r\n", head
  end

  def test_unknown_codes_get_a_reason
    assert_equal "Status: 299 Unknown\r\n\r\n", RS.build_head(299, {})
  end

  def test_refuses_a_value_with_cr
    assert_raises(FerryLoader::InvalidResponse) { RS.build_head(200, { 'A' => "x\ry" }) }
  end

  def test_refuses_a_name_that_is_not_a_token
    assert_raises(FerryLoader::InvalidResponse) { RS.build_head(200, { 'A B' => 'x' }) }
  end

  def test_refuses_a_head_past_128_kib
    assert_raises(FerryLoader::InvalidResponse) { RS.build_head(200, { 'A' => 'x' * 131_072 }) }
  end

  def test_check_triple_refuses_bad_status_and_shapes
    assert_raises(FerryLoader::InvalidResponse) { RS.check_triple(['abc', {}, []]) }
    assert_raises(FerryLoader::InvalidResponse) { RS.check_triple([99, {}, []]) }
    assert_raises(FerryLoader::InvalidResponse) { RS.check_triple([200, {}]) }
    assert_raises(FerryLoader::InvalidResponse) { RS.check_triple('string') }
    assert_raises(FerryLoader::InvalidResponse) { RS.check_triple([200, {}, 5]) }
    assert_equal 201, RS.check_triple(['201', {}, []])
  end

  def test_production_error_page_hides_the_error_and_shows_the_id
    head, body = RS.error_page(RuntimeError.new('secret detail'), 'abc123', false)
    assert head.start_with?("Status: 500 Internal Server Error\r\n")
    assert_includes head, "Content-Length: #{body.bytesize}\r\n"
    assert_includes body, 'abc123'
    refute_includes body, 'secret detail'
  end

  def test_development_error_page_shows_the_error
    error = RuntimeError.new('visible detail')
    error.set_backtrace(['app.rb:1'])
    _, body = RS.error_page(error, 'abc123', true)
    assert_includes body, 'RuntimeError: visible detail'
    assert_includes body, 'app.rb:1'
  end
end

class LoopErrorTest < Minitest::Test
  # A listener whose accept fails like accept(2) does when the process is out of fds.
  class FailingListener
    attr_reader :socket

    def initialize
      @server = Socket.new(:UNIX, :STREAM)
      @server.bind(Socket.sockaddr_un("\0ferry-rack-test-#{Process.pid}-#{rand(1 << 30)}"))
      @server.listen(5)
      @client = Socket.new(:UNIX, :STREAM)
      @client.connect(@server.local_address)
      @socket = @server
      def @server.accept_nonblock(**) = raise(Errno::EMFILE)
    end

    def remove_file; end

    def close
      @client.close
      @server.close
    end
  end

  def test_a_second_error_outside_a_request_within_10s_ends_the_loop
    listener = FailingListener.new
    handler = FerryLoader::RequestHandler.new
    handler.attach(app: ->(_) { [200, {}, []] }, listener: listener, secret: 'x' * 32)
    old = $stderr
    $stderr = StringIO.new
    status = handler.run
    log = $stderr.string
    $stderr = old
    assert_equal 1, status
    assert_match(/\[error\] rack: .*error outside a request: retrying/, log)
    assert_match(/\[error\] rack: .*second error outside a request within 10s: exiting/, log)
  ensure
    $stderr = old if old
    listener&.close
  end
end
