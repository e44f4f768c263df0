"""ListExternalMedia is paged and each reply bounded (finding 7): one reply carried
every record, and a start/stop loop would have pushed it past the client's 4 MB."""

from __future__ import annotations

import grpc
import pytest

from mediastream._proto import external_media_pb2 as em_pb
from mediastream._proto import external_media_pb2_grpc as em_grpc
from mediastream.core.formats import AudioFormat
from mediastream.core.stream import Direction, Target, TargetKind
from mediastream.external_media import (
    MAX_PAGE_SIZE,
    ExternalEncapsulation,
    ExternalMedia,
    ExternalMediaManager,
    ExternalStatus,
)
from mediastream_client import RPCError
from tests.harness import Harness
from tests.security.conftest import KEY, PROBE_SETTINGS, bearer, refusal, token

CALL_A = Target(TargetKind.CALL, "call-a")
CALL_B = Target(TargetKind.CALL, "call-b")


def fill(manager: ExternalMediaManager, target: Target, count: int, status: ExternalStatus) -> None:
    """`count` records of `target`, ten at a time sharing one creation time (ties)."""
    for i in range(count):
        media = ExternalMedia(
            f"{target.id}-{i:05d}",
            target,
            "127.0.0.1:40000",
            ExternalEncapsulation.RTP,
            AudioFormat.ULAW,
            Direction.BOTH,
            status=status,
            created=1_800_000_000.0 + i // 10,
        )
        if status is ExternalStatus.TERMINATED:
            media.ended_at = 4_000_000_000.0  # not expired while the test runs
        manager._items[media.id] = media


async def list_all(
    stub: em_grpc.ExternalMediaServiceStub, credential: str, page_size: int, **target: str
) -> tuple[list[str], list[int]]:
    """Every ID over all pages, and each page's length."""
    ids: list[str] = []
    sizes: list[int] = []
    page_token = ""
    while True:
        reply = await stub.ListExternalMedia(
            em_pb.ListExternalMediaRequest(page_size=page_size, page_token=page_token, **target),
            metadata=bearer(credential),
        )
        ids += [m.id for m in reply.external_media]
        sizes.append(len(reply.external_media))
        assert reply.ByteSize() < 256 * 1024  # a page of the maximum stays far below 4 MB
        if not reply.next_page_token:
            return ids, sizes
        page_token = reply.next_page_token


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_list_is_paged_and_each_reply_bounded(harness: Harness) -> None:
    manager = harness.gateway._external
    assert manager is not None
    # Running records are not bounded by MAX_TERMINATED_KEPT: more than a page of them.
    fill(manager, CALL_A, 1500, ExternalStatus.RUNNING)
    fill(manager, CALL_B, 1000, ExternalStatus.TERMINATED)
    newest_first = [m.id for m in manager.list_for(None)]
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stub = em_grpc.ExternalMediaServiceStub(channel)
        # No page_size (what a v1 client sends) and one over the maximum: the maximum.
        for page_size in (0, 5000):
            ids, sizes = await list_all(stub, KEY, page_size)
            assert sizes == [MAX_PAGE_SIZE, MAX_PAGE_SIZE, 2500 - 2 * MAX_PAGE_SIZE]
            assert ids == newest_first
        # Small pages cut through runs of equal creation times: no repeat, no gap.
        ids, sizes = await list_all(stub, KEY, 7, call_id=CALL_A.id)
        assert ids == [m.id for m in manager.list_for(CALL_A)]
        assert len(set(ids)) == 1500 and sizes[-1] == 1500 % 7
        # A call-scoped token pages through its own call.
        ids, _ = await list_all(stub, token(call_id=CALL_B.id), 300, call_id=CALL_B.id)
        assert len(ids) == 1000

        first = await stub.ListExternalMedia(
            em_pb.ListExternalMediaRequest(page_size=10, call_id=CALL_A.id), metadata=bearer(KEY)
        )
        # A record started between two pages does not shift the next one (a cursor).
        fill(manager, Target(TargetKind.CALL, "call-a-later"), 1, ExternalStatus.RUNNING)
        second = await stub.ListExternalMedia(
            em_pb.ListExternalMediaRequest(
                page_size=10, call_id=CALL_A.id, page_token=first.next_page_token
            ),
            metadata=bearer(KEY),
        )
        assert [m.id for m in second.external_media] == [
            m.id for m in manager.list_for(CALL_A)[10:20]
        ]

        bad = [
            (em_pb.ListExternalMediaRequest(page_size=-1), "page_size", "INVALID_PAGE_SIZE"),
            (
                em_pb.ListExternalMediaRequest(page_token="not a token"),
                "page_token",
                "INVALID_PAGE_TOKEN",
            ),
            (
                em_pb.ListExternalMediaRequest(page_token="x" * 100_000),
                "page_token",
                "INVALID_PAGE_TOKEN",
            ),
            # A token of call A's listing does not page through call B's (or all).
            (
                em_pb.ListExternalMediaRequest(call_id=CALL_B.id, page_token=first.next_page_token),
                "page_token",
                "INVALID_PAGE_TOKEN",
            ),
            (
                em_pb.ListExternalMediaRequest(page_token=first.next_page_token),
                "page_token",
                "INVALID_PAGE_TOKEN",
            ),
        ]
        for request, field, reason in bad:
            err: RPCError = await refusal(stub.ListExternalMedia(request, metadata=bearer(KEY)))
            assert err.code is grpc.StatusCode.INVALID_ARGUMENT, (request, err)
            assert err.reason == reason
            assert [v.field for v in err.field_violations] == [field]


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_the_python_sdk_follows_the_pages(harness: Harness) -> None:
    manager = harness.gateway._external
    assert manager is not None
    fill(manager, CALL_A, 2 * MAX_PAGE_SIZE + 5, ExternalStatus.RUNNING)
    async with harness.client(KEY) as client:
        listed = await client.external_media.list(call_id=CALL_A.id)
    assert [m.id for m in listed] == [m.id for m in manager.list_for(CALL_A)]
