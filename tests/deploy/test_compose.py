"""deploy/compose.yaml and deploy/asterisk/: the gateway and Asterisk agree."""

from __future__ import annotations

import configparser
import re
from typing import Any
from urllib.parse import urlparse

from mediastream import config
from tests.deploy.conftest import DEPLOY, ROOT, SETTINGS, load_yaml

COMPOSE = DEPLOY / "compose.yaml"


def _compose() -> dict[str, Any]:
    (doc,) = load_yaml(COMPOSE)
    return doc


def _asterisk_conf(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(comment_prefixes=(";",), inline_comment_prefixes=(";",))
    parser.read_string((DEPLOY / "asterisk" / name).read_text())
    return parser


def _gateway_env() -> dict[str, str]:
    env = _compose()["services"]["mediastream"]["environment"]
    return {k: str(v) for k, v in env.items()}


def test_services_mounts_and_build_exist() -> None:
    services = _compose()["services"]
    assert set(services) == {"asterisk", "mediastream"}
    for volume in services["asterisk"]["volumes"]:
        source, target, *_ = volume.split(":")
        assert (DEPLOY / source).is_file(), source
        assert target.startswith("/etc/asterisk/")
    build = services["mediastream"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"
    depends = services["mediastream"]["depends_on"]["asterisk"]
    assert depends["condition"] == "service_healthy"
    assert "healthcheck" in services["asterisk"]


def test_gateway_settings_are_real_and_valid() -> None:
    env = _gateway_env()
    assert not set(env) - set(SETTINGS), "unknown settings"
    config.load(environ=env)


def test_gateway_and_asterisk_configs_agree() -> None:
    env = _gateway_env()
    http = _asterisk_conf("http.conf")["general"]
    ari = _asterisk_conf("ari.conf")
    url = urlparse(env["MEDIASTREAM_ARI_URL"])
    assert url.hostname == "asterisk" and url.port == int(http["bindport"])
    assert http["enabled"] == "yes" and http["bindaddr"] == "0.0.0.0"
    assert ari["general"]["enabled"] == "yes"
    user = ari[env["MEDIASTREAM_ARI_USER"]]
    assert user["type"] == "user" and user["read_only"] == "no"
    assert user["password"] == env["MEDIASTREAM_ARI_PASSWORD"]
    rtp = _asterisk_conf("rtp.conf")["general"]
    assert 0 < int(rtp["rtpstart"]) < int(rtp["rtpend"]) < 65536


def test_media_host_is_the_gateways_own_name() -> None:
    service = _compose()["services"]["mediastream"]
    assert _gateway_env()["MEDIASTREAM_MEDIA_HOST"] == service["hostname"]


def test_stop_grace_outlasts_the_drain() -> None:
    service = _compose()["services"]["mediastream"]
    match = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
    assert match
    drain = config.load(environ=_gateway_env()).drain_timeout_s
    assert int(match.group(1)) > drain + 5
