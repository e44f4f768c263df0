"""Settings: flags over environment over defaults, each bad value refused clearly."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from mediastream.config import ConfigError, Settings, parse
from mediastream.core.stream import Transport


def test_defaults_run_the_embedded_asterisk() -> None:
    s = parse([], environ={})
    assert s.embedded and s.grpc_listen == "127.0.0.1:50051" and s.transport is Transport.RTP


def test_flag_beats_environment_beats_default() -> None:
    env = {"MEDIASTREAM_ARI_URL": "http://pbx:8088/ari", "MEDIASTREAM_ARI_APP": "envapp"}
    s = parse(["--ari-app", "flagapp"], environ=env)
    assert (s.ari_url, s.ari_app, s.embedded) == ("http://pbx:8088/ari", "flagapp", False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grpc-listen", "nohost"], "grpc_listen must be host:port"),
        (["--grpc-listen", "127.0.0.1:99999"], "grpc_listen must be host:port"),
        (["--ari-url", "pbx:8088"], "ari_url must be http(s) URLs"),
        (["--ari-app", "a,b"], "ari_app must be a plain name"),
        (["--media-host", ""], "media_host must be set"),
        (["--transport", "carrier-pigeon"], "transport must be one of rtp, audiosocket, websocket"),
        (["--log-level", "LOUD"], "log_level must be"),
    ],
)
def test_each_bad_value_is_named(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(argv, environ={})


def test_password_is_not_printed() -> None:
    assert "s3cret" not in repr(Settings(ari_password="s3cret"))


def test_check_config_exits_2_with_the_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mediastream.cli", "serve", "--check-config", "--transport", "fax"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "transport must be one of" in result.stderr
