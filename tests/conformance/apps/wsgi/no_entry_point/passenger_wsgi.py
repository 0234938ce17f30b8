"""Boot-failure app: loads fine but defines neither `application` nor `app`."""


def handler(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"never served\n"]
