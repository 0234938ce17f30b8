# frozen_string_literal: true

# Runs every test of the Rack loader: ruby loaders/ruby/test/all.rb
Dir[File.join(__dir__, 'test_*.rb')].sort.each { |f| require f }
