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


LOOPBACK_AND_OTHER_SPELLINGS = [
    "127.0.0.1:4000",
    "127.1:4000",
    "0x7f.0.0.1:4000",
    "0x7f000001:4000",
    "2130706433:4000",
    "017700000001:4000",
    "0177.0.0.1:4000",
    "127.000.000.001:4000",
    "[::1]:4000",
    "[0:0:0:0:0:0:0:1]:4000",
    "[::ffff:127.0.0.1]:4000",
    "[::ffff:7f00:1]:4000",
    "[::127.0.0.1]:4000",
    "0.0.0.0:4000",
    "0:4000",
    "[::]:4000",
    "169.254.169.254:80",
    "[fe80::1]:4000",
    "10.1.2.3:4000",
    "172.16.0.1:4000",
    "192.168.1.1:4000",
    "[fd00::1]:4000",
    "[::ffff:192.0.2.1]:4000",
    "localhost:4000",
    "gateway.local:4000",
]


@pytest.mark.parametrize("host", LOOPBACK_AND_OTHER_SPELLINGS)
def test_an_allow_list_admits_no_other_spelling_and_resolves_no_name(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held up in the probe: with the allow-list on one public network, every spelling of
    loopback, unspecified, link-local and private addresses is refused, names are never
    resolved (a resolver would let DNS pick the destination)."""

    def no_lookup(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"name resolution for {args!r}")

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "inet_aton"):
        monkeypatch.setattr(external_media.socket, name, no_lookup)
    only = ExternalMediaManager(None, parse_allow_list("192.0.2.0/24"))  # type: ignore[arg-type]
    with pytest.raises((PermissionDenied, InvalidArgument)) as err:
        only._check_host(host)
    assert_plain(err.value.message)
    assert only._check_host("192.0.2.10:4000") == ("192.0.2.10", 4000)
