# frozen_string_literal: true

# The smallest Rack app ferry serves: `ferry start examples/hello-rack`.
run lambda { |env|
  body = "hello from ferry (Ruby #{RUBY_VERSION}, Rack #{Rack.release}) at #{env['PATH_INFO']}\n"
  [200, { 'Content-Type' => 'text/plain; charset=utf-8', 'Content-Length' => body.bytesize.to_s }, [body]]
}
