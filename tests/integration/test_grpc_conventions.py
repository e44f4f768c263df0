"""gRPC's own conventions, as a generic client (grpcurl and friends) relies on them.

Health ``Check``, ``Watch`` and ``List``; reflection v1 and v1alpha; a message that does
not parse is INVALID_ARGUMENT with ``google.rpc.Status`` details; an empty ID is
INVALID_ARGUMENT; a client's mistake is a WARNING with its reason and a count, never an
ERROR traceback. The corrupt messages go through a raw channel (no serializer), as bytes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc_tools.protoc  # type: ignore[import-untyped]
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from mediastream import metrics
from mediastream._proto import external_media_pb2 as em_pb
from mediastream._proto import external_media_pb2_grpc as em_grpc
from mediastream.api.grpc_external_media import SERVICE_NAME as EXTERNAL_MEDIA_SERVICE
from mediastream.api.grpc_service import SERVICE_NAME
from mediastream_client import RPCError
from tests.harness import Harness

CORRUPT = b"\x0a\xff\xff\xff\xff\x0f"
"""Field 1 (length-delimited) claiming more bytes than follow: no protobuf parses it."""

REFLECTION = {
    "v1": "grpc.reflection.v1.ServerReflection",
    "v1alpha": "grpc.reflection.v1alpha.ServerReflection",
}


def refused(reason: str) -> float:
    labels = {"reason": reason}
    return metrics.REGISTRY.get_sample_value("mediastream_stream_errors_total", labels) or 0.0


def no_error_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_health_check_watch_and_list(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        check = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        listed = await stub.List(health_pb2.HealthListRequest())
    statuses = {name: r.status for name, r in listed.statuses.items()}
    assert statuses[""] == health_pb2.HealthCheckResponse.SERVING
    assert statuses[SERVICE_NAME] == health_pb2.HealthCheckResponse.SERVING
    assert statuses[EXTERNAL_MEDIA_SERVICE] == health_pb2.HealthCheckResponse.SERVING


async def reflect(
    channel: grpc.aio.Channel, version: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    # v1 and v1alpha have the same messages under two packages: one pair of types does.
    call = channel.stream_stream(
        f"/{REFLECTION[version]}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )

    async def one() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield request

    async for response in call(one()):
        return response
    raise AssertionError("no reflection response")


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_v1_and_v1alpha_are_served(harness: Harness, version: str) -> None:
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        listed = await reflect(
            channel, version, reflection_pb2.ServerReflectionRequest(list_services="")
        )
        names = {s.name for s in listed.list_services_response.service}
        assert {SERVICE_NAME, EXTERNAL_MEDIA_SERVICE, "grpc.health.v1.Health"} <= names
        assert set(REFLECTION.values()) <= names
        # Every listed service can be described (grpcurl describe / list <service>).
        for name in sorted(names):
            found = await reflect(
                channel,
                version,
                reflection_pb2.ServerReflectionRequest(file_containing_symbol=name),
            )
            assert found.WhichOneof("message_response") == "file_descriptor_response", name


@pytest.mark.parametrize(
    ("method", "streaming"),
    [
        (f"/{EXTERNAL_MEDIA_SERVICE}/GetExternalMedia", False),
        (f"/{SERVICE_NAME}/ListenMedia", False),
        (f"/{SERVICE_NAME}/StreamMedia", True),
        ("/grpc.health.v1.Health/Check", False),
        (f"/{REFLECTION['v1']}/ServerReflectionInfo", True),
    ],
)
async def test_a_message_that_does_not_parse_is_invalid_argument_with_details(
    harness: Harness, caplog: pytest.LogCaptureFixture, method: str, streaming: bool
) -> None:
    before = refused("MALFORMED_MESSAGE")
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            if streaming:
                call = channel.stream_stream(method)

                async def corrupt() -> AsyncIterator[bytes]:
                    yield CORRUPT

                async for _ in call(corrupt()):
                    pass
            elif method.endswith("ListenMedia"):
                async for _ in channel.unary_stream(method)(CORRUPT):
                    pass
            else:
                await channel.unary_unary(method)(CORRUPT)
    error = RPCError.from_aio(err.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_MESSAGE")
    assert [v.field for v in error.field_violations] == ["request"]
    assert "does not parse" in error.message
    assert refused("MALFORMED_MESSAGE") - before == 1
    assert no_error_logged(caplog) == []
    warnings = [r for r in caplog.records if "MALFORMED_MESSAGE" in r.getMessage()]
    assert [r.levelname for r in warnings] == ["WARNING"]


@pytest.mark.parametrize("rpc", ["get", "stop"])
async def test_an_empty_external_media_id_is_invalid_argument(
    harness: Harness, caplog: pytest.LogCaptureFixture, rpc: str
) -> None:
    before = refused("MISSING_ID")
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stub = em_grpc.ExternalMediaServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            if rpc == "get":
                await stub.GetExternalMedia(em_pb.GetExternalMediaRequest(id=""))
            else:
                await stub.StopExternalMedia(em_pb.StopExternalMediaRequest(id=""))
    error = RPCError.from_aio(err.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MISSING_ID")
    assert [v.field for v in error.field_violations] == ["id"]
    assert refused("MISSING_ID") - before == 1
    assert no_error_logged(caplog) == []


async def test_an_unknown_external_media_id_is_a_warning_not_an_error(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stub = em_grpc.ExternalMediaServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetExternalMedia(em_pb.GetExternalMediaRequest(id="no-such-id"))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    assert no_error_logged(caplog) == []
    assert any(
        r.levelname == "WARNING" and "EXTERNAL_MEDIA_NOT_FOUND" in r.getMessage()
        for r in caplog.records
    )


# --- grpcurl, a generic client through reflection (installed by `make grpcurl`) -------

GRPCURL = Path(__file__).resolve().parents[2] / "sdk" / "go" / ".tools" / "bin" / "grpcurl"

WRONG_PROTO = """
syntax = "proto3";
package voipbin.mediastream.v1;
// The real request has `string id = 1`; as bytes, grpcurl sends what no string holds.
message GetExternalMediaRequest { bytes id = 1; }
message GetExternalMediaResponse {}
service ExternalMediaService {
  rpc GetExternalMedia(GetExternalMediaRequest) returns (GetExternalMediaResponse);
}
"""


async def grpcurl(*args: str) -> tuple[int, str]:
    """Run grpcurl without blocking the gateway's event loop; exit code and output."""
    if not GRPCURL.exists():
        pytest.skip("grpcurl is not installed: make grpcurl")
    proc = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        "-plaintext",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode()


