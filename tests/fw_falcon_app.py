"""A small Falcon application."""

from __future__ import annotations

import falcon


class Items:
    def __init__(self):
        self.items = {}

    def on_get(self, req, resp, item_id=None):
        if item_id is None:
            resp.media = {"items": sorted(self.items)}
        elif item_id in self.items:
            resp.media = self.items[item_id]
        else:
            raise falcon.HTTPNotFound()

    def on_post(self, req, resp):
        data = req.get_media()
        self.items[data["id"]] = data
        resp.status = falcon.HTTP_201
        resp.media = {"created": data["id"]}


class Raw:
    def on_put(self, req, resp):
        body = req.bounded_stream.read()
        resp.content_type = "application/octet-stream"
        resp.data = body[::-1]


items = Items()
app = falcon.App()
app.add_route("/items", items)
app.add_route("/items/{item_id}", items)
app.add_route("/raw", Raw())
