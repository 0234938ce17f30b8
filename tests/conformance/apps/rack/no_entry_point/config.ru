# Boot failure: this file loads, but never calls `run`, so there is no app to serve.
greeting = "nobody will see this\n"
greeting.freeze
