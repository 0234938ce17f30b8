# The bench's Rack app: the same three routes as bench/apps/wsgi and bench/apps/{c,fcgi}.
#   GET /hello  -> 200 text/plain, 12 bytes "hello world\n"
#   GET /1m     -> 200 application/octet-stream, 1 MiB (byte i is i % 251)
#   POST /echo  -> 200 application/octet-stream, the request body
#   anything else -> 404
HELLO = "hello world\n".b.freeze
MIB = (0...(1 << 20)).map { |i| i % 251 }.pack("C*").freeze
NOT_FOUND = "not found\n".b.freeze

run(lambda do |env|
  path = env["PATH_INFO"]
  if path == "/hello"
    [200, { "Content-Type" => "text/plain", "Content-Length" => "12" }, [HELLO]]
  elsif path == "/1m"
    [200, { "Content-Type" => "application/octet-stream",
            "Content-Length" => MIB.bytesize.to_s }, [MIB]]
  elsif path == "/echo" && env["REQUEST_METHOD"] == "POST"
    input = env["rack.input"]
    body = input ? (input.read || "".b) : "".b
    [200, { "Content-Type" => "application/octet-stream",
            "Content-Length" => body.bytesize.to_s }, [body]]
  else
    [404, { "Content-Type" => "text/plain", "Content-Length" => NOT_FOUND.bytesize.to_s },
     [NOT_FOUND]]
  end
end)
