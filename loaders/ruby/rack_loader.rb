# frozen_string_literal: true

# ferry's Rack loader: loads one Rack app and hands it to the C worker runtime.
#
# Started by `ferry worker APP_DIR --type rack` (or the pool) with the spawn handshake of
# docs/protocol.md §5 (fd 3 the owner pipe, fd 4 the control channel, FERRY_APP_ROOT, FERRY_ENV,
# ...) and FERRY_EXT_DIR, the build's extension directory. Everything a worker does besides
# loading the app (the socket, both session protocols, signals, the owner pipe, the Rack env,
# rack.input, the response, the logs) is the C extension `ferry_ext` (src/ext/ruby/), built on
# the same runtime as native C workers. There is no pure-Ruby fallback: without the extension
# the loader says why on stderr and exits 1. See README.md next to this file.

$stdout.sync = true
$stderr.sync = true

# Fork hooks for apps (docs/configuration.md, "Smart spawning"): ferry's counterpart of
# Passenger's PhusionPassenger.on_event. Defined before config.ru loads, so an app can say
#
#   if defined?(Ferry)
#     Ferry.on_event(:starting_worker_process) do |forked|
#       ActiveRecord::Base.establish_connection if forked # a forked worker's own connection
#     end
#   end
#
# :starting_worker_process runs once in every worker before its first request, with forked =
# true when the worker was forked from a preloader (smart spawning) and false when it loaded the
# app itself (direct).
module Ferry
  EVENTS = %i[starting_worker_process].freeze
  @handlers = Hash.new { |h, k| h[k] = [] }

  def self.on_event(name, &block)
    raise ArgumentError, "unknown ferry event #{name.inspect} (known: #{EVENTS.join(', ')})" unless EVENTS.include?(name)
    raise ArgumentError, 'Ferry.on_event needs a block' unless block

    @handlers[name] << block
    nil
  end

  def self.call_event(name, *args)
    @handlers[name].each { |h| h.call(*args) }
  end
end

