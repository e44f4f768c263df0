"""Several Asterisk instances behind one gateway.

A call or conference is served from whichever Asterisk holds it: the pool
asks every connected instance (in parallel) and uses the first that knows the
ID. Each leg remembers the instance it was made on, so it is torn down there.
"""

from __future__ import annotations

import asyncio
import logging

from mediastream.asterisk.ari import AriError
from mediastream.asterisk.legs import Leg, LegFactory, LegSink
from mediastream.core.stream import StreamSpec, Target, TargetKind
from mediastream.errors import NotFound, Unavailable

log = logging.getLogger(__name__)


class AsteriskPool:
    """Every Asterisk the gateway can reach, used as one."""

    def __init__(self, factories: list[LegFactory]) -> None:
        if not factories:
            raise ValueError("an Asterisk pool needs at least one Asterisk")
        self.factories = factories

    @property
    def connected(self) -> bool:
        """Whether at least one Asterisk's events connection is up."""
        return any(f.ari.connected for f in self.factories)

    async def locate(self, target: Target) -> LegFactory:
        """The Asterisk that holds `target`.

        Raises:
            NotFound: no connected Asterisk knows the ID.
            Unavailable: no Asterisk is connected.
        """
        live = [f for f in self.factories if f.ari.connected]
        if not live:
            raise Unavailable("no Asterisk is reachable", reason="ASTERISK_UNAVAILABLE")
        if len(live) == 1:
            return live[0]
        path = (
            f"/channels/{target.id}" if target.kind is TargetKind.CALL else f"/bridges/{target.id}"
        )

        async def holds(factory: LegFactory) -> bool:
            try:
                await factory.ari.request("GET", path)
                return True
            except (AriError, Unavailable):
                return False

        found = await asyncio.gather(*(holds(f) for f in live))
        for factory, ok in zip(live, found, strict=True):
            if ok:
                return factory
        raise NotFound(
            f"{target.kind.value} {target.id} not found",
            reason=f"{target.kind.name}_NOT_FOUND",
            metadata={f"{target.kind.value}_id": target.id},
        )

    async def open(
        self, stream_id: str, spec: StreamSpec, sink: LegSink, direct: tuple[str, str] | None = None
    ) -> Leg:
        """Open a leg on the Asterisk that holds the stream's target (see LegFactory.open)."""
        factory = await self.locate(spec.target)
        return await factory.open(stream_id, spec, sink, direct)

    async def close(self, leg: Leg) -> None:
        """Tear a leg down on the Asterisk it was made on."""
        assert leg.factory is not None
        await leg.factory.close(leg)

    async def hangup(self, channel_id: str) -> None:
        """Hang up a call wherever it is."""
        factory = await self.locate(Target(TargetKind.CALL, channel_id))
        await factory.hangup(channel_id)
