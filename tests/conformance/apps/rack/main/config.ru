# frozen_string_literal: true

# The conformance app (tests/conformance/APPS.md), Rack flavour. Rack::Lint wraps it, so every
# env the loader builds and every response it handles is checked against the Rack SPEC.
require 'digest'

module Conformance
  CHUNK = 64 * 1024
  # Bytes at offset i are i % 251: a window of at least 64 KiB starting anywhere in the cycle is
  # the tail of this string from (offset % 251).
  PATTERN = (0...(CHUNK + 251)).map { |i| i % 251 }.pack('C*').freeze

  # The piece at <offset>, at most <left> bytes: the tail of PATTERN, which Ruby shares instead
  # of copying (a slice from the middle is a 64 KiB copy per piece, and the garbage of 100 MiB
  # of those grows a Ruby process by ~55 MiB before its GC catches up: the app's memory, not the
  # loader's, which the bounded-memory test measures). Pieces are 64 KiB to 64 KiB + 250.
  def self.piece(offset, left)
    start = offset % 251
    PATTERN.byteslice(start, [PATTERN.bytesize - start, left].min)
  end
  ENV_KEYS = %w[REQUEST_METHOD PATH_INFO QUERY_STRING SCRIPT_NAME SERVER_NAME SERVER_PORT
                SERVER_PROTOCOL REMOTE_ADDR REMOTE_PORT CONTENT_TYPE CONTENT_LENGTH].freeze

  @closes = 0
  class << self
    attr_accessor :closes, :parked

    # Sleeps forever: SIGQUIT's backtraces must name this method.
    def conformance_parked_thread
      loop { sleep 3600 }
    end
  end

  # N MiB of the pattern, produced in 64 KiB pieces as the server asks for them.
  class StreamBody
    def initialize(bytes)
      @bytes = bytes
    end

    def each
      offset = 0
      while offset < @bytes
        piece = Conformance.piece(offset, @bytes - offset)
        yield piece
        offset += piece.bytesize
      end
    end
  end

  # The pattern of /stream without end: it stops only when the loader stops iterating (a write
  # failed: the client left, or ABORT over session protocol v2).
  class EndlessBody
    def each
      offset = 0
      loop do
        piece = Conformance.piece(offset, PATTERN.bytesize)
        yield piece
        offset += piece.bytesize
      end
    end
  end

  # A first chunk, then an exception: the body is cut after the head went out.
  class FailAfterHeadBody
    def each
      yield "first chunk\n"
      raise 'conformance: /fail-after-head fails after its first chunk'
    end
  end

  # Streams the request body back in pieces.
  class EchoBody
    def initialize(input)
      @input = input
    end

    def each
      @input.rewind
      buf = String.new
      while (piece = @input.read(CHUNK, buf))
        yield piece.dup
      end
    end
  end

  # A body that counts its close calls (GET /close-count reports them).
  class TrackedBody
    def each
      yield "tracked\n"
    end

    def close
      Conformance.closes += 1
    end
  end

  module_function

  def text(status, body, extra = {})
    [status, { 'Content-Type' => 'text/plain', 'Content-Length' => body.bytesize.to_s }.merge(extra), [body]]
  end

  def params(env)
    Rack::Utils.parse_query(env['QUERY_STRING'])
  end

  # A non-negative integer query parameter no larger than <max>, or nil.
  def int_param(env, name, max)
    v = params(env)[name]
    return nil unless v.is_a?(String) && v.match?(/\A\d{1,9}\z/)

    n = v.to_i
    n <= max ? n : nil
  end

  def env_dump(env)
    keys = env.keys.select { |k| ENV_KEYS.include?(k) || k.start_with?('HTTP_') }.sort
    keys.map { |k| "#{k}=#{env[k]}\n".b }.join.b
  end

  def sha256(env)
    input = env['rack.input']
    digest = Digest::SHA256.new
    count = 0
    buf = String.new
    while (piece = input.read(CHUNK, buf))
      count += piece.bytesize
      digest << piece
    end
    "#{count} #{digest.hexdigest}\n"
  end

  def status(code)
    return text(404, "not found\n") unless (100..599).cover?(code)
    # Rack forbids a body, Content-Type and Content-Length with 1xx, 204 and 304.
    return [code, {}, []] if code < 200 || code == 204 || code == 304

    text(code, "status #{code}\n")
  end

  def call(env)
    method = env['REQUEST_METHOD']
    path = env['PATH_INFO']
    get = %w[GET HEAD].include?(method)
    post = method == 'POST'

    if get && path == '/hello'
      text(200, "hello world\n")
    elsif get && path == '/env'
      text(200, env_dump(env))
    elsif post && path == '/sha256'
      text(200, sha256(env))
    elsif post && path == '/echo'
      type = env['CONTENT_TYPE'].to_s.empty? ? 'application/octet-stream' : env['CONTENT_TYPE']
      length = env['CONTENT_LENGTH'].to_s.empty? ? '0' : env['CONTENT_LENGTH']
      [200, { 'Content-Type' => type, 'Content-Length' => length }, EchoBody.new(env['rack.input'])]
    elsif get && path == '/stream'
      mib = int_param(env, 'mib', 65_536)
      return text(400, "bad mib\n") unless mib

      [200, { 'Content-Type' => 'application/octet-stream' }, StreamBody.new(mib * 1024 * 1024)]
    elsif get && path == '/endless'
      [200, { 'Content-Type' => 'application/octet-stream' }, EndlessBody.new]
    elsif get && path == '/fail-after-head'
      [200, { 'Content-Type' => 'text/plain' }, FailAfterHeadBody.new]
    elsif get && path == '/cookies'
      text(200, "cookies\n", 'Set-Cookie' => "a=1; Path=/\nb=2; Path=/")
    elsif get && (m = path.match(%r{\A/status/(\d{3})\z}))
      status(m[1].to_i)
    elsif get && path == '/raise'
      raise 'conformance: /raise was asked to fail'
    elsif get && path == '/slow'
      ms = int_param(env, 'ms', 600_000)
      return text(400, "bad ms\n") unless ms

      sleep(ms / 1000.0)
      text(200, "slept #{ms}\n")
    elsif get && path == '/park-thread'
      Conformance.parked ||= Thread.new { Conformance.conformance_parked_thread }
      text(200, "parked\n")
    elsif get && path == '/pid'
      text(200, Process.pid.to_s)
    elsif get && path == '/close-tracked'
      [200, { 'Content-Type' => 'text/plain', 'Content-Length' => '8' }, TrackedBody.new]
    elsif get && path == '/close-count'
      text(200, Conformance.closes.to_s)
    else
      text(404, "not found\n")
    end
  end
end

use Rack::Lint
run Conformance
