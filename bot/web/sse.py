"""Server-sent events for the live alert page.

`LiveHub` (the alert page's stream since issue #15): one feed per watched (alert, viewer scope),
however many browsers watch it. The feed polls a cheap fingerprint every `poll_s`; only when it
changed does it build the new state and the diff from the previous one — on a thread of its own,
reading through its own SQLite connection, so the event loop that answers the platforms'
callbacks only copies bytes. Each diff gets a version (`id:` of the SSE event); a page rendered at
version N asks for `?v=N` and is sent only the diffs after N, a reconnecting EventSource likewise
(Last-Event-ID); anyone else, or one too far behind, gets one `snapshot` first. The last
`keep` diffs are kept for that. A feed with no viewers stops.

`Streams` (below) is the older per-connection poller that sends whole snapshots.

The database is the truth and many writers touch it (callbacks, the outbox, the escalation job,
another process running `linli alert`), so instead of hooking each of them the stream polls one
cheap fingerprint query and sends a full JSON snapshot only when it changed. The poll interval is
wall time and injectable (tests shorten it); a comment line every `keepalive_s` keeps proxies
from closing an idle stream. Streams end when the client goes away or the server shuts down.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

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


class _Feed:
    def __init__(self, key, callbacks, base: int):
        self.key = key
        self.fingerprint, self.state, self.change, self.first = callbacks
        self.base = self.version = base   # versions below `base` belong to an earlier feed
        self.dropped = base               # diffs up to this version are no longer kept
        self.ring: collections.deque = collections.deque()
        self.viewers = 0
        self.ended = False
        self.stopped = False
        self.changed = asyncio.Event()
        self.ready = asyncio.Event()      # the first state is built (diffs can follow)
        self.task: asyncio.Task | None = None

    def after(self, v: int) -> list[tuple[int, str]]:
        return [(n, data) for n, data in self.ring if n > v]

    def notify(self) -> None:
        old, self.changed = self.changed, asyncio.Event()
        old.set()


class LiveHub:
    """Shared live feeds (see the module docstring). `open_reader()`: a connection for the feed's
    thread (None: compute on the loop with the callbacks' own store, e.g. an in-memory one)."""

    def __init__(self, poll_s: float = 1.0, keepalive_s: float = 15.0, keep: int = 64, open_reader=None):
        self.poll_s, self.keepalive_s, self.keep = poll_s, keepalive_s, keep
        self.open_reader = open_reader
        self.closing = asyncio.Event()
        self.feeds: dict = {}
        self.seq = 0
        self.open = 0
        self.builds = 0  # states built, all feeds (tests: one per change, not one per viewer)
        self._executor: ThreadPoolExecutor | None = None
        self._reader = None

    def version_of(self, key) -> int:
        feed = self.feeds.get(key)
        return feed.version if feed is not None and feed.ready.is_set() else 0

    async def shutdown(self, _app=None) -> None:
        self.closing.set()
        for feed in list(self.feeds.values()):
            feed.notify()
        if self._executor is not None:
            reader, self._reader = self._reader, None
            if reader is not None:
                self._executor.submit(reader.close)
            self._executor.shutdown(wait=False)
            self._executor = None

    async def _run(self, fn, *args):
        """fn(reader_store_or_None, *args), on the feed thread when there is a reader."""
        if self.open_reader is None:
            return fn(None, *args)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="linli-live")

        def call():
            if self._reader is None:
                self._reader = self.open_reader()
            return fn(self._reader, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _feed(self, key, callbacks) -> _Feed:
        feed = self.feeds.get(key)
        if feed is None or feed.stopped:
            self.seq += 1
            feed = self.feeds[key] = _Feed(key, callbacks, self.seq)
            feed.task = asyncio.get_running_loop().create_task(self._poll(feed), name=f"live-feed-{key}")
        return feed

    async def _poll(self, feed: _Feed) -> None:
        last_fp, state = object(), None
        try:
            while not self.closing.is_set() and feed.viewers > 0:
                try:
                    fp = await self._run(feed.fingerprint)
                    if fp != last_fp:
                        cur = await self._run(feed.state, state)
                        self.builds += 1
                        event = None if state is None else await self._run(feed.change, state, cur)
                        last_fp, state = fp, cur
                        if event:
                            self._publish(feed, event)
                        if not feed.ready.is_set():
                            feed.ready.set()
                            feed.notify()
                        if cur.get("ended"):
                            feed.ended = True
                            feed.notify()
                            return
                except Exception:  # a busy database or a bug: log it, keep the page's stream
                    log.exception("live feed %s: building an update failed", feed.key)
                try:
                    await asyncio.wait_for(self.closing.wait(), timeout=self.poll_s)
                except TimeoutError:
                    pass
        finally:
            feed.stopped = True
            if self.feeds.get(feed.key) is feed:
                del self.feeds[feed.key]
            feed.notify()

    def _publish(self, feed: _Feed, event: dict) -> None:
        self.seq += 1
        feed.version = self.seq
        feed.ring.append((self.seq, json.dumps(dict(event, v=self.seq), ensure_ascii=False,
                                               separators=(",", ":"))))
        while len(feed.ring) > self.keep:
            feed.dropped = feed.ring.popleft()[0]
        feed.notify()

    async def serve(self, request: web.Request, key, callbacks, *, since: int | None = None) -> web.StreamResponse:
        """Stream the feed `key` (callbacks: fingerprint(store), state(store, prev),
        change(store, prev, cur) -> diff or None, first(store) -> snapshot) to one viewer."""
        if self.closing.is_set():
            raise web.HTTPServiceUnavailable(text="shutting_down")
        last_id = request.headers.get("Last-Event-ID", "")
        if last_id.isascii() and last_id.isdigit() and len(last_id) < 19:
            since = int(last_id)
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})  # nginx must not buffer the stream
        await resp.prepare(request)
        request[STREAMING] = True
        self.open += 1
        feed = self._feed(key, callbacks)
        feed.viewers += 1
        try:
            while not (feed.ready.is_set() or feed.stopped or self.closing.is_set()):
                await feed.changed.wait()  # the poller notifies once the first state is built
            if since is None or since < feed.dropped or since > feed.version:
                # no usable baseline: the whole live part once, then diffs after this version
                since = feed.version
                snap = await self._run(feed.first)
                data = json.dumps(dict(snap, v=since), ensure_ascii=False, separators=(",", ":"))
                await resp.write(f"id: {since}\nevent: snapshot\ndata: {data}\n\n".encode())
            quiet_since = time.monotonic()
            while not self.closing.is_set():
                changed = feed.changed
                for v, data in feed.after(since):
                    await resp.write(f"id: {v}\nevent: diff\ndata: {data}\n\n".encode())
                    since, quiet_since = v, time.monotonic()
                if feed.ended:
                    await resp.write(b"event: ended\ndata: {}\n\n")
                    break
                if feed.stopped:
                    break  # the feed failed or the hub closes: the browser reconnects
                if time.monotonic() - quiet_since >= self.keepalive_s:
                    await resp.write(b": keepalive\n\n")
                    quiet_since = time.monotonic()
                try:
                    await asyncio.wait_for(changed.wait(), timeout=self.keepalive_s)
                except TimeoutError:
                    pass
        except ConnectionResetError:
            log.debug("event stream %s closed by the client", request.path)
        finally:
            self.open -= 1
            feed.viewers -= 1
        return resp
