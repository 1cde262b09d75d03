"""A small Bottle application."""

from __future__ import annotations

import os

import bottle

app = bottle.Bottle()
HERE = os.path.dirname(os.path.abspath(__file__))


@app.get("/hello/<name>")
def hello(name):
    return f"Hello, {name}!"


@app.get("/json")
def json_route():
    return {"framework": "bottle", "q": bottle.request.query.get("q")}


@app.post("/form")
def form():
    return {"fields": dict(bottle.request.forms.decode().items())}


@app.get("/static")
def static():
    return bottle.static_file("apps.py", root=HERE, mimetype="text/x-python")


@app.get("/stream")
def stream():
    bottle.response.content_type = "text/plain"
    for i in range(4):
        yield f"chunk {i};"
