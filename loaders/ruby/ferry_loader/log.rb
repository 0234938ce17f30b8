# frozen_string_literal: true

# Log lines in ferry's style on stderr:
#   2025-05-01T12:00:03.512Z [warn] rack: pid=4242 key=value: message
# One IO#write per line (plus its continuation lines), no Mutex, so it is safe to call from a
# signal trap and from any thread.
module FerryLoader
  module Log
    LEVELS = %w[alert error warn notice info debug].freeze

    module_function

    def timestamp
      t = Time.now.utc
      t.strftime('%Y-%m-%dT%H:%M:%S.') + format('%03d', t.usec / 1000) + 'Z'
    end

    # Formats one line: <fields> is a Hash of key=value pairs written before the message; values
    # with spaces or quotes are inspected so the line stays parseable. <extra> lines (e.g. a
    # backtrace) follow, indented, in the same write.
    def format_line(level, fields, message, extra = nil)
      kv = { pid: Process.pid }.merge(fields).map { |k, v| "#{k}=#{format_value(v)}" }.join(' ')
      line = +"#{timestamp} [#{level}] rack: #{kv}: #{message.to_s.scrub.delete("\0")}\n"
      extra&.each { |l| line << "    #{l.to_s.scrub}\n" }
      line
    end

    def format_value(value)
      s = value.to_s.scrub
      s.match?(/[\s"=\\]/) || s.empty? ? s.inspect : s
    end

    def write(level, fields, message, extra = nil)
      $stderr.write(format_line(level, fields, message, extra))
    rescue IOError, SystemCallError
      # stderr is gone (the core closed it): nothing left to tell.
      nil
    end

    LEVELS.each do |level|
      define_singleton_method(level) do |message, fields = {}, extra = nil|
        write(level, fields, message, extra)
      end
    end
  end
end
