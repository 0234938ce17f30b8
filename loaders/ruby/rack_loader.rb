# frozen_string_literal: true

# ferry's Rack loader: one worker process serving one Rack app (docs/protocol.md §2, §3 and §5).
#
# Started by `ferry worker APP_DIR --type rack` (or the pool) with fd 3 the read end of the owner
# pipe and fd 4 the control channel, and the environment FERRY_APP_ROOT, FERRY_APP_TYPE,
# FERRY_ENV, FERRY_OWNER_FD, FERRY_CONTROL_FD. Loads FERRY_APP_ROOT/config.ru, listens on a
# password-protected Unix socket and sends ["ready", pid, address, secret] on the control
# channel, or ["error", summary, details] and exits 1 when the app cannot be loaded.

$stdout.sync = true
$stderr.sync = true

require_relative 'ferry_loader/log'
require_relative 'ferry_loader/message_channel'
require_relative 'ferry_loader/request'
require_relative 'ferry_loader/response'
require_relative 'ferry_loader/socket'
require_relative 'ferry_loader/request_handler'

module FerryLoader
  # A boot step that failed: <summary> goes into the error message, <details> after it.
  class BootError < StandardError
    attr_reader :details

    def initialize(summary, details = '')
      super(summary)
      @details = details
    end
  end

  class Loader
    def initialize(env = ENV)
      @env = env
      @listener = nil
      @control = nil
    end

    # Boots and serves. Returns the exit status.
    def run
      @control = open_fd('FERRY_CONTROL_FD', 4, 'wb')
      unless @control
        Log.error('the control channel fd is not open; cannot report', step: 'open_control_channel')
        return 1
      end
      handler = RequestHandler.new(development: development?)
      begin
        owner = open_fd('FERRY_OWNER_FD', 3, 'rb')
        raise BootError, 'the owner pipe fd is not open' unless owner

        watch_owner(owner)
        handler.install_signal_handlers
        app_root = check_app_root
        app = load_app(app_root)
        @listener = listen
        secret = SecureRandom.hex(16)
        handler.attach(app: app, listener: @listener, secret: secret)
      rescue BootError => e
        report_error(e.message, e.details)
        return 1
      rescue StandardError => e
        report_error("internal error in the rack loader: #{e.class}: #{e.message}",
                     Array(e.backtrace).join("\n"))
        return 1
      end

      begin
        MessageChannel.write_array(@control, ['ready', Process.pid, @listener.address, secret])
      rescue SystemCallError, IOError => e
        Log.error("the control channel failed: #{e.class}: #{e.message}", step: 'send_ready')
        @listener.close
        return 1
      end
      Log.notice("ready: serving #{app_root}", address: @listener.address, env: ferry_env)
      begin
        handler.run
      ensure
        # Also when the app calls exit inside a request: no socket file is left behind.
        @listener.close
      end
    end

    private

    def ferry_env
      e = @env['FERRY_ENV'].to_s
      e.empty? ? 'production' : e
    end

    def development?
      ferry_env == 'development'
    end

    # Opens the fd named by <var> (default <default>) without taking it over from the process
    # (autoclose off), close-on-exec so the app's children do not inherit it. Returns nil when
    # the fd is not open or the variable is not a number.
    def open_fd(var, default, mode)
      raw = @env[var]
      fd = raw.nil? || raw.empty? ? default : Integer(raw, 10, exception: false)
      return nil if fd.nil? || fd.negative?

      io = IO.for_fd(fd, mode, autoclose: false)
      io.close_on_exec = true
      io.binmode
      io.sync = true
      io
    rescue SystemCallError, ArgumentError
      nil
    end

    # The owner pipe: EOF (the owner is gone) ends the process at once, whatever the main thread
    # is doing, and removes the socket file when there is one.
    def watch_owner(owner)
      Thread.new do
        begin
          loop { owner.readpartial(4096) }
        rescue EOFError, IOError, SystemCallError
          nil
        end
        @listener&.remove_file
        Log.notice('owner pipe closed: exiting')
        exit!(0)
      end
    end

    def check_app_root
      root = @env['FERRY_APP_ROOT'].to_s
      raise BootError, 'FERRY_APP_ROOT is not set' if root.empty?
      raise BootError, "FERRY_APP_ROOT #{root} is not a directory" unless File.directory?(root)

      root = File.expand_path(root)
      unless File.file?(File.join(root, 'config.ru'))
        raise BootError, "config.ru not found in #{root}"
      end

      root
    end

    def load_app(app_root)
      @env['RACK_ENV'] = ferry_env if @env['RACK_ENV'].to_s.empty?
      %w[FERRY_OWNER_FD FERRY_CONTROL_FD].each { |k| @env.delete(k) }
      Process.setproctitle("ferry rack worker: #{app_root}")
      begin
        # Rack first, so that a file named rack.rb in the app root cannot shadow it.
        require 'rack'
        require 'rack/utils' # also loads uri, which Rack::Lint needs
        Dir.chdir(app_root)
        $LOAD_PATH.unshift(app_root) unless $LOAD_PATH.include?(app_root)
        result = Rack::Builder.parse_file(File.join(app_root, 'config.ru'))
      rescue Exception => e # rubocop:disable Lint/RescueException -- any boot failure is reported
        raise if e.is_a?(SignalException)

        raise BootError.new(describe_load_error(e, app_root), details_of(e, app_root))
      end
      app = result.is_a?(Array) ? result.first : result
      raise BootError, 'config.ru does not call `run`' unless app.respond_to?(:call)

      app
    end

    def missing_run?(error)
      error.instance_of?(RuntimeError) && error.message == 'missing run or map statement' &&
        error.backtrace_locations&.first&.path.to_s.end_with?('rack/builder.rb')
    end

    def describe_load_error(error, app_root)
      return 'config.ru does not call `run`' if missing_run?(error)

      message = error.message.to_s.sub(%r{\A#{Regexp.escape(app_root)}/}, '')
      if error.is_a?(SyntaxError)
        first = message.lines.first.to_s.chomp
        file, line, rest = first.match(/\A(.*?):(\d+): (.*)\z/)&.captures
        return "SyntaxError in #{file}: line #{line}: #{rest}" if file

        return "SyntaxError in config.ru: #{first}"
      end
      return "config.ru called exit (status #{error.status})" if error.is_a?(SystemExit)

      "#{error.class} while loading config.ru: #{message.lines.first.to_s.chomp}"
    end

    def details_of(error, app_root)
      text = "#{error.class}: #{error.message}\n" + Array(error.backtrace).map { |l| "    #{l}\n" }.join
      text.gsub("#{app_root}/", '')
    end

    def listen
      ListenSocket.new(@env)
    rescue SystemCallError, ArgumentError => e
      raise BootError, "cannot listen on a Unix socket: #{e.message}"
    end

    def report_error(summary, details)
      summary = MessageChannel.sanitize_item(summary, 4096)
      details = MessageChannel.sanitize_item(details, MessageChannel::MAX_PAYLOAD - summary.bytesize - 16)
      Log.error(summary, { app: @env['FERRY_APP_ROOT'].to_s, step: 'load_app' }, details.lines.map(&:chomp))
      MessageChannel.write_array(@control, ['error', summary, details])
    rescue SystemCallError, IOError => e
      Log.error("the control channel failed: #{e.class}: #{e.message}", step: 'send_error')
    end
  end
end

exit(FerryLoader::Loader.new.run) if File.expand_path($PROGRAM_NAME) == File.expand_path(__FILE__)
