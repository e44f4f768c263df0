"""ARI client: REST over HTTP and the events WebSocket, with reconnect.

The events WebSocket is connected before anything else is done for the app,
because Asterisk ejects a channel that enters a Stasis app nobody listens to.
Events are routed by the channel and bridge IDs they mention to whoever
registered interest in those IDs (`AriClient.watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from mediastream import metrics
from mediastream.errors import Unavailable

log = logging.getLogger(__name__)

Event = dict[str, Any]


@dataclass(frozen=True)
class AriConfig:
    """Where and how to reach one Asterisk's ARI.

    Attributes:
        url: Base URL of ARI, e.g. ``http://127.0.0.1:8088/ari``.
        username: ARI user (ari.conf).
        password: ARI password.
        app: Stasis application name the gateway registers.
        request_timeout: Seconds to wait for one REST answer.
    """

    url: str
    username: str
    password: str
    app: str = "mediastream"
    request_timeout: float = 10.0

    def media_url(self, connection_id: str) -> str:
        """URL of chan_websocket's media endpoint for one connection ID."""
        base = self.url.rstrip("/").removesuffix("/ari")
        scheme = "wss" if base.startswith("https") else "ws"
        return f"{scheme}{base[base.index(':') :]}/media/{connection_id}"

    @property
    def events_url(self) -> str:
        """URL of the events WebSocket (credentials go in a header, not the URL)."""
        base = self.url.rstrip("/")
        scheme = "wss" if base.startswith("https") else "ws"
        return f"{scheme}{base[base.index(':') :]}/events?app={self.app}&subscribeAll=false"


class AriError(Exception):
    """ARI answered a request with an error status.

    Attributes:
        status: HTTP status code.
        message: Asterisk's message (`message` or `error` key of the body).
    """

    def __init__(self, status: int, message: str, method: str, path: str) -> None:
        super().__init__(f"ARI {method} {path}: {status} {message}")
        self.status = status
        self.message = message


def event_ids(event: Mapping[str, Any]) -> set[str]:
    """IDs of every channel and bridge an ARI event is about.

    Playback events name theirs only in ``playback.target_uri``
    (``channel:<id>`` or ``bridge:<id>``).
    """
    ids: set[str] = set()
    for key in ("channel", "bridge", "peer", "replace_channel"):
        obj = event.get(key)
        if isinstance(obj, dict) and isinstance(obj.get("id"), str):
            ids.add(obj["id"])
    playback = event.get("playback")
    if isinstance(playback, dict) and isinstance(playback.get("target_uri"), str):
        kind, _, target = playback["target_uri"].partition(":")
        if kind in ("channel", "bridge") and target:
            ids.add(target)
    return ids


class EventWatch:
    """A queue of the ARI events about a set of channel and bridge IDs."""

    def __init__(self, client: AriClient, ids: Iterable[str]) -> None:
        self._client = client
        self.ids: set[str] = set()
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.add(*ids)

    def add(self, *ids: str) -> None:
        """Also receive the events about `ids`."""
        for i in ids:
            self.ids.add(i)
            self._client._watches.setdefault(i, set()).add(self)

    def close(self) -> None:
        """Stop receiving events."""
        for i in self.ids:
            watches = self._client._watches.get(i)
            if watches is not None:
                watches.discard(self)
                if not watches:
                    del self._client._watches[i]
        self.ids.clear()

    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float) -> Event:
        """Wait for the first queued event that satisfies `predicate`.

        Events that do not match stay in order behind it for later readers.

        Raises:
            TimeoutError: if no such event arrives within `timeout` seconds.
        """
        skipped: list[Event] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = await self.queue.get()
                    if predicate(event):
                        return event
                    skipped.append(event)
        finally:
            # Keep the skipped events, first, for whoever reads the queue next.
            rest = []
            while not self.queue.empty():
                rest.append(self.queue.get_nowait())
            for e in skipped + rest:
                self.queue.put_nowait(e)


REST_CONNECTIONS = 100
"""Concurrent ARI REST requests (aiohttp's default pool size).

WebSockets (the events one, chan_websocket media) get a pool of their own, without
a limit: each holds its connection for as long as it is open, and in one shared pool
99 WebSocket-channel streams left the 100th stream's REST requests waiting until
they timed out.
"""


