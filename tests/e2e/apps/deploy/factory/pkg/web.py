"""A Flask app factory (Flask's tutorial layout), for `--app pkg.web:create_app()`."""
from flask import Flask


def create_app(greeting="hello from the factory"):
    app = Flask(__name__)

    @app.route("/")
    def index():
        return greeting

    return app


plain = create_app("hello from pkg.web:plain")
