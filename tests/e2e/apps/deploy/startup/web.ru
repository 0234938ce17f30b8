# A rackup file by another name than config.ru, for `--startup-file web.ru`.
run ->(_env) { [200, { 'content-type' => 'text/plain' }, ['hello from web.ru']] }
