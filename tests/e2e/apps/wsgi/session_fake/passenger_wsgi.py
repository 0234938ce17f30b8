# Never loaded. Its name makes `ferry start` and `ferry worker` take this directory for a WSGI
# app, so that they run the "WSGI loader" of FERRY_LOADERS_DIR, which the tests point at
# loaders/ next to this file: a fake worker that breaks session protocol v2 on purpose
# (tests/e2e/test_session_violations.py).
