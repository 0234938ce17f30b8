# A Sinatra app whose Gemfile names sinatra and rack only: under Bundler, a gem the system has
# but the Gemfile does not (railties) cannot be loaded.
require 'sinatra/base'

class BundledApp < Sinatra::Base
  get '/' do
    rails = begin
      require 'rails'
      'loadable'
    rescue LoadError
      'not loadable'
    end
    content_type 'text/plain'
    "bundler #{defined?(Bundler) ? 'on' : 'off'}\n" \
      "gemfile #{ENV['BUNDLE_GEMFILE']}\n" \
      "sinatra #{Gem.loaded_specs['sinatra']&.version}\n" \
      "rails #{rails}\n"
  end
end

run BundledApp
