"""`serve --workers 2`: worker processes behind one port, with real processes and sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest

from mediastream.emulator import (
    DTMF_CALL_ID,
    ECHO_CALL_ID,
    TONE_CALL_ID,
    Emulator,
    EmulatorConfig,
)
from mediastream.workers import _hold_port
from mediastream_client import MediaStreamClient, RPCError
from tests.conftest import RunningGateway, start_gateway, stop_gateway
from tests.harness import GATEWAY_CHANNELS, own_connection


def worker_pids(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return sorted(int(p) for p in children)


def live_objects(emulator: Emulator) -> list[str]:
    return [
        c.name
        for c in emulator.pbx.channels.values()
        if not c.hung_up and c.name.startswith(GATEWAY_CHANNELS)
    ]


@pytest.fixture
async def workers() -> AsyncIterator[tuple[RunningGateway, Emulator]]:
    emulator = Emulator(EmulatorConfig(demo=True))
    await emulator.start()
    gw = await asyncio.to_thread(
        start_gateway,
        "--workers",
        "2",
        "--max-streams-per-target",
        "4",
        "--drain-timeout-s",
        "1",
        env={"MEDIASTREAM_ARI_URL": emulator.ari_url},
    )
    try:
        yield gw, emulator
    finally:
        await asyncio.to_thread(stop_gateway, gw)
        await emulator.stop()


async def open_streams(target: str, n: int) -> list[tuple[MediaStreamClient, object]]:
    opened = []
    for _ in range(n):
        client = own_connection(target)
        stream = client.listen(call_id=TONE_CALL_ID)
        await stream.__aenter__()
        opened.append((client, stream))
    return opened


async def open_when_ready(
    workers: tuple[str, ...], timeout: float = 30.0
) -> list[tuple[MediaStreamClient, object]]:
    """One stream on each worker's own port, waiting for a restarted worker to listen."""
    opened: list[tuple[MediaStreamClient, object]] = []
    async with asyncio.timeout(timeout):
        for address in workers:
            while True:
                try:
                    opened += await open_streams(address, 1)
                    break
                except RPCError as exc:
                    assert exc.code is grpc.StatusCode.UNAVAILABLE, exc
                    await asyncio.sleep(0.2)
    return opened


async def close_all(opened: list[tuple[MediaStreamClient, object]]) -> None:
    for client, stream in opened:
        await stream.aclose()  # type: ignore[attr-defined]
        await client._channel.close()


async def test_streams_spread_over_workers_and_the_call_limit_holds_across_them(
    workers: tuple[RunningGateway, Emulator],
) -> None:
    gw, emulator = workers
    assert len(worker_pids(gw.process.pid)) == 2 and len(gw.workers) == 2
    # Connections to the shared port are spread by the kernel (a hash of the
    # 4-tuple): a dozen of them reach both workers but once in 2,048 runs.
    spread = []
    for i in range(12):
        client = own_connection(gw.grpc)
        stream = client.listen(call_id=(TONE_CALL_ID, ECHO_CALL_ID, DTMF_CALL_ID)[i % 3])
        await stream.__aenter__()
        spread.append((client, stream))
    holders = {s.info.instance_address for _, s in spread}  # type: ignore[attr-defined]
    await close_all(spread)
    assert holders == set(gw.workers)
    async with asyncio.timeout(10):
        while live_objects(emulator):
            await asyncio.sleep(0.05)

    # Two streams of the call on each worker, through each worker's own port...
    opened = await open_streams(gw.workers[0], 2) + await open_streams(gw.workers[1], 2)
    try:
        # ...and a 5th is refused, whichever worker it reaches.
        for address in (*gw.workers, gw.grpc):
            client = own_connection(address)
            try:
                with pytest.raises(RPCError) as caught:
                    async with client.listen(call_id=TONE_CALL_ID):
                        pass
            finally:
                await client._channel.close()
            assert caught.value.reason == "TOO_MANY_STREAMS_FOR_TARGET"
        # A stream that ends frees its place for a stream on any worker.
        await close_all(opened[:1])
        del opened[:1]
        await asyncio.sleep(0.3)
        opened += await open_streams(gw.grpc, 1)

        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{gw.metrics}/metrics") as reply,
        ):
            text = await reply.text()
        for worker in ("0", "1"):
            assert f'worker="{worker}"' in text
        opened_by_worker = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("mediastream_streams_opened_total{")
        ]
        assert sum(opened_by_worker) == 12 + 4 + 1
    finally:
        await close_all(opened)


