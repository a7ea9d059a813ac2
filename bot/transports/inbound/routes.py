"""HTTP routes for the platform callbacks: GET/POST /wecom/callback and /oa/callback.

Order per POST, cheapest refusal first: body read timeout (408) and size cap (413) →
freshness and signature (403) and XML (400) inside the transport → record exactly once (403 for
a replayed timestamp/nonce) → answer "success" → dispatch in the background. The platform gives
us 5 s and retries three times, so nothing slow runs before the answer.

What a refusal answers: input we will never accept gets a 4xx, which the platform does not
retry. A valid message we failed to write gets 503, which it does: a 4xx there would lose it.
An unexpected error while parsing unverified input is logged and answered 400 (a retry would
fail the same way); no input ever gets a 500.
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.transports.inbound import inbox as inbound
from bot.transports.inbound import oa, wecom
from bot.transports.inbound.base import CallbackError

log = logging.getLogger("linli.callbacks")

TRANSPORTS = {"wecom": wecom, "oa": oa}


BODY_READ_TIMEOUT_S = 10.0  # default for [server] body_read_timeout_s; 0 turns it off

# what reading the body raises when the client disconnects or sends a broken body
# (aiohttp: ConnectionResetError("Connection lost"), or a payload error from the parser)
CLIENT_GONE = (ConnectionError, HttpProcessingError, asyncio.IncompleteReadError, EOFError)


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
        started = time.monotonic()
        server = app.settings.server
        timeout_s = getattr(server, "body_read_timeout_s", BODY_READ_TIMEOUT_S)
        try:
            async with asyncio.timeout(timeout_s or None):
                body = await read_capped(request, server.max_body_bytes)
        except TooLarge:
            log.warning("%s callback refused: body over %d bytes", channel, server.max_body_bytes)
            return await _answer_and_close(request, 413)
        except TimeoutError:
            # a slow or stalled client: don't hold the connection (and its buffers) open
            log.warning("%s callback refused: body not received within %ss", channel, timeout_s)
            return await _answer_and_close(request, 408)
        except CLIENT_GONE as e:
            # nobody is left to answer; one line, no traceback (they come by the hundred)
            log.info("%s callback: client went away while sending the body (%s)", channel,
                     type(e).__name__)
            return await _answer_and_close(request, 400)
        try:
            msg = transport.parse_callback(settings, request.query, body, app.clock.now(),
                                           server.timestamp_window_s)
        except CallbackError as e:
            log.warning("%s callback refused (%d): %s", channel, e.status, e)
            return web.Response(status=e.status)
        except Exception:
            # a bug in parsing: the message is not verified, and a retry would fail the same way
            log.exception("%s callback failed unexpectedly", channel)
            return web.Response(status=400)
        try:
            # the give-up deadline counts from the request's arrival, as the platform's 5 s do
            give_up = getattr(server, "record_give_up_s", inbound.RECORD_GIVE_UP_S)
            recorded = await inbound.record_callback(
                app, msg, query=request.query, body=body,
                give_up_s=max(0.0, give_up - (time.monotonic() - started)))
        except inbound.Replay as e:
            log.warning("%s callback refused (403): replayed signature: %s", channel, e)
            return web.Response(status=403)
        except inbound.RecordTimeout as e:
            # a valid message we could not write: 503 makes the platform retry it; a 4xx would
            # lose it (the platform does not retry those)
            log.error("%s callback %s not recorded in time, answered 503: %s", channel,
                      msg.dedupe_key, e)
            return web.Response(status=503, headers={"Retry-After": "1"})
        except Exception:
            log.exception("%s callback %s could not be recorded, answered 503", channel, msg.dedupe_key)
            return web.Response(status=503, headers={"Retry-After": "1"})
        if recorded is None:
            log.info("%s duplicate callback %s ignored", channel, msg.dedupe_key)
        elif app.dispatch_inline:
            app.spawn(inbound.process(app, recorded), name=f"inbound:{recorded.inbound_id}")
        # else: a front process only records; the worker process consumes the `inbound` rows
        return web.Response(text="success")

    return receive


async def _answer_and_close(request: web.Request, status: int) -> web.Response:
    """Answer, then close the connection without reading the rest of the body. Returning the
    response alone is not enough: aiohttp would keep reading ("lingering") up to 10 s more for
    the unread body, which is just what a stalled client wants."""
    response = web.Response(status=status)
    response.force_close()
    try:
        await response.prepare(request)
        await response.write_eof()
    except CLIENT_GONE:
        pass  # nobody to answer
    protocol = request.protocol
    if protocol is not None:
        protocol.force_close()
    return response
