"""HTTP routes for the platform callbacks: GET/POST /wecom/callback and /oa/callback.

Order per POST, cheapest refusal first: size cap (413) → freshness and signature (403) and
XML (400) inside the transport → record exactly once → answer "success" → dispatch in the
background. The platform gives us 5 s and retries three times, so nothing slow runs before the
answer. Every unexpected error is logged and answered 400: a 500 would only make it retry.
"""
from __future__ import annotations

import logging

from aiohttp import web

from bot.transports.inbound import inbox as inbound
from bot.transports.inbound import oa, wecom
from bot.transports.inbound.base import CallbackError

log = logging.getLogger("linli.callbacks")

TRANSPORTS = {"wecom": wecom, "oa": oa}


class TooLarge(Exception):
    pass


async def read_capped(request: web.Request, limit: int) -> bytes:
    """Read the body, refusing more than `limit` bytes. Content-Length is checked first; the
    stream is read by hand so a chunked or lying request can't get past the cap either
    (aiohttp's client_max_size only guards request.read())."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge()
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(8192):
        size += len(chunk)
        if size > limit:
            raise TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def add_callback_routes(web_app: web.Application, app) -> None:
    for channel, transport in TRANSPORTS.items():
        web_app.router.add_get(f"/{channel}/callback", _verify_handler(app, channel, transport))
        web_app.router.add_post(f"/{channel}/callback", _message_handler(app, channel, transport))


def _settings(app, channel: str):
    return getattr(app.settings, channel)


def _verify_handler(app, channel: str, transport):
    async def verify(request: web.Request) -> web.Response:
        settings = _settings(app, channel)
        if not transport.configured(settings):
            return web.Response(status=404, text="channel not configured")
        try:
            echo = transport.verify_url(settings, request.query, app.clock.now(),
                                        app.settings.server.timestamp_window_s)
        except CallbackError as e:
            log.warning("%s URL verification refused (%d): %s", channel, e.status, e)
            return web.Response(status=e.status)
        except Exception:
            log.exception("%s URL verification failed unexpectedly", channel)
            return web.Response(status=400)
        return web.Response(text=echo)

    return verify


def _message_handler(app, channel: str, transport):
    async def receive(request: web.Request) -> web.Response:
        settings = _settings(app, channel)
        if not transport.configured(settings):
            return web.Response(status=404, text="channel not configured")
        try:
            body = await read_capped(request, app.settings.server.max_body_bytes)
            msg = transport.parse_callback(settings, request.query, body, app.clock.now(),
                                           app.settings.server.timestamp_window_s)
            recorded = await inbound.record_async(app, msg)
        except TooLarge:
            log.warning("%s callback refused: body over %d bytes", channel,
                        app.settings.server.max_body_bytes)
            return web.Response(status=413)
        except CallbackError as e:
            log.warning("%s callback refused (%d): %s", channel, e.status, e)
            return web.Response(status=e.status)
        except Exception:
            log.exception("%s callback failed unexpectedly", channel)
            return web.Response(status=400)
        if recorded is None:
            log.info("%s duplicate callback %s ignored", channel, msg.dedupe_key)
        elif app.dispatch_inline:
            app.spawn(inbound.process(app, recorded), name=f"inbound:{recorded.inbound_id}")
        # else: a front process only records; the worker process consumes the `inbound` rows
        return web.Response(text="success")

    return receive
