"""A blocking wrapper around the async client, for scripts and threads.

Example:
    with SyncClient("127.0.0.1:50051") as client:
        for chunk in client.listen(call_id=CALL, seconds=5):
            handle(chunk.data)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from mediastream_client.client import MediaStreamClient
from mediastream_client.types import AudioChunk


class SyncClient:
    """The async client run on a private event loop in a background thread."""

    def __init__(self, target: str = "127.0.0.1:50051", **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._client: MediaStreamClient = self._run(self._make(target, kwargs))

    @staticmethod
    async def _make(target: str, kwargs: dict[str, Any]) -> MediaStreamClient:
        return MediaStreamClient(target, **kwargs)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and stop the background loop."""
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def listen(self, *, seconds: float | None = None, **kwargs: Any) -> Iterator[AudioChunk]:
        """Audio chunks of a listen-only stream (keyword arguments as `MediaStreamClient.listen`).

        Args:
            seconds: Stop after this much audio; None runs until the stream ends.
            **kwargs: Passed to `MediaStreamClient.listen`.
        """
        stream = self._client.listen(**kwargs)
        self._run(stream.__aenter__())
        received = 0.0
        iterator = stream.audio().__aiter__()
        try:
            while seconds is None or received < seconds:
                try:
                    chunk = self._run(iterator.__anext__())
                except StopAsyncIteration:
                    return
                assert stream.info is not None
                received += stream.info.chunk_ms / 1000
                yield chunk
        finally:
            self._run(stream.aclose())
