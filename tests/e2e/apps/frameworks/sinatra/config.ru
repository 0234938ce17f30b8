# A Sinatra app (Debian's ruby-sinatra) for the framework e2e tests: JSON, multipart upload,
# streaming, redirects, sessions, an exception, and the request's view of its own URL.
require 'digest'
require 'json'
require 'sinatra/base'

class FrameworkApp < Sinatra::Base
  enable :sessions
  set :session_secret, 'ferry-e2e-' * 8
  set :show_exceptions, false

  get('/') { 'hello from sinatra' }

  post '/json' do
    content_type :json
    { got: JSON.parse(request.body.read), args: request.GET, path: request.path_info,
      script_root: request.script_name, url: request.url }.to_json
  end

  post '/upload' do
    content_type :json
    f = params['file']
    { name: f[:filename], sha256: Digest::SHA256.hexdigest(f[:tempfile].read),
      form: { 'other' => params['other'] } }.to_json
  end

  get('/stream') { stream { |out| 5.times { |i| out << "line #{i}\n" } } }
  get('/redirect') { redirect '/json?from=redirect' }
  get('/session') { session[:n] = (session[:n] || 0) + 1; session[:n].to_s }
  get('/boom') { raise 'kaboom from sinatra' }
end

run FrameworkApp
