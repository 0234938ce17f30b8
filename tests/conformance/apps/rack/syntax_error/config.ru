# Boot failure: this file does not parse (the block below is never closed).
run lambda { |env|
  [200, { 'Content-Type' => 'text/plain' }, ["never served\n"]]
