# frozen_string_literal: true

# The response head (docs/protocol.md §3), worker → core: "Status: NNN Reason", then "Name: value"
# lines, CRLF line ends, an empty line. Built whole before anything is written, so an invalid
# response from the app can still be answered with a 500.
module FerryLoader
  # The app returned something that cannot be sent (bad status, header name or value).
  class InvalidResponse < StandardError; end

  module Response
    MAX_HEAD = 131_072
    HEADER_NAME = /\A[!\#$%&'*+\-.^_`|~0-9A-Za-z]+\z/.freeze
    NO_BODY_STATUS = ->(code) { code < 200 || code == 204 || code == 304 }
    BAD_VALUE = /[\r\n\0]/.freeze
    VALID_NAMES = {} # rubocop:disable Style/MutableConstant -- a cache, see valid_name?

    module_function

    def reason(code)
      Rack::Utils::HTTP_STATUS_CODES[code] || 'Unknown'
    end

    # Checks the app's [status, headers, body] triple. Returns the status as an Integer or raises
    # InvalidResponse.
    def check_triple(result)
      unless result.is_a?(Array) && result.size == 3
        raise InvalidResponse, "the app returned #{result.class} instead of [status, headers, body]"
      end

      status = result[0]
      code = status.is_a?(Integer) ? status : Integer(status.to_s, 10, exception: false)
      raise InvalidResponse, "invalid status #{status.inspect}" if code.nil? || !(100..999).cover?(code)
      raise InvalidResponse, 'headers do not respond to #each' unless result[1].respond_to?(:each)
      raise InvalidResponse, 'body does not respond to #each' unless result[2].respond_to?(:each)

      code
    end

    # Builds the head. Headers named "rack.*" (hijack and other server hints) and "Status" are not
    # sent. A value with "\n" is several headers (Rack 2), an Array value too (Rack 3). Raises
    # InvalidResponse for a header name that is not a token, a value holding CR or NUL, or a head
    # past MAX_HEAD bytes.
    def build_head(code, headers)
      head = +"Status: #{code} #{reason(code)}\r\n"
      head.force_encoding(Encoding::BINARY)
      headers.each do |name, value|
        name = name.to_s
        next if name.start_with?('rack.') || name.casecmp?('status')
        raise InvalidResponse, "invalid header name #{name.inspect}" unless valid_name?(name)

        if value.is_a?(String) && !value.include?("\n")
          add_header(head, name, value)
          next
        end
        values = value.is_a?(Array) ? value.map(&:to_s) : value.to_s.split("\n", -1)
        values = [''] if values.empty?
        values.each { |v| add_header(head, name, v) }
      end
      head << "\r\n"
      raise InvalidResponse, "response head of #{head.bytesize} bytes is over #{MAX_HEAD}" if head.bytesize > MAX_HEAD

      head
    end

    def add_header(head, name, value)
      raise InvalidResponse, "invalid value for header #{name}: #{value.inspect}" if value.match?(BAD_VALUE)

      head << name << ': ' << value.b << "\r\n"
    end

    # Names seen valid before are not matched again (apps send the same few names); the cache
    # is bounded, and a name is ASCII once valid, so it can go into the binary head as it is.
    def valid_name?(name)
      return true if VALID_NAMES.key?(name)
      return false unless name.match?(HEADER_NAME)

      VALID_NAMES.clear if VALID_NAMES.size >= 512
      VALID_NAMES[name.dup.freeze] = true
      true
    end

    # The 500 sent when the app fails before its head went out: in development the error and its
    # backtrace, otherwise a generic page with an error id that the log line also carries.
    def error_page(error, error_id, development)
      body = if development
               lines = ["500 Internal Server Error (error id #{error_id})", '',
                        "#{error.class}: #{error.message}", *Array(error.backtrace).map { |l| "    #{l}" }]
               "#{lines.join("\n")}\n"
             else
               "500 Internal Server Error\n\nThe application failed to handle this request. " \
                 "Error id: #{error_id}\n"
             end
      body = body.dup.force_encoding(Encoding::BINARY)
      head = +"Status: 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n" \
              "Content-Length: #{body.bytesize}\r\nCache-Control: no-store\r\n\r\n"
      [head.b, body]
    end
  end
end
