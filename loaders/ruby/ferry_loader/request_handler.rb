# frozen_string_literal: true

require 'securerandom'

# The worker's main loop (docs/protocol.md §5; the lifecycle list of its "Conformance suite"):
# accept, read the request, call the app, write the response, close; one request at a time.
# Signals: SIGUSR1 finishes the current request and then exits 0 (at once when idle), SIGTERM
# exits now, SIGHUP is ignored, SIGQUIT writes every thread's backtrace to stderr. An error
# outside a request is logged and the loop goes on, unless the previous one was less than
# ERROR_WINDOW seconds ago: then the loop ends with status 1.
module FerryLoader
  class RequestHandler
    ERROR_WINDOW = 10.0
    # The whole header block must arrive within HEADER_TIMEOUT seconds, and each body read may
    # wait BODY_TIMEOUT seconds: the core sends the block at once and buffers bodies, so a
    # connection that dawdles is not the core and must not hold the worker. The same values in
    # every loader: docs/protocol.md §6, "Shared constants".
    HEADER_TIMEOUT = 5.0
    BODY_TIMEOUT = 60.0

    attr_reader :requests_served

    # <header_timeout> bounds reading the header block (seconds, in all), <body_timeout> each
    # wait for more body bytes; <development> shows errors in the 500.
    def initialize(development: false, header_timeout: HEADER_TIMEOUT, body_timeout: BODY_TIMEOUT)
      @app = nil
      @listener = nil
      @secret = nil
      @development = development
      @header_timeout = header_timeout
      @body_timeout = body_timeout
      @wake_r, @wake_w = IO.pipe
      @soft_stop = false
      @last_error_at = nil
      @current = nil
      @requests_served = 0
    end

    # Installs the trap handlers. Called before the app is loaded, so a SIGTERM during a slow
    # boot also exits at once and a SIGUSR1 is remembered.
    def install_signal_handlers
      trap('HUP', 'IGNORE')
      trap('USR1') { soft_stop }
      trap('TERM') do
        Log.notice('SIGTERM: exiting now', request_fields)
        @listener&.remove_file
        exit!(0)
      end
      trap('QUIT') { dump_threads }
    end

    # Gives the handler what it serves, once the app is loaded: <app> the Rack app, <listener> a
    # ListenSocket (borrowed; the caller closes it), <secret> the connect password.
    def attach(app:, listener:, secret:)
      @app = app
      @listener = listener
      @secret = secret.b
    end

    def soft_stop
      @soft_stop = true
      @wake_w.write_nonblock('.', exception: false)
    rescue IOError
      nil
    end

    def dump_threads
      lines = []
      Thread.list.each do |t|
        lines << "thread #{t.inspect}#{t == Thread.main ? ' (main)' : ''}"
        (t.backtrace || ['(no backtrace)']).each { |l| lines << "    #{l}" }
      end
      Log.notice("SIGQUIT: backtraces of #{Thread.list.size} threads", request_fields, lines)
    end

    def request_fields
      @current ? { request: @current } : {}
    end

    # Serves until a soft stop (returns 0) or a second error outside a request within
    # ERROR_WINDOW seconds (returns 1).
    def run
      loop do
        if @soft_stop
          Log.notice('SIGUSR1: exiting after the current request', requests: @requests_served)
          return 0
        end
        conn = accept_one
        return 1 if conn == :fatal
        next unless conn

        begin
          serve(conn)
        rescue StandardError => e
          return 1 if loop_error(e) == :fatal
        ensure
          close_quietly(conn)
        end
      end
    ensure
      close_quietly(@wake_r)
      close_quietly(@wake_w)
    end

    private

    def close_quietly(io)
      io.close unless io.nil? || io.closed?
    rescue IOError, SystemCallError
      nil
    end

    # Waits for a connection or a wake-up. Returns the connection, nil to look again, or :fatal.
    # A waiting connection is taken at once; select only runs when there is none (one syscall
    # fewer per request under load).
    def accept_one
      conn = @listener.socket.accept_nonblock(exception: false)
      return conn[0] unless conn == :wait_readable

      readable, = IO.select([@listener.socket, @wake_r])
      @wake_r.read_nonblock(64, exception: false) if readable.include?(@wake_r)
      nil
    rescue Errno::ECONNABORTED, Errno::EPROTO, Errno::EINTR
      nil
    rescue StandardError => e
      loop_error(e)
    end

    # Logs an error outside a request. Returns :fatal when the previous one was less than
    # ERROR_WINDOW seconds ago, nil to go on.
    def loop_error(error)
      now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      trace = ["#{error.class}: #{error.message}", *Array(error.backtrace)]
      if @last_error_at && now - @last_error_at < ERROR_WINDOW
        Log.error("second error outside a request within #{ERROR_WINDOW.to_i}s: exiting",
                  { error: error.class }, trace)
        return :fatal
      end
      @last_error_at = now
      Log.error('error outside a request: retrying', { error: error.class }, trace)
      nil
    end

    def serve(conn)
      input = nil
      begin
        pairs = Request.read_pairs(conn, @header_timeout)
        if pairs.nil?
          Log.info('connection closed before a request was sent')
          return
        end
        check_password(pairs)
        cgi = Request.cgi_env(pairs)
        input = Request.read_body(conn, cgi, @body_timeout)
      rescue BadRequest => e
        Log.warn("request refused: #{e.message}")
        return
      rescue SystemCallError, IOError => e
        Log.warn("request refused: reading it failed: #{e.class}: #{e.message}")
        return
      end

      @current = "#{cgi['REQUEST_METHOD']} #{cgi['REQUEST_URI'] || cgi['PATH_INFO']}".scrub
      call_app(conn, Request.rack_env(cgi, input, $stderr))
      @requests_served += 1
    ensure
      @current = nil
      close_quietly(input)
    end

    def check_password(pairs)
      given = Request.lookup(pairs, Request::PASSWORD_KEY)
      raise BadRequest, "no #{Request::PASSWORD_KEY}" if given.nil?
      raise BadRequest, "wrong #{Request::PASSWORD_KEY}" unless Request.secure_equal?(given.b, @secret)
    end

    def fatal?(error)
      error.is_a?(SystemExit) || error.is_a?(SignalException)
    end

    def call_app(conn, env)
      head_only = env['REQUEST_METHOD'] == 'HEAD'
      body = nil
      begin
        result = @app.call(env)
        body = result[2] if result.is_a?(Array) && result.size == 3
        code = Response.check_triple(result)
        head = Response.build_head(code, result[1])
      rescue Exception => e # rubocop:disable Lint/RescueException -- every app error is a 500
        raise if fatal?(e)

        close_body(body)
        app_failed(conn, env, e, head_only)
        return
      end
      send_response(conn, head, code, body, head_only)
    end

    # Writes the head, then the body piece by piece (never buffered whole); no body for HEAD,
    # 1xx, 204 and 304. The head goes out with the first non-empty piece, in one writev, so the
    # core reads a small response in one go. The body is closed whatever happens.
    def send_response(conn, head, code, body, head_only)
      if head_only || Response::NO_BODY_STATUS.call(code)
        conn.write(head)
        return
      end

      body.each do |chunk|
        raise InvalidResponse, "the body yielded #{chunk.class}, not a String" unless chunk.is_a?(String)
        next if chunk.empty?

        if head
          conn.write(head, chunk)
          head = nil
        else
          conn.write(chunk)
        end
      end
      conn.write(head) if head
    rescue Errno::EPIPE, Errno::ECONNRESET => e
      Log.info("the core closed the connection during the response (#{e.class})", request_fields)
    rescue Exception => e # rubocop:disable Lint/RescueException
      raise if fatal?(e)

      Log.error("the app failed after the response head was sent: #{e.class}: #{e.message}; " \
                'connection closed', request_fields, Array(e.backtrace))
    ensure
      close_body(body)
    end

    def close_body(body)
      body.close if body.respond_to?(:close)
    rescue Exception => e # rubocop:disable Lint/RescueException
      raise if fatal?(e)

      Log.error("body.close raised #{e.class}: #{e.message}", request_fields, Array(e.backtrace))
    end

    def app_failed(conn, env, error, head_only)
      error_id = SecureRandom.hex(6)
      Log.error("the app raised #{error.class}: #{error.message}",
                request_fields.merge(error_id: error_id), Array(error.backtrace))
      head, page = Response.error_page(error, error_id, @development)
      conn.write(head)
      conn.write(page) unless head_only || env.nil?
    rescue Errno::EPIPE, Errno::ECONNRESET, IOError
      nil
    end
  end
end
