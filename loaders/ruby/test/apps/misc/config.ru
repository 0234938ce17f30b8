# frozen_string_literal: true

# A test app for the loader's own tests (no Rack::Lint: it returns responses the loader must
# refuse). FERRY_TEST_BOOT_SLEEP makes the boot slow.
require 'misc_helper'

sleep(ENV['FERRY_TEST_BOOT_SLEEP'].to_f) if ENV['FERRY_TEST_BOOT_SLEEP']

# A body that fails after its first piece: the head is already sent by then.
class FailingBody
  def each
    yield "first piece\n"
    raise 'the body failed half way'
  end

  def close; end
end

# A body whose close raises.
class CloseRaisesBody
  def each
    yield "body\n"
  end

  def close
    raise 'close failed'
  end
end

def text(body, status = 200, extra = {})
  [status, { 'Content-Type' => 'text/plain' }.merge(extra), [body]]
end

run lambda { |env|
  case env['PATH_INFO']
  when '/helper' then text(MiscHelper::GREETING)
  when '/cwd' then text(Dir.pwd)
  when '/rack-env' then text(ENV['RACK_ENV'].to_s)
  when '/ferry-fd-vars' then text(ENV.keys.grep(/\AFERRY_(OWNER|CONTROL)_FD\z/).join(','))
  when '/input'
    input = env['rack.input']
    data = input.read
    input.rewind
    again = input.read
    text("#{input.class} #{data.bytesize} #{data.encoding} #{data == again}")
  when '/url-scheme' then text(env['rack.url_scheme'])
  when '/spin'
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 5
    x = 0
    x += 1 while Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
    text("spun #{x}\n")
  when '/bad-header' then text("x\n", 200, 'X-Bad' => "a\rb")
  when '/bad-header-name' then text("x\n", 200, 'Bad Name' => 'v')
  when '/bad-status' then ['abc', {}, []]
  when '/not-array' then 'just a string'
  when '/body-raises' then [200, { 'Content-Type' => 'text/plain' }, FailingBody.new]
  when '/close-raises' then [200, { 'Content-Type' => 'text/plain' }, CloseRaisesBody.new]
  when '/rack-header' then text("ok\n", 200, 'rack.hint' => 'internal', 'Empty' => '')
  when '/status-299' then text("odd\n", 299)
  when '/exit' then exit(3)
  when %r{\A/path/} then text("#{env['SCRIPT_NAME']}|#{env['PATH_INFO']}\n")
  else text("misc\n")
  end
}
