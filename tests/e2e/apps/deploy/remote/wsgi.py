"""Answers with the client address the app sees: REMOTE_ADDR REMOTE_PORT."""


def application(environ, start_response):
    body = ("%s %s" % (environ["REMOTE_ADDR"], environ["REMOTE_PORT"])).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
