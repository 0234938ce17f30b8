"""The canonical Flask layout: app.py with `app = Flask(__name__)` and no `application`."""
from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "hello from flask app.py"
