"""No test binds a well-known port: the suite runs beside a gateway on its defaults."""

from __future__ import annotations

import socket

import pytest

from mediastream.app import Gateway
from mediastream.config import Settings
from tests.conftest import DEFAULT_PORTS
from tests.harness import free_port_settings


@pytest.mark.parametrize("port", sorted(DEFAULT_PORTS))
def test_a_default_port_cannot_be_bound_while_the_suite_runs(port: int) -> None:
    # Held by tests/conftest.py for the session (or by a gateway run beside the
    # suite): a test starting anything on it fails on every run, not only on a
    # machine where `make run` happens to be running.
    for address in ("127.0.0.1", "0.0.0.0"):
        with socket.socket() as sock, pytest.raises(OSError):
            sock.bind((address, port))


async def test_a_gateway_started_with_default_settings_fails_at_once() -> None:
    gateway = Gateway(Settings(metrics_listen="", ws_listen="127.0.0.1:0").validate())
    with pytest.raises(RuntimeError, match=r"127\.0\.0\.1:50051"):
        await gateway.start()
    await gateway.stop(grace=0)


def test_test_settings_put_every_listener_on_a_free_port() -> None:
    settings = free_port_settings()
    defaults = Settings()
    for name in ("grpc_listen", "ws_listen", "metrics_listen"):
        assert getattr(settings, name).endswith(":0"), name
        assert getattr(defaults, name).rsplit(":", 1)[1] != "0", name
    assert settings.audiosocket_port == 0