module FerryLoader
  # A boot step that failed: <summary> goes into the error message, <details> after it.
  class BootError < StandardError
    attr_reader :details

    def initialize(summary, details = '')
      super(summary)
      @details = details
    end
  end

  module_function

  # Loads ferry_ext.so from $FERRY_EXT_DIR/ruby by its full path ($LOAD_PATH is not touched, so
  # nothing in that directory can shadow the app's requires). Exits 1 with one line on stderr
  # when it cannot.
  def require_extension(env = ENV)
    path = File.join(env['FERRY_EXT_DIR'].to_s, 'ruby', 'ferry_ext.so')
    begin
      raise LoadError, "no ferry_ext extension (ferry_ext.so) in #{File.dirname(path)}" unless File.file?(path)

      require path
    rescue LoadError, StandardError => e
      require 'rbconfig'
      $stderr.write("ferry rack loader: cannot load the ferry_ext extension with #{RbConfig.ruby} " \
                    "(Ruby #{RUBY_VERSION}): #{e.class}: #{e.message}\n")
      exit!(1)
    end
  end

  def ferry_env(env = ENV)
    e = env['FERRY_ENV'].to_s
    e.empty? ? 'production' : e
  end

  # The app root and its rackup file: FERRY_STARTUP_FILE (`--startup-file`), else config.ru.
  def check_app_root(env = ENV)
    root = env['FERRY_APP_ROOT'].to_s
    raise BootError, 'FERRY_APP_ROOT is not set' if root.empty?
    raise BootError, "FERRY_APP_ROOT #{root} is not a directory" unless File.directory?(root)

    root = File.expand_path(root)
    startup = env['FERRY_STARTUP_FILE'].to_s
    if startup.empty?
      rackup = File.join(root, 'config.ru')
      raise BootError, "config.ru not found in #{root}" unless File.file?(rackup)
    else
      rackup = File.expand_path(startup, root)
      raise BootError, "the startup file #{rackup} is missing" unless File.file?(rackup)
    end
    [root, rackup]
  end

  # The rackup file as messages name it: relative to the app root when inside it.
  def shown(rackup, app_root)
    rackup.start_with?("#{app_root}/") ? rackup[(app_root.length + 1)..] : rackup
  end

  # With a Gemfile (BUNDLE_GEMFILE, else the app root's), the app runs under Bundler as it does
  # under Passenger or `bundle exec`: `bundler/setup` puts exactly the Gemfile's gems (at the
  # versions of its Gemfile.lock) on the load path, before Rack itself is loaded.
  def setup_bundler(app_root, env = ENV)
    gemfile = env['BUNDLE_GEMFILE'].to_s
    gemfile = File.join(app_root, 'Gemfile') if gemfile.empty?
    return unless File.file?(gemfile)

    env['BUNDLE_GEMFILE'] = gemfile
    begin
      require 'bundler/setup'
    rescue Exception => e # rubocop:disable Lint/RescueException -- any Bundler failure is reported
      raise if e.is_a?(SignalException)

      first = e.message.to_s.lines.first.to_s.chomp
      raise BootError.new("Bundler cannot load the gems of #{shown(gemfile, app_root)}: #{first}",
                          details_of(e, app_root))
    end
  end

  def load_app(app_root, rackup = File.join(app_root, 'config.ru'), env = ENV)
    env['RACK_ENV'] = ferry_env(env) if env['RACK_ENV'].to_s.empty?
    Process.setproctitle("ferry rack worker: #{app_root}")
    name = shown(rackup, app_root)
    setup_bundler(app_root, env)
    begin
      # Rack first, so that a file named rack.rb in the app root cannot shadow it.
      require 'rack'
      require 'rack/utils' # also loads uri, which Rack::Lint needs
      Dir.chdir(app_root)
      $LOAD_PATH.unshift(app_root) unless $LOAD_PATH.include?(app_root)
      result = Rack::Builder.parse_file(rackup)
    rescue Exception => e # rubocop:disable Lint/RescueException -- any boot failure is reported
      raise if e.is_a?(SignalException)

      raise BootError.new(describe_load_error(e, app_root, name), details_of(e, app_root))
    end
    app = result.is_a?(Array) ? result.first : result
    raise BootError, "#{name} does not call `run`" unless app.respond_to?(:call)

    app
  end

  def missing_run?(error)
    error.instance_of?(RuntimeError) && error.message == 'missing run or map statement' &&
      error.backtrace_locations&.first&.path.to_s.end_with?('rack/builder.rb')
  end

  def describe_load_error(error, app_root, name = 'config.ru')
    return "#{name} does not call `run`" if missing_run?(error)

    message = error.message.to_s.sub(%r{\A#{Regexp.escape(app_root)}/}, '')
    if error.is_a?(SyntaxError)
      first = message.lines.first.to_s.chomp
      file, line, rest = first.match(/\A(.*?):(\d+): (.*)\z/)&.captures
      return "SyntaxError in #{file}: line #{line}: #{rest}" if file

      return "SyntaxError in #{name}: #{first}"
    end
    return "#{name} called exit (status #{error.status})" if error.is_a?(SystemExit)

    "#{error.class} while loading #{name}: #{message.lines.first.to_s.chomp}"
  end

  def details_of(error, app_root)
    text = "#{error.class}: #{error.message}\n" + Array(error.backtrace).map { |l| "    #{l}\n" }.join
    text.gsub("#{app_root}/", '')
  end

  # Boots and serves. Returns the exit status.
  def run(env = ENV)
    require_extension(env)
    # First: SIGTERM and the owner pipe work while the app loads.
    return 1 unless FerryExt.boot.zero? # reported on the control channel and in the log

    %w[FERRY_OWNER_FD FERRY_CONTROL_FD].each { |k| env.delete(k) }
    begin
      app_root, rackup = check_app_root(env)
      app = load_app(app_root, rackup, env)
    rescue BootError => e
      fail_boot(e.message, e.details, env)
      return 1
    rescue StandardError => e
      fail_boot("internal error in the rack loader: #{e.class}: #{e.message}",
                Array(e.backtrace).join("\n"), env)
      return 1
    end
    loop do
      forked = false
      if FerryExt.preloading?
        status = preload
        return status unless status.nil?

        forked = true
      end
      begin
        Ferry.call_event(:starting_worker_process, forked)
      rescue Exception => e # rubocop:disable Lint/RescueException -- reported like a boot failure
        raise if e.is_a?(SignalException)

        fail_boot("starting_worker_process hook failed: #{e.class}: #{e.message}", details_of(e, env['FERRY_APP_ROOT'].to_s), env)
        return 1
      end
      status = FerryExt.serve(app, "rack #{shown(rackup, app_root)}")
      return status unless FerryExt.preloading?
      # A re-fork (docs/architecture.md): this process, forked from a warmed worker, is the app's
      # preloader now, and serves again in each worker it forks.
    end
  end

  # Smart spawning (docs/architecture.md): serves the core's spawn requests, one Process.fork per
  # worker (so Process._fork hooks run). Returns the preloader's exit status, or nil in a forked
  # child, which then serves.
  def preload
    resolve_first_request_autoloads
    OpenSSL::Random.random_bytes(1) if defined?(OpenSSL::Random) # its generator set up once, here
    # Full collections and a compaction once after the load: the objects the workers share sit
    # together and are not moved (copied) later.
    3.times { GC.start }
    GC.compact if GC.respond_to?(:compact)
    return 1 unless FerryExt.preload_start.zero?

    loop do
      return 0 unless FerryExt.preload_wait # idle time passed (logged)

      begin
        pid = Process.fork
      rescue SystemCallError => e
        FerryExt.preload_forked(-e.errno)
        next
      end
      if pid
        FerryExt.preload_forked(pid)
        next
      end
      exit!(1) unless FerryExt.preload_forked(0).zero? # reported on the control channel
      ENV.delete('FERRY_PRELOAD')
      reseed_after_fork
      return nil
    end
  end

  # Code Rack and Rails load on an app's first request, loaded here once instead of in every
  # worker (docs/performance.md, "Smart spawning"): each constant a worker defines invalidates
  # every inline constant cache of the VM, and refilling them writes to (copies) shared pages.
  # Only what every request of such an app reaches: Rack's Mime table, and Rails' env_config
  # (memoized by Rails; it loads the backtrace cleaner) and CurrentAttributes (its executor
  # resets them around every request).
  def resolve_first_request_autoloads
    Rack::Mime if Rack.autoload?(:Mime)
    return unless defined?(::Rails::Application) && ::Rails.application.is_a?(::Rails::Application)

    ::Rails.application.env_config
    ::ActiveSupport::CurrentAttributes if ::ActiveSupport.autoload?(:CurrentAttributes)
  rescue StandardError, LoadError => e
    FerryExt.log('warn', 'preloader: loading ahead what a first request loads failed: ' \
                         "#{e.class}: #{e.message}", {})
  end

  # A forked worker must not repeat its siblings' random numbers: Ruby's Random (Ruby reseeds it
  # at fork too). OpenSSL 1.1.1 and later reseed their generator in a forked child by
  # themselves; an older one gets fresh entropy here. (Seeding a newer one cost every spawn
  # ~1 ms, docs/performance.md.)
  def reseed_after_fork
    srand
    return unless defined?(OpenSSL::Random) && OpenSSL::OPENSSL_VERSION_NUMBER < 0x10101000

    OpenSSL::Random.seed(Random.urandom(32))
  end

  def fail_boot(summary, details, env)
    summary = summary.to_s.dup.force_encoding(Encoding::UTF_8).scrub
    details = details.to_s.dup.force_encoding(Encoding::UTF_8).scrub
    FerryExt.log('error', summary, { app: env['FERRY_APP_ROOT'].to_s, step: 'load_app' }, details)
    FerryExt.fail(summary, details)
  end
end

exit(FerryLoader.run) if File.expand_path($PROGRAM_NAME) == File.expand_path(__FILE__)