async def test_a_resume_through_the_shared_port_reaches_the_holding_worker(
    workers: tuple[RunningGateway, Emulator],
) -> None:
    gw, _ = workers
    owner = own_connection(gw.grpc)
    stream = owner.listen(call_id=TONE_CALL_ID, auto_resume=True)
    await stream.__aenter__()
    assert stream.info is not None
    holder, token = stream.info.instance_address, stream.info.resume_token
    await stream.aclose()
    await owner._channel.close()
    # Each resume comes in on a new connection, which may reach either worker. A client
    # that resumes a token it did not open itself names the holder it was told of (the
    # SDK follows a wrong-instance refusal only there: a forged token must not steer it).
    for _ in range(4):
        client = own_connection(gw.grpc, allowed_instances=[holder])
        try:
            async with client.listen(call_id=TONE_CALL_ID, resume_token=token) as resumed:
                assert resumed.info is not None and resumed.info.resumed
                assert resumed.info.instance_address == holder
                async for _chunk in resumed.audio():
                    break
                resumed._call.cancel()  # vanish again, keeping the stream resumable
        finally:
            await client.close()
            await client._channel.close()


async def test_a_killed_worker_is_replaced_and_its_leftovers_swept(
    workers: tuple[RunningGateway, Emulator],
) -> None:
    gw, emulator = workers
    opened = await open_streams(gw.workers[0], 2) + await open_streams(gw.workers[1], 2)
    try:
        before = worker_pids(gw.process.pid)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        async with asyncio.timeout(20):
            while True:
                now = worker_pids(gw.process.pid)
                if len(now) == 2 and victim not in now:
                    break
                await asyncio.sleep(0.1)
        # The streams of the other worker still run; those of the dead one ended.
        survivors = 0
        for _, stream in opened:
            try:
                async with asyncio.timeout(5):
                    async for _chunk in stream.audio():  # type: ignore[attr-defined]
                        break
                survivors += 1
            except RPCError as exc:
                assert exc.code is grpc.StatusCode.UNAVAILABLE
        assert survivors == 2
        # The replacement swept the dead worker's channels at start-up.
        async with asyncio.timeout(15):
            while len(live_objects(emulator)) > 2 * survivors:
                await asyncio.sleep(0.1)
        # The dead worker's streams no longer count against the call: two more open,
        # one on each worker.
        more = await open_when_ready(gw.workers)
        await close_all(more)
    finally:
        await close_all(opened)


async def test_sigterm_drains_every_worker(workers: tuple[RunningGateway, Emulator]) -> None:
    gw, emulator = workers
    opened = await open_streams(gw.grpc, 2)
    pids = worker_pids(gw.process.pid)
    try:
        assert len(live_objects(emulator)) == 4  # a snoop and an externalMedia channel each
        assert await asyncio.to_thread(stop_gateway, gw) == 0
        for pid in pids:
            assert (
                not Path(f"/proc/{pid}").exists()
                or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            )
        await asyncio.sleep(0.3)
        assert live_objects(emulator) == []
    finally:
        await close_all(opened)


async def test_a_second_gateway_cannot_join_the_ports_of_a_running_one(
    workers: tuple[RunningGateway, Emulator],
) -> None:
    gw, emulator = workers
    # Workers bind with SO_REUSEPORT; without the supervisor's check a second gateway
    # on the same ports would silently take half of the connections.
    with pytest.raises(RuntimeError, match="before it was ready"):
        await asyncio.to_thread(
            start_gateway,
            "--workers",
            "2",
            "--grpc-listen",
            gw.grpc,
            env={"MEDIASTREAM_ARI_URL": emulator.ari_url},
        )


async def test_a_worker_that_cannot_restart_yet_is_retried_until_it_can(
    workers: tuple[RunningGateway, Emulator],
) -> None:
    gw, emulator = workers
    port = emulator.port
    await emulator.stop()  # Asterisk away: a worker will not start without it
    victim = worker_pids(gw.process.pid)[0]
    os.kill(victim, signal.SIGKILL)
    # The first restart fails (no Asterisk); the supervisor keeps trying.
    await asyncio.sleep(15)
    assert len(worker_pids(gw.process.pid)) <= 2
    fresh = Emulator(EmulatorConfig(port=port, demo=True))
    await fresh.start()
    try:
        async with asyncio.timeout(60):
            while True:
                pids = worker_pids(gw.process.pid)
                if len(pids) == 2 and victim not in pids:
                    # Both serve again: a stream opens on each worker's own port.
                    await close_all(await open_when_ready(gw.workers))
                    break
                await asyncio.sleep(0.2)
    finally:
        await fresh.stop()


def test_a_held_port_is_kept_from_others_and_left_to_the_workers() -> None:
    held = _hold_port("127.0.0.1", 0)
    port = held.getsockname()[1]
    try:
        # Another socket (an outgoing connection's ephemeral port, another
        # program) cannot take it while the workers start...
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
        # ...but a worker, binding with SO_REUSEPORT, can, and gets the connections.
        with socket.socket() as worker:
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                accepted, _ = worker.accept()
                accepted.close()
        # A port already held (by a listener, or by another gateway starting) is refused.
        with pytest.raises(RuntimeError, match="in use"):
            _hold_port("127.0.0.1", port)
    finally:
        held.close()