class AriClient:
    """One Asterisk's ARI: REST requests and routed events."""

    def __init__(self, config: AriConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._websocket_session: aiohttp.ClientSession | None = None
        self._events_task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._watches: dict[str, set[EventWatch]] = {}
        self._state_listeners: list[Callable[[bool], None]] = []
        self.asterisk_id: str | None = None

    @property
    def websocket_session(self) -> aiohttp.ClientSession:
        """The HTTP session for WebSockets, chan_websocket media included (not the REST pool)."""
        if self._websocket_session is None:
            raise Unavailable("ARI client is not started")
        return self._websocket_session

    @property
    def connected(self) -> bool:
        """Whether the events WebSocket is up (so the app is registered)."""
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the events WebSocket; return whether it is up."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def on_connection_change(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(connected)` whenever the events WebSocket goes up or down."""
        self._state_listeners.append(listener)

    async def start(self, wait: float = 10.0) -> None:
        """Open the session and the events WebSocket; keep it open from now on.

        Raises:
            Unavailable: if the events WebSocket is not up within `wait` seconds.
        """
        self._session = self._new_session(REST_CONNECTIONS)
        self._websocket_session = self._new_session(0)
        self._events_task = asyncio.create_task(self._run_events(), name="ari-events")
        try:
            await asyncio.wait_for(self._connected.wait(), wait)
        except TimeoutError:
            raise Unavailable(f"ARI events WebSocket at {self.config.url} not reachable") from None

    async def close(self) -> None:
        """Close the events WebSocket and the HTTP session."""
        if self._events_task is not None:
            self._events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events_task
        for session in (self._session, self._websocket_session):
            if session is not None:
                await session.close()
        self._set_connected(False)

    def _new_session(self, connections: int) -> aiohttp.ClientSession:
        """An authenticated session with a pool of `connections` (0: no limit)."""
        return aiohttp.ClientSession(
            headers={
                "Authorization": aiohttp.encode_basic_auth(
                    self.config.username, self.config.password
                )
            },
            timeout=aiohttp.ClientTimeout(total=self.config.request_timeout),
            connector=aiohttp.TCPConnector(limit=connections),
        )

    def watch(self, *ids: str) -> EventWatch:
        """Start queueing the events about `ids` (call `close()` on the result)."""
        return EventWatch(self, ids)

    @contextlib.asynccontextmanager
    async def watching(self, *ids: str) -> AsyncIterator[EventWatch]:
        """`watch` as a context manager."""
        w = self.watch(*ids)
        try:
            yield w
        finally:
            w.close()

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one REST request to ARI and return the decoded JSON body (or None).

        Raises:
            AriError: Asterisk answered with a status of 400 or above.
            Unavailable: Asterisk could not be reached.
        """
        if self._session is None:
            raise Unavailable("ARI client is not started")
        url = self.config.url.rstrip("/") + path
        try:
            async with self._session.request(method, url, params=params, json=body) as resp:
                metrics.ARI_REQUESTS.labels(method, f"{resp.status // 100}xx").inc()
                text = await resp.text()
                data = json.loads(text) if text else None
                if resp.status >= 400:
                    message = ""
                    if isinstance(data, dict):
                        message = str(data.get("message") or data.get("error") or "")
                    raise AriError(resp.status, message or text, method, path)
                return data
        except (aiohttp.ClientError, TimeoutError, ValueError, RecursionError) as exc:
            # ValueError: not JSON (JSONDecodeError), or an integer too long to convert;
            # RecursionError: nested deeper than the interpreter's recursion limit.
            metrics.ARI_REQUESTS.labels(method, "error").inc()
            if isinstance(exc, ValueError | RecursionError):
                raise Unavailable(f"ARI {method} {path}: unreadable answer") from exc
            raise Unavailable(f"ARI {method} {path}: {exc.__class__.__name__}: {exc}") from exc

    def _set_connected(self, up: bool) -> None:
        if up == self._connected.is_set():
            return
        if up:
            self._connected.set()
        else:
            self._connected.clear()
        metrics.ASTERISK_CONNECTED.labels(self.config.url).set(1 if up else 0)
        for listener in self._state_listeners:
            listener(up)

    async def _run_events(self) -> None:
        assert self._websocket_session is not None
        backoff = 0.1
        while True:
            try:
                async with self._websocket_session.ws_connect(
                    self.config.events_url,
                    heartbeat=15.0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                ) as ws:
                    log.info("ARI events connected", extra={"ari_url": self.config.url})
                    backoff = 0.1
                    self._set_connected(True)
                    async for msg in ws:
                        if msg.type is aiohttp.WSMsgType.TEXT:
                            self._dispatch(msg.data)
                        elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                            break
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("ARI events unavailable: %s", exc)
            self._set_connected(False)
            self._broadcast_disconnect()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _dispatch(self, text: str) -> None:
        try:
            event = json.loads(text)
        except (ValueError, RecursionError):
            # Not JSON, an integer too long to convert, or nested too deep: none of
            # these may end the events task, which every stream depends on.
            log.warning("ARI sent an event that is not JSON (%d bytes); ignored", len(text))
            return
        if not isinstance(event, dict):
            log.warning("ARI sent an event that is not an object; ignored")
            return
        if self.asterisk_id is None and isinstance(event.get("asterisk_id"), str):
            self.asterisk_id = event["asterisk_id"]
        targets: set[EventWatch] = set()
        for i in event_ids(event):
            targets |= self._watches.get(i, set())
        for w in targets:
            w.queue.put_nowait(event)

    def _broadcast_disconnect(self) -> None:
        # Everyone watching learns that events may have been missed.
        marker: Event = {"type": "_AriDisconnected"}
        for w in {w for ws in self._watches.values() for w in ws}:
            w.queue.put_nowait(marker)
