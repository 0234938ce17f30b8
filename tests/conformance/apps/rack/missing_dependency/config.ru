# Boot failure: this file requires a gem that does not exist.
require 'nonexistent_gem'

run lambda { |env| [200, { 'Content-Type' => 'text/plain' }, ["never served\n"]] }
