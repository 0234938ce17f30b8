# Only here so that the directory is detected as a WSGI app: the tests point FERRY_LOADERS_DIR
# at loaders/ beside this file, whose fake loader answers instead (see its docstring).
def application(environ, start_response):
    raise RuntimeError("the http_wire app runs under its fake loader (FERRY_LOADERS_DIR)")
