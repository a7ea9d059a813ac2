"""JSON API over residents' requests for the dashboard.

GET  /api/requests                 ?state=&category=&urgency=&building=&limit=  (what the user may
                                   see, newest first; limit 1..LIST_MAX, default LIST_MAX)
GET  /api/requests/{id}            the request, its media and its history (events)
POST /api/requests/{id}/{action}   accept | assign {assignee} | start | resolve {note} |
                                   comment {text}

`auth(request) -> resident dict` is the dashboard's (session, CSRF); it raises
HTTPUnauthorized. Permissions are the domain's, the same as in chat: a refusal is 403, an
unknown request 404, a wrong state or missing field 409/400 with the domain's error code.
"""
from __future__ import annotations

import json

from aiohttp import web

from bot.domain import requests
from bot.domain.requests import view

_STATUS = {"not_found": 404, "forbidden": 403, "bad_state": 409, "bad_input": 400}
# action -> (domain function, JSON field carrying its text argument, if any)
_ACTIONS = {
    "accept": (requests.accept, None),
    "assign": (requests.assign, "assignee"),
    "start": (requests.start, None),
    "resolve": (requests.resolve, "note"),
    "comment": (requests.comment, "text"),
}


def _error(err: requests.RequestError) -> web.Response:
    return web.json_response({"error": err.code, "request": err.request_id, **err.info},
                             status=_STATUS.get(err.code, 400))


def _int(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None


def _limit(value: str | None) -> int:
    """The row cap asked for, clamped to 1..LIST_MAX: absent or larger = LIST_MAX (asking for
    "everything" gets the most one page may hold). Not a whole number, or below 1, is refused:
    -1 or 0 must neither lift the cap nor quietly return nothing."""
    if value in (None, ""):
        return requests.LIST_MAX
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise web.HTTPBadRequest(
            text=f"limit must be a whole number from 1 to {requests.LIST_MAX}, not {value!r}")
    return min(n, requests.LIST_MAX)


def add_request_routes(web_app: web.Application, app, auth) -> None:
    async def list_(request: web.Request) -> web.Response:
        me = await _who(request)
        q = request.query
        rows = requests.list_requests(
            app.store, me, state=q.get("state") or None, category=q.get("category") or None,
            urgency=q.get("urgency") or None, building=_int(q.get("building"), "building"),
            limit=_limit(q.get("limit")))
        return web.json_response({"requests": [view(app, r) for r in rows]})

    async def detail(request: web.Request) -> web.Response:
        me = await _who(request)
        rid = _int(request.match_info["id"], "id")
        try:
            req = requests.load(app.store, me, rid)
        except requests.RequestError as e:
            return _error(e)
        events = [{**e, "data": json.loads(e["data"]) if e["data"] else {}}
                  for e in requests.history(app.store, rid)]
        media = requests.media(app.store, rid)
        return web.json_response({"request": view(app, req), "history": events,
                                  "media": media})

    async def act(request: web.Request) -> web.Response:
        me = await _who(request)
        rid = _int(request.match_info["id"], "id")
        action = request.match_info["action"]
        if action not in _ACTIONS:
            raise web.HTTPNotFound(text=f"unknown action {action!r}")
        fn, field = _ACTIONS[action]
        body = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                raise web.HTTPBadRequest(text="body must be JSON") from None
            if not isinstance(body, dict):
                raise web.HTTPBadRequest(text="body must be a JSON object")
        args = () if field is None else (str(body.get(field) or ""),)
        try:
            req = fn(app, me, rid, *args)
        except requests.RequestError as e:
            return _error(e)
        return web.json_response({"request": view(app, requests.get(app.store, req["id"]))})

    async def _who(request: web.Request) -> dict:
        result = auth(request)
        if hasattr(result, "__await__"):  # the dashboard may look sessions up asynchronously
            result = await result
        return result

    web_app.router.add_get("/api/requests", list_)
    web_app.router.add_get(r"/api/requests/{id:\d+}", detail)
    web_app.router.add_post(r"/api/requests/{id:\d+}/{action}", act)
