# A Rails application (Debian's ruby-railties/ruby-actionpack, no Bundler, no database) for the
# framework e2e tests: the routes of the Flask and Sinatra apps plus Rails' own (params parsing,
# remote_ip, send_data, ActionController::Live, the production exception page, CSRF).
# Production mode (RACK_ENV from ferry), logging to stdout, nothing written under this directory.
require 'digest'
require 'json'
require 'tmpdir'
require 'action_controller/railtie'

class FerryRailsApp < Rails::Application
  config.load_defaults 6.1
  config.root = __dir__
  config.eager_load = true
  config.secret_key_base = 'ferry-e2e-rails-' * 8
  config.logger = ActiveSupport::Logger.new($stdout)
  config.log_level = :info
  config.consider_all_requests_local = false
  config.action_dispatch.show_exceptions = true
  # The defaults point tmp/ and the cache under the app root; keep this tree untouched.
  config.paths['tmp'] = File.join(Dir.tmpdir, "ferry-rails-#{Process.pid}")
  config.cache_store = :memory_store
  config.hosts.clear # no HostAuthorization, also under FERRY_ENV=development

  routes.append do
    root 'frameworks#index'
    post 'json' => 'frameworks#echo_json'
    post 'upload' => 'frameworks#upload'
    get 'stream' => 'frameworks#stream'
    get 'live' => 'live#lines'
    get 'redirect' => 'frameworks#to_json'
    get 'session' => 'frameworks#count'
    get 'boom' => 'frameworks#boom'
    match 'params' => 'frameworks#echo_params', via: %i[get post put]
    get 'meta' => 'frameworks#meta'
    get 'echo/:word' => 'frameworks#echo_word'
    get 'download' => 'frameworks#download'
    get 'csrf' => 'protected#token'
    post 'protected' => 'protected#create'
  end
end

# Controllers come after initialize!, as in an app where they are loaded from app/: the
# framework defaults (forgery protection included) are in place when they are defined.
Rails.application.initialize!

class FrameworksController < ActionController::Base
  skip_forgery_protection

  def index
    render plain: 'hello from rails'
  end

  def echo_json
    render json: { got: JSON.parse(request.raw_post), args: request.query_parameters,
                   path: request.path_info, script_root: request.script_name, url: request.url }
  end

  def upload
    f = params.require(:file)
    render json: { name: f.original_filename, sha256: Digest::SHA256.hexdigest(f.read),
                   form: { 'other' => params[:other] }, tempfile: !f.tempfile.is_a?(StringIO) }
  end

  # A streamed body without ActionController::Live: any object with #each. Rack 2.2's
  # Rack::ETag (in Rails' default stack) reads a whole 200 body to hash it unless the response
  # has an ETag or Last-Modified header, so a streaming action must set one.
  def stream
    headers['Cache-Control'] = 'no-cache'
    headers['Last-Modified'] = Time.now.httpdate
    self.content_type = 'text/plain'
    gap = params.fetch(:gap, '0').to_f
    count = params.fetch(:n, '5').to_i
    self.response_body = Enumerator.new do |y|
      count.times do |i|
        sleep gap if i.positive? && gap.positive?
        y << "line #{i}\n"
      end
    end
  end

  def to_json
    redirect_to '/json?from=redirect'
  end

  def count
    session[:n] = (session[:n] || 0) + 1
    render plain: session[:n].to_s
  end

  def boom
    raise 'kaboom from rails'
  end

  def echo_params
    render json: { params: params.to_unsafe_h.except('controller', 'action'),
                   query: request.query_parameters, body: request.request_parameters,
                   content_type: request.content_type }
  end

  def meta
    render json: { remote_ip: request.remote_ip, remote_addr: request.remote_addr,
                   host: request.host, port: request.port, ssl: request.ssl?,
                   base_url: request.base_url, original_url: request.original_url,
                   user_agent: request.user_agent, custom: request.headers['X-Custom-Thing'],
                   method: request.request_method, server_software: request.server_software }
  end

  def echo_word
    render json: { word: params[:word], path: request.path }
  end

  def download
    data = (0...256).map(&:chr).join.b * 1024
    send_data data, filename: 'bytes.bin', type: 'application/octet-stream'
  end
end

class LiveController < ActionController::Base
  include ActionController::Live

  # Lines <gap> seconds apart (default 0.05), written from the thread Live runs the action in
  # while the worker's main thread sends what is written. Last-Modified: see #stream above.
  def lines
    response.headers['Content-Type'] = 'text/plain'
    response.headers['Last-Modified'] = Time.now.httpdate
    gap = params.fetch(:gap, '0.05').to_f
    count = params.fetch(:n, '5').to_i
    count.times do |i|
      sleep gap if i.positive?
      response.stream.write("live #{i}\n")
    end
  ensure
    response.stream.close
  end
end

class ProtectedController < ActionController::Base
  protect_from_forgery with: :exception

  def token
    render plain: form_authenticity_token
  end

  def create
    render plain: "accepted #{params[:v]}"
  end
end

run Rails.application
