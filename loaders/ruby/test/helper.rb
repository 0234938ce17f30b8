# frozen_string_literal: true

# Test support for the Rack loader: starts `ruby rack_loader.rb` the way `ferry worker` does (fd 3
# the owner pipe's read end, fd 4 one end of a socketpair, FERRY_EXT_DIR the build's
# src/ext), reads the handshake, and speaks session protocol v1 (docs/protocol.md §2 and §3) to
# it. FERRY_BUILD_DIR names the build (default: the current directory when it holds the
# extension, as under `meson test`, else <repo>/build).
require 'minitest/autorun'
require 'rbconfig'
require 'socket'
require 'tmpdir'
require 'fileutils'
require 'io/wait'

module LoaderTest
  LOADER = File.expand_path('../rack_loader.rb', __dir__)
  REPO = File.expand_path('../../..', __dir__)
  BUILD_DIR = ENV['FERRY_BUILD_DIR'] ||
              [Dir.pwd, File.join(REPO, 'build')].find { |d| File.file?(File.join(d, 'src/ext/ruby/ferry_ext.so')) }
  EXT_DIR = File.join(BUILD_DIR.to_s, 'src', 'ext')

  # An array message of the control channel (docs/protocol.md §5): u16 BE length, then items
  # each followed by NUL.
  def self.decode_array(wire)
    payload = wire.b.byteslice(2, wire.unpack1('n'))
    raise ArgumentError, 'payload does not end in NUL' unless payload.end_with?("\0")

    payload.split("\0", -1)[0...-1]
  end
  APPS = File.join(REPO, 'tests/conformance/apps/rack')
  TEST_APPS = File.join(__dir__, 'apps')

  Response = Struct.new(:raw, :status_line, :headers, :body) do
    def status
      status_line[/\AStatus: (\d{3})/, 1].to_i
    end

    # All values of header <name> (case-insensitive), in order.
    def values(name)
      headers.select { |n, _| n.casecmp?(name) }.map { |_, v| v }
    end

    def [](name)
      values(name).first
    end
  end

  # A running loader process.
  class Worker
    attr_reader :pid, :message, :dir, :owner_w

    # Starts the loader for <app_root> with <env> added; reads the handshake unless <handshake>
    # is false (then call #read_message).
    def initialize(app_root, env: {}, timeout: 20, handshake: true)
      @dir = Dir.mktmpdir('ferry-rack-test-')
      @stderr_path = File.join(@dir, 'stderr.log')
      owner_r, @owner_w = IO.pipe
      @control, control_child = UNIXSocket.pair
      full_env = { 'FERRY_APP_ROOT' => app_root, 'FERRY_APP_TYPE' => 'rack', 'FERRY_ENV' => 'production',
                   'FERRY_OWNER_FD' => '3', 'FERRY_CONTROL_FD' => '4', 'TMPDIR' => @dir,
                   'FERRY_EXT_DIR' => EXT_DIR }.merge(env)
      raise 'no build with ferry_ext.so: set FERRY_BUILD_DIR' unless BUILD_DIR

      @pid = Process.spawn(full_env, RbConfig.ruby, LOADER, 3 => owner_r, 4 => control_child,
                           out: File.join(@dir, 'stdout.log'), err: @stderr_path, in: File::NULL)
      owner_r.close
      control_child.close
      @status = nil
      begin
        @message = handshake ? read_message(timeout) : nil
      rescue StandardError
        stop # a failed handshake read must not leave the process or its files behind
        raise
      end
    end

    def ready?
      @message&.first == 'ready'
    end

    def address
      @message[2]
    end

    def secret
      @message[3]
    end

    def stderr
      File.binread(@stderr_path)
    end

    def read_message(timeout)
      prefix = read_exact(@control, 2, timeout)
      return nil unless prefix

      payload = read_exact(@control, prefix.unpack1('n'), timeout)
      LoaderTest.decode_array(prefix + payload)
    end

    def read_exact(io, n, timeout)
      buf = +''.b
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      while buf.bytesize < n
        left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        raise "timed out reading the control channel; stderr:\n#{stderr}" if left <= 0

        next unless io.wait_readable(left)

        chunk = io.read_nonblock(n - buf.bytesize, exception: false)
        return nil if chunk.nil?

        buf << chunk unless chunk == :wait_readable
      end
      buf
    end

    def connect
      kind, name = address.split(':', 2)
      sock = Socket.new(:UNIX, :STREAM)
      sock.connect(Socket.sockaddr_un(kind == 'abstract' ? "\0#{name}" : name))
      sock
    end

    # The standard request variables for <method> <uri>, plus <extra> pairs.
    def self.pairs_for(method, uri, extra = [])
      path, query = uri.split('?', 2)
      [['REQUEST_METHOD', method], ['REQUEST_URI', uri], ['PATH_INFO', path], ['QUERY_STRING', query.to_s],
       ['SCRIPT_NAME', ''], ['SERVER_NAME', '127.0.0.1'], ['SERVER_PORT', '3000'],
       ['SERVER_PROTOCOL', 'HTTP/1.1'], ['REMOTE_ADDR', '127.0.0.1'], ['REMOTE_PORT', '50000'],
       ['HTTP_HOST', '127.0.0.1:3000']] + extra
    end

    def self.block(pairs)
      data = pairs.map { |n, v| "#{n}\0#{v}\0" }.join.b
      [data.bytesize].pack('N') + data
    end

    # Sends raw <bytes>, shuts down the write side, returns everything the worker sent back.
    def exchange(bytes, timeout: 20)
      sock = connect
      begin
        sock.write(bytes)
      rescue Errno::EPIPE, Errno::ECONNRESET
        nil
      end
      sock.shutdown(Socket::SHUT_WR) rescue nil # rubocop:disable Style/RescueModifier
      read_all(sock, timeout)
    ensure
      sock&.close
    end

    def read_all(sock, timeout)
      out = +''.b
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      loop do
        left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        raise 'timed out reading the response' if left <= 0
        next unless sock.wait_readable(left)

        chunk = sock.read_nonblock(1 << 20, exception: false)
        break if chunk.nil?

        out << chunk unless chunk == :wait_readable
      end
      out
    rescue Errno::ECONNRESET
      out
    end

    # A request with the right password (or <password>; :none leaves it out).
    def request(method, uri, body: '', extra: [], password: nil)
      pairs = self.class.pairs_for(method, uri, extra)
      pairs << ['CONTENT_LENGTH', body.bytesize.to_s] unless body.empty?
      pairs << ['FERRY_CONNECT_PASSWORD', password || secret] unless password == :none
      raw = exchange(self.class.block(pairs) + body.b)
      self.class.parse(raw)
    end

    def self.parse(raw)
      return Response.new(raw, nil, [], nil) if raw.empty?

      head, body = raw.split("\r\n\r\n", 2)
      lines = head.split("\r\n")
      headers = lines[1..].map { |l| l.split(': ', 2) }
      Response.new(raw, lines[0], headers, body)
    end

    def alive?
      return false if @status

      res = Process.waitpid2(@pid, Process::WNOHANG)
      @status = res[1] if res
      @status.nil?
    end

    # Waits at most <timeout> seconds for the process to end; returns its Process::Status or nil.
    def wait(timeout)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      while alive?
        return nil if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

        sleep 0.02
      end
      @status
    end

    def kill(sig)
      Process.kill(sig, @pid)
    end

    # Ends the worker (owner pipe closed, then SIGKILL after 5 s) and removes the temp dir.
    def stop
      @owner_w.close unless @owner_w.closed?
      unless wait(5)
        Process.kill('KILL', @pid)
        wait(5)
      end
      @control.close unless @control.closed?
      FileUtils.rm_rf(@dir)
    end
  end

  # Starts workers and makes sure each is gone after the test.
  module Support
    def setup
      @workers = []
    end

    def teardown
      @workers.each(&:stop)
    end

    def start(app_root, **opts)
      w = Worker.new(app_root, **opts)
      @workers << w
      w
    end

    def main_app(**opts)
      w = start(File.join(APPS, 'main'), **opts)
      assert w.ready?, "the loader did not become ready: #{w.message.inspect}\n#{w.stderr}"
      w
    end

    def wait_for(timeout = 5)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      until yield
        return false if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

        sleep 0.02
      end
      true
    end
  end
end
