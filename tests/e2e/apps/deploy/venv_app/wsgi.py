"""Needs `ferry_venv_only`, a module only the test's virtualenv holds; answers with the
interpreter's prefix and executable, so the test sees which Python served it."""
import sys

import ferry_venv_only


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s\n%s\n%s" % (ferry_venv_only.VALUE, sys.prefix, sys.executable)).encode()]
