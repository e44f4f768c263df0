"""gRPC health probe for the gateway's container: exit 0 if SERVING, 1 if not.

Used by the image's HEALTHCHECK, and as an `exec` probe where the native
Kubernetes `grpc` probe cannot be used (it speaks neither TLS nor mTLS).

It asks `grpc.health.v1.Health/Check` on the gRPC port of
MEDIASTREAM_GRPC_LISTEN, over loopback. When the gateway serves TLS
(MEDIASTREAM_TLS_CERT), the probe uses TLS too: it trusts HEALTHCHECK_CA_FILE
(default: the gateway's own certificate, right for a self-signed one), checks
the name HEALTHCHECK_SERVER_NAME (default: the address connected to), and, if
the gateway requires client certificates (MEDIASTREAM_TLS_CLIENT_CA), presents
HEALTHCHECK_CERT_FILE and HEALTHCHECK_KEY_FILE (default: the gateway's own pair).

    python healthcheck.py [SERVICE] [--address HOST:PORT] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_SERVICE = "voipbin.mediastream.v1.MediaStreamService"


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _channel(address: str, env: Mapping[str, str]) -> grpc.Channel:
    cert = env.get("MEDIASTREAM_TLS_CERT", "")
    if not cert:
        return grpc.insecure_channel(address)
    chain = key = None
    if env.get("MEDIASTREAM_TLS_CLIENT_CA"):
        chain = _read(env.get("HEALTHCHECK_CERT_FILE") or cert)
        key = _read(env.get("HEALTHCHECK_KEY_FILE") or env.get("MEDIASTREAM_TLS_KEY", ""))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(env.get("HEALTHCHECK_CA_FILE") or cert),
        private_key=key,
        certificate_chain=chain,
    )
    options: list[tuple[str, str]] = []
    if env.get("HEALTHCHECK_SERVER_NAME"):
        options.append(("grpc.ssl_target_name_override", env["HEALTHCHECK_SERVER_NAME"]))
    return grpc.secure_channel(address, credentials, options=options)


def main(argv: list[str] | None = None) -> int:
    """Check once; print the status; 0 when SERVING."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("service", nargs="?", default=DEFAULT_SERVICE, help='"" for the server')
    parser.add_argument("--address", help="host:port (default: loopback, gRPC port of the env)")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    address = args.address
    if not address:
        port = os.environ.get("MEDIASTREAM_GRPC_LISTEN", "127.0.0.1:50051").rpartition(":")[2]
        address = f"127.0.0.1:{port}"
    try:
        with _channel(address, os.environ) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
    except grpc.RpcError as exc:
        print(f"{address} {args.service!r}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{address} {args.service!r}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    raise SystemExit(main())
