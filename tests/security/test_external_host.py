"""external_host: zone IDs (finding 10) and odd digits (finding 8) are refused in
plain words; the allow-list's refusals of other loopback spellings held up."""

from __future__ import annotations

import pytest

from mediastream import external_media
from mediastream.core.formats import AudioFormat
from mediastream.core.stream import Direction, Target, TargetKind
from mediastream.errors import InvalidArgument, MediaStreamError, PermissionDenied
from mediastream.external_media import (
    ExternalEncapsulation,
    ExternalMedia,
    ExternalMediaManager,
    parse_allow_list,
)
from tests.security.conftest import assert_plain


def manager() -> ExternalMediaManager:
    return ExternalMediaManager(None, parse_allow_list("127.0.0.0/8,::1/128"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "host",
    [
        "[::1%" + "z" * 5000 + "]:40000",
        "[::1%lo]:40000",
        "[fe80::1%eth0]:40000",
        "127.0.0.1:²",
        "127.0.0.1:٤٠٠٠",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1",
        "localhost:40000",
        "1" * 100 + ":1",
    ],
)
def test_malformed_hosts_are_invalid_arguments(host: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        manager()._check_host(host)
    assert (err.value.field, err.value.reason) == ("external_host", "INVALID_HOST")
    assert_plain(err.value.message)
    assert len(err.value.message) < 100


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0:4000", "[::]:4000", "10.0.0.1:4000", "169.254.1.1:4000", "[::ffff:127.0.0.1]:4000"],
)
def test_hosts_outside_the_allow_list_are_refused(host: str) -> None:
    with pytest.raises(MediaStreamError) as err:
        manager()._check_host(host)
    assert isinstance(err.value, PermissionDenied | InvalidArgument)


def test_an_allowed_host_passes() -> None:
    assert manager()._check_host("[::1]:40000") == ("::1", 40000)
    assert manager()._check_host("127.0.0.1:40000") == ("127.0.0.1", 40000)


async def test_terminated_records_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(external_media, "MAX_TERMINATED_KEPT", 3)
    m = manager()
    target = Target(TargetKind.CALL, "c1")
    for i in range(10):
        media = ExternalMedia(
            f"m{i}",
            target,
            "127.0.0.1:1",
            ExternalEncapsulation.RTP,
            AudioFormat.ULAW,
            Direction.BOTH,
        )
        m._items[media.id] = media
        await m._terminate(media, "stopped")
    assert sorted(x.id for x in m.list_for(None)) == ["m7", "m8", "m9"]
