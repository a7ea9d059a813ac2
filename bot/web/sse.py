"""Server-sent events for the live alert page.

The database is the truth and many writers touch it (callbacks, the outbox, the escalation job,
another process running `linli alert`), so instead of hooking each of them the stream polls one
cheap fingerprint query and sends a full JSON snapshot only when it changed. The poll interval is
wall time and injectable (tests shorten it); a comment line every `keepalive_s` keeps proxies
from closing an idle stream. Streams end when the client goes away or the server shuts down.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

from aiohttp import web

log = logging.getLogger("linli.web.sse")
# set on a request once its stream's headers are sent: an error after that cannot become an error
# page (the dashboard's errors middleware checks it)
STREAMING = web.RequestKey("linli_streaming", bool) if hasattr(web, "RequestKey") else "linli_streaming"


class Streams:
    """Open streams, so shutdown can end them instead of waiting for clients to leave."""

    def __init__(self, poll_s: float = 1.0, keepalive_s: float = 15.0):
        self.poll_s, self.keepalive_s = poll_s, keepalive_s
        self.closing = asyncio.Event()
        self.open = 0

    async def shutdown(self, _app=None) -> None:
        self.closing.set()

    async def serve(self, request: web.Request, fingerprint, build) -> web.StreamResponse:
        """Stream `build()` (a JSON-able dict) whenever `fingerprint()` changes."""
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})  # nginx must not buffer the stream
        await resp.prepare(request)
        request[STREAMING] = True
        self.open += 1
        last, quiet_since = None, time.monotonic()
        try:
            while not self.closing.is_set():
                now = fingerprint()
                if now != last:
                    last = now
                    data = json.dumps(build(), ensure_ascii=False, separators=(",", ":"))
                    await resp.write(f"event: snapshot\ndata: {data}\n\n".encode())
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= self.keepalive_s:
                    await resp.write(b": keepalive\n\n")
                    quiet_since = time.monotonic()
                try:
                    await asyncio.wait_for(self.closing.wait(), timeout=self.poll_s)
                except TimeoutError:
                    pass
        except ConnectionResetError:
            log.debug("event stream %s closed by the client", request.path)
        finally:
            self.open -= 1
        return resp
