# Smart spawning e2e app (tests/e2e/test_smart_spawn.py): state loaded once (shared by the
# forked workers), the starting_worker_process hook (ferry's Ferry.on_event), and /pid, /ppid,
# /random (Ruby's rand), /booted (the pid that loaded config.ru), /both (that and /pid),
# /slow (/pid after 0.5 s), /mime-autoload (Rack.autoload?(:Mime): nil once Rack::Mime is loaded),
# /ssl-random (the pid and 16 bytes of OpenSSL's generator), /status/NNN (that status), /warm
# (fills a per-process cache, lazily, like an app's first requests do; says whose it is) and
# /warmed (whose cache this process has, or "cold").
require 'openssl'

BOOTED_IN = Process.pid
$warmed_by = nil
SHARED = Array.new(200_000) { |i| "row #{i}" * 8 }

if defined?(Ferry)
  Ferry.on_event(:starting_worker_process) do |forked|
    log = ENV['SMART_FORK_LOG']
    File.open(log, 'a') { |f| f.puts("#{Process.pid} #{forked}") } if log
  end
end

run lambda { |env|
  body = case env['PATH_INFO']
         when '/pid' then Process.pid.to_s
         when '/ppid' then Process.ppid.to_s
         when '/random' then rand.to_s
         when '/booted' then BOOTED_IN.to_s
         when '/shared' then SHARED.size.to_s
         when '/both' then "#{BOOTED_IN} #{Process.pid}"
         when '/slow' then sleep(0.5) && Process.pid.to_s
         when '/warm' then ($warmed_by ||= Process.pid).to_s
         when '/warmed' then ($warmed_by || 'cold').to_s
         when '/mime-autoload' then Rack.autoload?(:Mime).inspect
         when '/ssl-random' then "#{Process.pid} #{OpenSSL::Random.random_bytes(16).unpack1('H*')}"
         else 'smart'
         end
  status = env['PATH_INFO'].start_with?('/status/') ? env['PATH_INFO'][8..].to_i : 200
  [status, { 'Content-Type' => 'text/plain', 'Content-Length' => body.bytesize.to_s }, [body]]
}
