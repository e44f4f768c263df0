"""deploy/healthcheck.py, the image's gRPC health probe, against a real gateway."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import RunningGateway, start_gateway, stop_gateway
from tests.deploy.conftest import DEPLOY

PROBE = DEPLOY / "healthcheck.py"


def _probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEDIASTREAM_")}
    return subprocess.run(
        [sys.executable, str(PROBE), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_serving_gateway_passes(gateway: RunningGateway) -> None:
    done = _probe("--address", gateway.grpc)
    assert done.returncode == 0, done.stderr
    assert "SERVING" in done.stdout
    assert _probe("", "--address", gateway.grpc).returncode == 0


def test_port_comes_from_the_gateway_setting(gateway: RunningGateway) -> None:
    port = gateway.grpc.rpartition(":")[2]
    done = _probe(env={"MEDIASTREAM_GRPC_LISTEN": f"0.0.0.0:{port}"})
    assert done.returncode == 0, done.stderr


def test_unknown_service_and_no_server_fail(gateway: RunningGateway) -> None:
    unknown = _probe("no.such.Service", "--address", gateway.grpc)
    assert unknown.returncode == 1
    assert "NOT_FOUND" in unknown.stderr
    nobody = _probe("--address", "127.0.0.1:1", "--timeout", "1")
    assert nobody.returncode == 1


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mediastream")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_and_mtls_gateways(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    tls = {"MEDIASTREAM_TLS_CERT": str(cert), "MEDIASTREAM_TLS_KEY": str(key)}
    for extra in ({}, {"MEDIASTREAM_TLS_CLIENT_CA": str(cert)}):
        gw = start_gateway(env={**tls, **extra})
        try:
            assert _probe("--address", gw.grpc).returncode == 1, "plaintext to a TLS port"
            done = _probe("--address", gw.grpc, env={**tls, **extra})
            assert done.returncode == 0, done.stderr
        finally:
            stop_gateway(gw)
