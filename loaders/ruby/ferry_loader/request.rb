# frozen_string_literal: true

require 'io/wait'
require 'stringio'
require 'tempfile'

# The request (docs/protocol.md §2), core → worker: u32 big-endian H, then H bytes of "name NUL
# value NUL" pairs, then CONTENT_LENGTH bytes of body. This file reads and checks it and turns it
# into a Rack env (the SPEC of rack 2.2). Everything read from the socket is binary (ASCII-8BIT).
module FerryLoader
  # A request that is refused: the connection is closed without a reply and the reason is
  # logged. Never raised for an app's own errors.
  class BadRequest < StandardError; end

  module Request
    MAX_HEADER_BLOCK = 131_072
    # Request bodies up to this size stay in memory (StringIO); larger ones go to an unlinked
    # temp file, so a big upload never sits in the worker's heap.
    BODY_MEMORY_MAX = 1024 * 1024
    CHUNK = 65_536
    PASSWORD_KEY = 'FERRY_CONNECT_PASSWORD'
    TOKEN = /\A[0-9A-Za-z!\#$%&'*+.^_`|~-]+\z/.freeze
    HOST = /\A(\[[^\]]*\]|[^:\[\]]*)(?::(\d*))?\z/.freeze

    module_function

    # Reads exactly <n> bytes from <io>, waiting at most <timeout> seconds for each piece, and
    # never past the monotonic <deadline> when one is given. Returns the bytes; nil when EOF came
    # before the first byte and <eof_ok> is set. Raises BadRequest on EOF inside the data or a
    # stall past the timeout.
    def read_exact(io, n, timeout, what, eof_ok: false, deadline: nil)
      buf = String.new(capacity: n, encoding: Encoding::BINARY)
      while buf.bytesize < n
        chunk = io.read_nonblock([n - buf.bytesize, CHUNK].min, exception: false)
        case chunk
        when :wait_readable
          wait = deadline ? [deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC), timeout].min : timeout
          unless wait.positive? && io.wait_readable(wait)
            raise BadRequest, "timed out after #{timeout}s reading the #{what}"
          end
        when nil
          return nil if eof_ok && buf.empty?

          raise BadRequest, "connection closed after #{buf.bytesize} of #{n} bytes of the #{what}"
        else
          buf << chunk
        end
      end
      buf
    end

    # Reads the size prefix and the header block, all within <timeout> seconds (the core sends
    # them at once; a connection that dawdles is not the core and must not hold the worker).
    # Returns the pairs, or nil when the peer closed before sending anything. Raises BadRequest
    # when the block is oversized, malformed, truncated or late.
    def read_pairs(io, timeout)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      prefix = read_exact(io, 4, timeout, 'header size', eof_ok: true, deadline: deadline)
      return nil if prefix.nil?

      size = prefix.unpack1('N')
      if size > MAX_HEADER_BLOCK
        raise BadRequest, "header block of #{size} bytes is over the limit of #{MAX_HEADER_BLOCK}"
      end

      parse_block(read_exact(io, size, timeout, 'header block', deadline: deadline))
    end

    # Splits a header block into [name, value] pairs, in order. An empty block has no pairs.
    # Raises BadRequest when it does not end in NUL, has an odd item count or an empty name.
    def parse_block(block)
      return [] if block.empty?
      raise BadRequest, 'header block does not end in NUL' unless block.end_with?("\0")

      items = block.b.split("\0", -1)
      items.pop
      raise BadRequest, "header block has an odd item count (#{items.size})" if items.size.odd?

      pairs = Array.new(items.size / 2)
      i = 0
      while i < items.size
        name = items[i]
        raise BadRequest, 'header block has an empty name' if name.empty?

        pairs[i / 2] = [name, items[i + 1]]
        i += 2
      end
      pairs
    end

    # Whether the strings <a> and <b> are equal, in a time that depends on their length only
    # (for the connect password): both are read as one big integer each and XORed.
    def secure_equal?(a, b)
      return false unless a.bytesize == b.bytesize
      return true if a.empty?

      (a.unpack1('H*').to_i(16) ^ b.unpack1('H*').to_i(16)).zero?
    end

    # The value of the first pair named <name>, or nil.
    def lookup(pairs, name)
      pair = pairs.find { |n, _| n == name }
      pair && pair[1]
    end

    # Builds the CGI part of the Rack env from <pairs>: the first of duplicate names wins; the
    # password, "rack."-prefixed names and HTTP_CONTENT_TYPE/HTTP_CONTENT_LENGTH are dropped;
    # missing variables get their defaults. Raises BadRequest for a missing or invalid
    # REQUEST_METHOD or a CONTENT_LENGTH that is not all digits.
    def cgi_env(pairs)
      env = {}
      pairs.each do |name, value|
        next if name == PASSWORD_KEY || name.start_with?('rack.') || env.key?(name)

        env[name] = value
      end
      env.delete('HTTP_CONTENT_TYPE')
      env.delete('HTTP_CONTENT_LENGTH')

      method = env['REQUEST_METHOD']
      raise BadRequest, 'REQUEST_METHOD is missing' if method.nil?
      raise BadRequest, "REQUEST_METHOD #{method.inspect} is not a token" unless method.match?(TOKEN)

      env.delete('CONTENT_LENGTH') if env['CONTENT_LENGTH'] == ''
      if env.key?('CONTENT_LENGTH') && !env['CONTENT_LENGTH'].match?(/\A\d+\z/)
        raise BadRequest, "CONTENT_LENGTH #{env['CONTENT_LENGTH'].inspect} is not a number"
      end

      env['QUERY_STRING'] ||= String.new(encoding: Encoding::BINARY)
      split_path(env)
      fill_server(env)
      env
    end

    # SCRIPT_NAME is the mount point ("" at the root, never "/", no trailing slash); PATH_INFO the
    # rest, starting with "/" ("/" when both would be empty).
    #
    # Rack's PATH_INFO is the path as the client sent it, still percent-encoded: every Rack
    # server (WEBrick, Puma, Unicorn, Thin) passes it so, and Rack::Files, Rails' router and
    # Sinatra decode it themselves. The core sends the decoded, CGI-style PATH_INFO, which a Rack
    # app would decode a second time ("%2541" → "%41" → "A") and whose "%2F" would split a path
    # segment. So PATH_INFO comes from REQUEST_URI's path (an origin-form "/..."), minus the
    # SCRIPT_NAME prefix; the PATH_INFO sent by the core is used only when there is no such
    # REQUEST_URI (asterisk-form, a test client) or it does not start with SCRIPT_NAME.
    def split_path(env)
      script = env['SCRIPT_NAME'].to_s.b
      script = script.sub(%r{/+\z}, '') if script.end_with?('/')
      script = "/#{script}" unless script.empty? || script.start_with?('/')
      path = raw_path_info(env['REQUEST_URI'], script) || env['PATH_INFO']&.b || +''
      path = "/#{path}" unless path.empty? || path.start_with?('/')
      path = +'/' if path.empty? && script.empty?
      env['SCRIPT_NAME'] = script.b
      env['PATH_INFO'] = path.b
    end

    # The undecoded path of <uri> (query and fragment cut off) after the mount point <script>;
    # nil when <uri> is not an origin-form target under <script>.
    def raw_path_info(uri, script)
      return nil if uri.nil? || !uri.start_with?('/')

      path = uri.b
      cut = path.index(/[?#]/n)
      path = path.byteslice(0, cut) if cut
      return path if script.empty?
      return nil unless mounted_under?(path, script)

      path.byteslice(script.bytesize..)
    end

    def mounted_under?(path, script)
      path == script || path.start_with?("#{script}/")
    end

    # SERVER_NAME/SERVER_PORT default from HTTP_HOST, else "localhost" and the scheme's port;
    # SERVER_PROTOCOL defaults to HTTP/1.1.
    def fill_server(env)
      env['SERVER_PROTOCOL'] = 'HTTP/1.1'.b if env['SERVER_PROTOCOL'].to_s.empty?
      name_missing = env['SERVER_NAME'].to_s.empty?
      port_missing = env['SERVER_PORT'].to_s.empty?
      return unless name_missing || port_missing # the core sends both

      host_name, host_port = nil
      if (m = HOST.match(env['HTTP_HOST'].to_s))
        host_name = m[1] unless m[1].empty?
        host_port = m[2] unless m[2].nil? || m[2].empty?
      end
      env['SERVER_NAME'] = (host_name || 'localhost').b if name_missing
      env['SERVER_PORT'] = (host_port || (https?(env) ? '443' : '80')).b if port_missing
    end

    def https?(env)
      %w[on 1 yes true].include?(env['HTTPS'].to_s.downcase)
    end

    # Reads the body (CONTENT_LENGTH bytes, none when absent) into a rewound, binary IO: a
    # StringIO up to BODY_MEMORY_MAX, an unlinked temp file past it. Raises BadRequest when the
    # peer stops early or stalls; the caller closes the returned IO.
    def read_body(io, env, timeout)
      length = env.key?('CONTENT_LENGTH') ? env['CONTENT_LENGTH'].to_i : 0
      if length <= BODY_MEMORY_MAX
        data = length.zero? ? String.new(encoding: Encoding::BINARY) : read_exact(io, length, timeout, 'body')
        input = StringIO.new(data)
        input.binmode
        return input
      end

      file = Tempfile.create('ferry-rack-body-', binmode: true)
      begin
        File.unlink(file.path)
        left = length
        while left.positive?
          chunk = read_exact(io, [left, CHUNK].min, timeout, 'body')
          file.write(chunk)
          left -= chunk.bytesize
        end
        file.rewind
        file
      rescue StandardError
        file.close
        raise
      end
    end

    # The complete Rack env: the CGI variables plus the rack.* keys of the SPEC.
    def rack_env(cgi, input, errors)
      cgi.merge!(
        'rack.version' => Rack::VERSION,
        'rack.input' => input,
        'rack.errors' => errors,
        'rack.url_scheme' => https?(cgi) ? 'https' : 'http',
        'rack.multithread' => false,
        'rack.multiprocess' => true,
        'rack.run_once' => false,
        'rack.hijack?' => false
      )
    end
  end
end