async def test_grpcurl_lists_describes_and_checks_health(harness: Harness) -> None:
    code, out = await grpcurl(harness.grpc, "list")
    assert code == 0, out
    assert set(out.split()) >= {SERVICE_NAME, EXTERNAL_MEDIA_SERVICE, *REFLECTION.values()}
    code, out = await grpcurl(harness.grpc, "describe", REFLECTION["v1"])
    assert code == 0 and "ServerReflectionInfo" in out, out
    code, out = await grpcurl(harness.grpc, "grpc.health.v1.Health/List")
    assert code == 0, out
    statuses = json.loads(out)["statuses"]
    assert statuses[SERVICE_NAME] == {"status": "SERVING"}


async def test_grpcurl_empty_id_is_invalid_argument_with_details(harness: Harness) -> None:
    method = f"{EXTERNAL_MEDIA_SERVICE}/GetExternalMedia"
    code, out = await grpcurl("-d", '{"id": ""}', harness.grpc, method)
    assert code != 0
    assert "Code: InvalidArgument" in out and '"reason": "MISSING_ID"' in out, out


async def test_grpcurl_message_that_does_not_parse_is_invalid_argument(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "wrong.proto").write_text(WRONG_PROTO)
    protoset = tmp_path / "wrong.protoset"
    assert (
        grpc_tools.protoc.main(
            ["protoc", f"-I{tmp_path}", f"--descriptor_set_out={protoset}", "wrong.proto"]
        )
        == 0
    )
    method = f"{EXTERNAL_MEDIA_SERVICE}/GetExternalMedia"
    code, out = await grpcurl(
        "-protoset", str(protoset), "-d", '{"id": "/w=="}', harness.grpc, method
    )
    assert code != 0
    assert "Code: InvalidArgument" in out and "does not parse" in out, out
    # The protoset knows no google.rpc types: grpcurl shows the details as base64.
    values = re.findall(r'"@value": "([^"]+)"', out)
    infos = [error_details_pb2.ErrorInfo.FromString(base64.b64decode(v)) for v in values[1:]]
    assert [i.reason for i in infos] == ["MALFORMED_MESSAGE"], out
    assert no_error_logged(caplog) == []
