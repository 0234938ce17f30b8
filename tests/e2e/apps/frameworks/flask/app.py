"""A Flask app (Debian's python3-flask) for the framework e2e tests: JSON, multipart upload,
streaming, redirects, sessions, an exception, and the request's view of its own URL."""
from flask import Flask, Response, jsonify, redirect, request, session, stream_with_context

application = Flask(__name__)
application.secret_key = "ferry-e2e"


@application.route("/")
def index():
    return "hello from flask"


@application.route("/json", methods=["POST"])
def echo_json():
    return jsonify(got=request.get_json(), args=request.args.to_dict(), path=request.path,
                   script_root=request.script_root, url=request.url)


@application.route("/upload", methods=["POST"])
def upload():
    f = request.files["file"]
    data = f.read()
    import hashlib
    return {"name": f.filename, "sha256": hashlib.sha256(data).hexdigest(),
            "form": request.form.to_dict()}


@application.route("/stream")
def stream():
    def lines():
        for i in range(5):
            yield "line %d\n" % i
    return Response(stream_with_context(lines()), mimetype="text/plain")


@application.route("/redirect")
def to_json():
    return redirect("/json?from=redirect")


@application.route("/session")
def count():
    session["n"] = session.get("n", 0) + 1
    return str(session["n"])


@application.route("/boom")
def boom():
    raise RuntimeError("kaboom from flask")
