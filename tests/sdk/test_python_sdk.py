"""The Python SDK's conveniences: automatic resume, the blocking client, numpy helpers."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import grpc
import numpy as np
import pytest

from mediastream.core.g711 import ulaw_decode
from mediastream.emulator import ECHO_CALL_ID, TONE_CALL_ID
from mediastream.errors import Unavailable
from mediastream_client import (
    AudioFormat,
    ConfigError,
    MarkPlayed,
    MediaStreamClient,
    RPCError,
    Stopped,
    StopReason,
    SyncClient,
    from_numpy,
    to_numpy,
)
from tests.audio_checks import dominant_hz
from tests.conformance.runner import CuttableProxy
from tests.conftest import start_gateway, stop_gateway
from tests.harness import Harness


@pytest.mark.settings(resume_grace_s=0.5)
async def test_listen_resumes_by_itself_after_a_drop(harness: Harness) -> None:
    proxy = CuttableProxy(harness.grpc)
    address = await proxy.start()
    seqs: list[int] = []
    try:
        async with (
            MediaStreamClient(address) as client,
            client.listen(call_id=TONE_CALL_ID, auto_resume=True) as stream,
        ):
            async for chunk in stream.audio():
                seqs.append(chunk.sequence_number)
                if len(seqs) == 20:
                    proxy.cut()
                if len(seqs) == 80:
                    break
            assert stream.resumes == 1
    finally:
        await proxy.close()
    assert seqs == list(range(80))


async def test_a_two_way_stream_resumes_by_itself_and_keeps_playing(harness: Harness) -> None:
    # A dropped connection is not the end of the client's input: the resumed stream
    # plays what is sent after the cut, and ends only when the client says so (it ended
    # CLIENT_DONE right after resuming: the cut read as the end of the requests).
    proxy = CuttableProxy(harness.grpc)
    address = await proxy.start()
    frame = bytes(160)  # 20 ms of mu-law silence
    marks: list[str] = []
    stopped: Stopped | None = None
    try:
        async with (
            MediaStreamClient(address) as client,
            client.stream(call_id=ECHO_CALL_ID, auto_resume=True) as stream,
        ):
            for _ in range(10):
                await stream.send(frame)
            await stream.mark("before-cut")
            sent_after = False
            async with asyncio.timeout(10):
                async for event in stream:
                    if isinstance(event, MarkPlayed):
                        marks.append(event.name)
                        if event.name == "before-cut":
                            proxy.cut()
                    elif isinstance(event, Stopped):
                        stopped = event
                    # The events reader resumes the stream; send once it has.
                    if stream.resumes == 1 and not sent_after:
                        sent_after = True
                        for _ in range(10):
                            await stream.send(frame)
                        await stream.mark("after-cut")
                        await stream.done_sending()
            assert stream.resumes == 1
    finally:
        await proxy.close()
    assert marks == ["before-cut", "after-cut"]
    assert stopped is not None and stopped.reason is StopReason.CLIENT_DONE


def test_blocking_client_listens(harness_thread: str) -> None:
    with SyncClient(harness_thread) as client:
        data = b"".join(
            c.data
            for c in client.listen(call_id=TONE_CALL_ID, format=AudioFormat.SLIN, seconds=1.0)
        )
    assert len(data) == 16000
    assert abs(dominant_hz(np.frombuffer(data, "<i2").astype(float), 8000) - 440) < 3


@pytest.fixture
def harness_thread() -> str:
    """A gateway on its own loop in a thread, for the blocking client."""
    import threading

    from mediastream.app import Gateway
    from tests.harness import free_port_settings

    loop = asyncio.new_event_loop()
    ready: list[str] = []
    stop = asyncio.Event()

    async def run() -> None:
        # Every listener on a free port: Settings() would bind the WebSocket
        # default, 8080, taken whenever a gateway runs beside the suite.
        gateway = Gateway(free_port_settings(metrics_listen="", drain_timeout_s=0.2))
        endpoints = await gateway.start()
        ready.append(endpoints.grpc)
        await stop.wait()
        await gateway.stop(grace=0.2)

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    for _ in range(200):
        if ready:
            break
        threading.Event().wait(0.02)
    yield ready[0]  # type: ignore[misc]
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)


def test_numpy_helpers_match_the_gateway_codecs() -> None:
    codes = bytes(range(256))
    assert to_numpy(codes, AudioFormat.ULAW).astype("<i2").tobytes() == ulaw_decode(codes)
    assert (
        from_numpy(np.array([0.5, -1.0, 2.0])) == np.array([16383, -32767, 32767], "<i2").tobytes()
    )
    assert to_numpy(from_numpy(np.array([1, -2], np.int16)), AudioFormat.SLIN).tolist() == [1, -2]


async def test_concurrent_writes_from_several_tasks_are_safe(harness: Harness) -> None:
    from mediastream.emulator import ECHO_CALL_ID
    from mediastream_client import Cleared

    async with (
        harness.client() as client,
        client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as stream,
    ):
        frame = b"\x00\x10" * 160

        async def sender() -> None:
            for _ in range(200):
                await stream.send(frame)

        async def marker() -> None:
            for i in range(20):
                await stream.mark(f"m{i}")
                await asyncio.sleep(0)

        await asyncio.gather(sender(), marker(), stream.clear())
        await stream.done_sending()
        events = [e async for e in stream]
    assert any(isinstance(e, Cleared) for e in events)
    assert stream.stopped is not None


# -- Leaving a two-way stream (issue 16 item 3) ------------------------------------------
# Bounds below are generous: 1 s of audio plays in real time on the emulator, and a
# loaded machine may add seconds; the lower bound (0.9 s) is what proves it waited.

ONE_SECOND_SLIN = [b"\x00\x10" * 160] * 50


async def test_leaving_the_block_after_done_sending_waits_for_the_audio(harness: Harness) -> None:
    from mediastream.emulator import ECHO_CALL_ID
    from mediastream_client import StopReason

    loop = asyncio.get_running_loop()
    async with harness.client() as client:
        async with client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as stream:
            for frame in ONE_SECOND_SLIN:
                await stream.send(frame)
            await stream.done_sending()
            left = loop.time()
        waited = loop.time() - left
    assert stream.stopped is not None and stream.stopped.reason is StopReason.CLIENT_DONE
    assert 0.9 <= waited < 15, waited


async def test_leaving_waits_for_a_reader_task_to_see_the_end(harness: Harness) -> None:
    from mediastream.emulator import ECHO_CALL_ID
    from mediastream_client import MarkPlayed, Stopped, StopReason

    seen: list[object] = []

    async with harness.client() as client:
        async with client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as stream:

            async def reader() -> None:
                async for event in stream.events():
                    if not hasattr(event, "data"):
                        seen.append(event)

            task = asyncio.create_task(reader())
            for frame in ONE_SECOND_SLIN[:40]:
                await stream.send(frame)
            # Not as the very last message: the server drops a mark that ends the
            # input (its MarkPlayed is due 20 ms after the input finished).
            await stream.mark("at-800")
            for frame in ONE_SECOND_SLIN[40:]:
                await stream.send(frame)
            await stream.done_sending()
        await asyncio.wait_for(task, 5)
    marks = [e for e in seen if isinstance(e, MarkPlayed)]
    assert [(m.name, m.position_ms) for m in marks] == [("at-800", 800)]
    assert isinstance(seen[-1], Stopped) and seen[-1].reason is StopReason.CLIENT_DONE


async def test_leaving_without_done_sending_or_by_an_exception_cancels(harness: Harness) -> None:
    from mediastream.emulator import ECHO_CALL_ID

    loop = asyncio.get_running_loop()
    async with harness.client() as client:
        async with client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as plain:
            for frame in ONE_SECOND_SLIN:
                await plain.send(frame)
            left = loop.time()
        assert loop.time() - left < 0.5
        assert plain.stopped is None

        with pytest.raises(RuntimeError, match="boom"):
            async with client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as failed:
                for frame in ONE_SECOND_SLIN:
                    await failed.send(frame)
                await failed.done_sending()
                left = loop.time()
                raise RuntimeError("boom")
        assert loop.time() - left < 0.5
        assert failed.stopped is None


async def test_leaving_gives_up_after_the_bound(harness: Harness) -> None:
    from mediastream.emulator import ECHO_CALL_ID

    async with (
        harness.client() as client,
        client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN, close_grace=0.0) as stream,
    ):
        await stream.done_sending()
    # Nothing was sent, so the bound is 0 s: no time for the Stopped to come.
    assert stream.stopped is None


async def test_wait_stopped_reads_the_events_itself(harness: Harness) -> None:
    from mediastream.emulator import ECHO_CALL_ID
    from mediastream_client import StopReason

    async with harness.client() as client:
        async with client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as stream:
            for frame in ONE_SECOND_SLIN[:10]:
                await stream.send(frame)
            await stream.done_sending()
            stopped = await stream.wait_stopped(10)
        assert stopped is not None and stopped.reason is StopReason.CLIENT_DONE

        async with client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as endless:
            with pytest.raises(TimeoutError):
                await endless.wait_stopped(0.05)  # input not ended: the stream goes on
            assert await endless.wait_stopped(1) is None  # the timeout cancelled it


async def _refusing_first(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, reason: str, times: int
) -> list[str]:
    """Make the gateway refuse the first `times` opens with UNAVAILABLE/`reason`."""
    manager = harness.gateway.streams
    original = manager.open
    seen: list[str] = []

    async def open_(*args: Any, **kwargs: Any) -> Any:
        seen.append(reason)
        if len(seen) <= times:
            raise Unavailable("refused for the test", reason=reason)
        return await original(*args, **kwargs)

    monkeypatch.setattr(manager, "open", open_)
    return seen


async def test_a_stream_refused_by_a_draining_instance_is_opened_again(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = await _refusing_first(harness, monkeypatch, "DRAINING", 2)
    async with harness.client() as client, client.listen(call_id=TONE_CALL_ID) as stream:
        assert stream.info is not None
    assert len(seen) == 3  # two refusals, then the stream


async def test_opening_again_is_bounded(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = await _refusing_first(harness, monkeypatch, "DRAINING", 100)
    async with MediaStreamClient(harness.grpc, open_retries=2) as client:
        with pytest.raises(RPCError) as caught:
            await client.listen(call_id=TONE_CALL_ID).__aenter__()
    assert caught.value.reason == "DRAINING"
    assert len(seen) == 3  # the first attempt and two more


async def test_a_reasoned_unavailable_is_not_opened_again(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The gateway answered (its Asterisk is gone): another attempt would only wait.
    seen = await _refusing_first(harness, monkeypatch, "ASTERISK_UNAVAILABLE", 1)
    async with harness.client() as client:
        with pytest.raises(RPCError) as caught:
            await client.listen(call_id=TONE_CALL_ID).__aenter__()
    assert caught.value.reason == "ASTERISK_UNAVAILABLE"
    assert len(seen) == 1


async def test_a_refused_connection_is_tried_again_until_the_gateway_listens(
    harness: Harness,
) -> None:
    # Nothing listens at first (an instance gone, a proxy restarting); then a relay
    # to the gateway does, on the same port: the SDK's next attempt reaches it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    relay = CuttableProxy(harness.grpc)

    async def listen_later() -> None:
        await asyncio.sleep(0.2)
        relay.server = await asyncio.start_server(relay._handle, "127.0.0.1", port)

    later = asyncio.create_task(listen_later())
    try:
        async with (
            MediaStreamClient(f"127.0.0.1:{port}", open_retries=3) as client,
            client.listen(call_id=TONE_CALL_ID) as stream,
        ):
            assert stream.info is not None
    finally:
        await later
        await relay.close()


async def test_every_stream_names_its_call_for_the_proxy() -> None:
    # A proxy hashing on the header keeps a call's streams (and resumes) on one instance.
    async with MediaStreamClient("127.0.0.1:1", token="t") as client:
        call = client.listen(call_id="c1")
        conference = client.stream(conference_id="f1")
        assert ("x-mediastream-target", "call:c1") in call._metadata
        assert ("x-mediastream-target", "conference:f1") in conference._metadata
        assert ("authorization", "Bearer t") in call._metadata


@pytest.mark.settings(advertise_address="127.0.0.1:1", resume_grace_s=0.5)
async def test_a_resume_goes_through_the_balancer_when_the_instance_cannot_be_reached(
    harness: Harness,
) -> None:
    # The gateway advertises an address nothing listens on (NAT, outside the cluster):
    # the resume falls back to the client's own target, which reaches the holder.
    relay = CuttableProxy(harness.grpc)
    address = await relay.start()
    seqs: list[int] = []
    try:
        async with (
            MediaStreamClient(address) as client,
            client.listen(call_id=TONE_CALL_ID, auto_resume=True) as stream,
        ):
            assert stream.info is not None and stream.info.instance_address == "127.0.0.1:1"
            async for chunk in stream.audio():
                seqs.append(chunk.sequence_number)
                if len(seqs) == 20:
                    relay.cut()
                if len(seqs) == 80:
                    break
            assert stream.resumes == 1
    finally:
        await relay.close()
    assert seqs == list(range(80))


@pytest.mark.parametrize(
    ("targets", "reason"),
    [({}, "MISSING_TARGET"), ({"call_id": "a", "conference_id": "b"}, "BOTH_TARGETS")],
)
async def test_invalid_config_is_a_config_error_with_the_servers_reason(
    targets: dict[str, Any], reason: str
) -> None:
    # Refused before anything is sent: the address is never dialled.
    async with MediaStreamClient("127.0.0.1:9") as client:
        with pytest.raises(ConfigError) as caught:
            client.stream(**targets)
    assert (caught.value.reason, caught.value.field) == (reason, "config.target")
    assert isinstance(caught.value, ValueError)  # what it was before it had its own type


async def test_a_gateway_that_vanishes_fails_the_stream_with_unavailable() -> None:
    # The same code as the Go and TypeScript SDKs give (issue 21): SIGKILL, no goodbye.
    gw = start_gateway()
    try:
        async with (
            MediaStreamClient(gw.grpc) as client,
            client.listen(call_id=gw.demo["tone_call"]) as stream,
        ):
            with pytest.raises(RPCError) as caught:
                async for _ in stream.audio():
                    if gw.process.poll() is None:
                        gw.process.kill()
        assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    finally:
        stop_gateway(gw)


# -- Barge-in beside the stream (issue 16: ControlStream) ---------------------------------


async def test_clear_after_a_burst_overtakes_it_and_drops_it_all(harness: Harness) -> None:
    from mediastream.emulator import ECHO_CALL_ID
    from mediastream_client import Cleared, MarkPlayed

    async with (
        harness.client() as client,
        client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as stream,
    ):
        stream.wait_while_paused = False  # a bot's burst: 60 s at once
        frame = b"\x00\x10" * 160
        for _ in range(60 * 50):
            await stream.send(frame)
        await stream.mark("end-of-speech")
        await stream.clear()  # beside the stream: returns once playback is cut
        await stream.send(frame)
        await stream.mark("after")
        events = []
        async for event in stream:
            if isinstance(event, Cleared | MarkPlayed):
                events.append(event)
            if isinstance(event, MarkPlayed):
                break
        await stream.cancel()
    cleared, mark = events
    # One Cleared, as before the side channel, naming the mark sent before the clear.
    assert isinstance(cleared, Cleared) and cleared.dropped_marks == ("end-of-speech",)
    # Nothing of the burst played after the cut: the frame sent after it came next.
    assert isinstance(mark, MarkPlayed) and mark.name == "after"
    assert mark.position_ms <= cleared.position_ms + 60 + 20


async def test_clear_and_hangup_on_an_ended_stream_fail_as_a_write_does(harness: Harness) -> None:
    from mediastream_client import RPCError, StopReason

    call_id = harness.emulator.add_call("echo")
    async with (
        harness.client() as client,
        client.stream(call_id=call_id, format=AudioFormat.SLIN) as stream,
    ):
        await stream.hangup()
        await stream.wait_stopped(10)
        assert stream.stopped is not None
        assert stream.stopped.reason is StopReason.CLIENT_HANGUP
        for command in (stream.clear, stream.hangup):
            with pytest.raises(RPCError) as err:
                await command()
            assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
