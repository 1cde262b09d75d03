"""A small Flask application."""

from __future__ import annotations

import os

from flask import Flask, Response, jsonify, request, send_file, stream_with_context

app = Flask(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))


@app.get("/json")
def json_route():
    return jsonify(message="hello", args=request.args.to_dict(),
                   path=request.path, method=request.method)


@app.post("/form")
def form_route():
    upload = request.files.get("upload")
    return jsonify(form=request.form.to_dict(),
                   upload=upload.read().decode() if upload else None)


@app.post("/json-body")
def json_body():
    data = request.get_json()
    return jsonify(received=data, length=request.content_length)


@app.get("/stream")
def stream():
    n = int(request.args.get("n", "5"))

    def gen():
        for i in range(n):
            yield f"part {i}\n"

    return Response(stream_with_context(gen()), mimetype="text/plain")


@app.get("/file")
def file_route():
    return send_file(os.path.join(HERE, "apps.py"), mimetype="text/x-python")


@app.get("/error")
def error_route():
    raise RuntimeError("flask view failed")


@app.get("/unicode/<name>")
def unicode_route(name):
    return jsonify(name=name)
