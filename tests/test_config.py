"""Settings: flags over environment over file over defaults, each bad value refused clearly.

`BAD` holds one or more bad values for every setting that can be bad; each runs as a
flag, as an environment variable and as a string in the configuration file, and must
raise a ConfigError naming the setting and where the value came from.
`test_every_setting_has_a_bad_value_case` fails for a setting with neither a case here
nor an entry in `FREE_FORM`, so a new setting cannot arrive without its check.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mediastream import config
from mediastream.config import ENV_PREFIX, ConfigError, Settings, parse
from mediastream.core.stream import Transport

SECRETS = {f.name for f in dataclasses.fields(Settings) if not f.repr}

FREE_FORM = {
    "ari_password": "any text is a password (sent UTF-8 encoded in basic auth)",
    "jwt_audience": "any text is an audience; tokens must carry it exactly",
}
"""Settings that accept any value, so have no bad-value case (say why)."""


@dataclass(frozen=True)
class Bad:
    """A bad value for `name`, as text; `{dir}` stands for a directory of test files."""

    name: str
    value: str
    message: str
    extra: dict[str, str] = field(default_factory=dict)
    """Other settings the case needs, given the same way."""
    sources: tuple[str, ...] = ("flag", "env", "file")

    def __str__(self) -> str:
        return f"{self.name}={self.value!r}"


MISSING = "{dir}/missing.pem"
CERT, KEY = "{dir}/cert.pem", "{dir}/key.pem"

BAD = [
    Bad("grpc_listen", "nohost", "grpc_listen must be host:port"),
    Bad("grpc_listen", "127.0.0.1:99999", "grpc_listen must be host:port"),
    Bad("grpc_listen", "::1:50051", "IPv6 address in brackets"),
    Bad("grpc_listen", "my host:50051", "not a host name or IP address"),
    Bad("grpc_listen", "300.1.1.1:50051", "not a valid IP address"),
    Bad("ws_listen", "127.0.0.1", "ws_listen must be host:port"),
    Bad("ws_listen", "", "ws_listen must be host:port"),
    Bad("ari_url", "pbx:8088", "ari_url must be http(s) URLs"),
    Bad("ari_url", "http://pbx:99999/ari", "ari_url must be http(s) URLs"),
    Bad("ari_url", "http://[::1", "ari_url must be http(s) URLs"),
    Bad("ari_url", " , ", "ari_url must be http(s) URLs"),
    Bad("ari_user", "me:you", "ari_user must not contain ':'"),
    Bad("ari_app", "a,b", "ari_app must be a plain name"),
    Bad("ari_app", "", "ari_app must be a plain name"),
    Bad("media_host", "", "media_host must be set"),
    Bad("media_host", "0.0.0.0", "a wildcard address"),
    Bad("media_host", "10.0.0.1:9092", "not a host name or IP address"),
    Bad("media_host", "[::1]", "without brackets"),
    Bad("audiosocket_port", "70000", "audiosocket_port must be a port number"),
    Bad("audiosocket_port", "-1", "audiosocket_port must be a port number"),
    Bad("audiosocket_port", "nine", "audiosocket_port must be a whole number"),
    Bad("transport", "carrier-pigeon", "transport must be one of rtp, audiosocket, websocket"),
    Bad("log_level", "LOUD", "log_level must be DEBUG, INFO, WARNING or ERROR"),
    Bad("log_format", "xml", "log_format must be text or json"),
    Bad("metrics_listen", "9464", "metrics_listen must be host:port"),
    Bad("metrics_token", "two words", "metrics_token must be printable ASCII"),
    Bad("metrics_token", "tökén", "metrics_token must be printable ASCII"),
    Bad("api_keys", " , ", "api_keys is set but holds no key"),
    Bad("api_keys", "good,bad key", "api_keys: key 2 of 2 must be printable ASCII"),
    Bad("jwt_key", "   ", "jwt_key is blank"),
    Bad("jwt_key", MISSING, "jwt_key looks like a file path"),
    Bad("jwt_key", "~/jwt.pub", "jwt_key looks like a file path"),
    Bad("jwt_key", "/run/secrets/jwt", "jwt_key looks like a file path"),
    Bad("jwt_key", "{dir}/empty.txt", "is empty"),
    Bad("jwt_key", "{dir}/bad.pem", "jwt_key is PEM but not an RSA or EC key"),
    Bad("jwt_key", CERT, "jwt_key is PEM but not an RSA or EC key"),
    Bad("tls_cert", MISSING, "tls_cert: no such file"),
    Bad("tls_cert", KEY, "is not a PEM certificate", {"tls_key": KEY}),
    Bad("tls_cert", CERT, "tls_cert and tls_key must be set together"),
    Bad("tls_key", MISSING, "tls_key: no such file", {"tls_cert": CERT}),
    Bad("tls_key", CERT, "is not a PEM private key", {"tls_cert": CERT}),
    Bad("tls_key", "{dir}/encrypted.pem", "is encrypted", {"tls_cert": CERT}),
    Bad("tls_key", KEY, "tls_cert and tls_key must be set together"),
    Bad("tls_client_ca", MISSING, "tls_client_ca: no such file"),
    Bad("tls_client_ca", KEY, "is not a PEM certificate", {"tls_cert": CERT, "tls_key": KEY}),
    Bad("tls_client_ca", CERT, "tls_client_ca (mTLS) needs tls_cert and tls_key"),
    Bad("max_streams", "0", "max_streams must be at least 1"),
    Bad("max_streams", "lots", "max_streams must be a whole number"),
    Bad("max_streams_per_target", "0", "max_streams_per_target must be at least 1"),
    Bad("max_streams_per_client", "-1", "max_streams_per_client must be 0 (no limit) or more"),
    Bad("ws_max_pending_per_address", "-1", "ws_max_pending_per_address must be 0 (no limit)"),
    Bad("ws_header_timeout_s", "0", "ws_header_timeout_s must be between 0.1 and 3600 s"),
    Bad("ws_header_timeout_s", "inf", "ws_header_timeout_s must be a number of seconds"),
    Bad("play_buffer_s", "0", "play_buffer_s must be between 1 and 600"),
    Bad("play_buffer_s", "601", "play_buffer_s must be between 1 and 600"),
    Bad("resume_grace_s", "-1", "resume_grace_s must not be negative"),
    Bad("resume_grace_s", "inf", "resume_grace_s must be a number of seconds"),
    Bad("drain_timeout_s", "-0.5", "drain_timeout_s must not be negative"),
    Bad("drain_timeout_s", "nan", "drain_timeout_s must be a number of seconds"),
    Bad("external_media_allow", "10.0.0.0/33", "external_media_allow:"),
    Bad("external_media_allow", "everywhere", "external_media_allow:"),
    Bad("dial_out_connect_timeout_s", "0", "dial_out_connect_timeout_s must be more than 0"),
    Bad("dial_out_callback_timeout_s", "4000", "dial_out_callback_timeout_s must be more than 0"),
    Bad("dial_out_callback_retries", "11", "dial_out_callback_retries must be between 0 and 10"),
    Bad("dial_out_redials", "-1", "dial_out_redials must be between 0 and 10"),
    Bad("dial_out_ca_file", "/no/such/ca.pem", "dial_out_ca_file: no such file"),
    Bad("keepalive_time_s", "0", "keepalive_time_s must be between 0.001 and"),
    Bad("keepalive_time_s", "3000000", "keepalive_time_s must be between 0.001 and"),
    Bad("keepalive_timeout_s", "0.0001", "keepalive_timeout_s must be between 0.001 and"),
    Bad("keepalive_timeout_s", "soon", "keepalive_timeout_s must be a number of seconds"),
    Bad("advertise_address", "10.0.0.1", "advertise_address must be host:port"),
    Bad("advertise_address", "10.0.0.1:0", "port must be 1-65535"),
    Bad("advertise_address", "0.0.0.0:50051", "a wildcard address"),
    Bad("advertise_address", "$(POD_IP):50051", "not a host name or IP address"),
    Bad("advertise_address", "2001:db8::1:50051", "IPv6 address in brackets"),
    Bad("workers", "0", "workers must be between 1 and 64"),
    Bad("workers", "65", "workers must be between 1 and 64"),
    Bad("workers", "two", "workers must be a whole number"),
    Bad("event_loop", "fast", "event_loop must be auto, uvloop or asyncio"),
    # The file cannot name another file: see test_config_key_in_the_file_is_refused.
    Bad("config", "{dir}/missing.toml", "does not exist", sources=("flag", "env")),
    Bad("config", "{dir}", "is not a file", sources=("flag", "env")),
    Bad("config", "{dir}/broken.toml", "is not valid TOML", sources=("flag", "env")),
]

GOOD = [
    ("grpc_listen", "[::]:0"),
    ("grpc_listen", "0.0.0.0:50051"),
    ("grpc_listen", "localhost:50051"),
    ("ws_listen", "[::1]:0"),
    ("ws_listen", "::1:8080"),  # the WebSocket listener takes either form
    ("ari_url", "http://pbx-a:8088/ari, https://[2001:db8::1]:8089/ari"),
    ("ari_user", ""),
    ("ari_password", "pässwörd with: spaces"),
    ("ari_app", "mediastream-2.b_c"),
    ("media_host", "::1"),
    ("media_host", "mediastream"),
    ("audiosocket_port", "9092"),
    ("transport", "WebSocket"),
    ("log_level", "debug"),
    ("log_format", "json"),
    ("metrics_listen", ""),
    ("metrics_token", "tok-en_1.2~"),
    ("api_keys", "key-1, key-2"),
    ("jwt_key", "hmac+secret=with/slash"),
    ("jwt_key", "/q8Zr1b2Xk9Vt0cLw3mN4pQ6sT7uY8vW9xA0bC1dE2f="),  # base64, leading /
    ("jwt_key", "{dir}/public.pem"),
    ("jwt_key", "{dir}/hmac.txt"),
    ("jwt_audience", "any audience at all"),
    ("max_streams", "1"),
    ("resume_grace_s", "0"),
    ("ws_max_pending_per_address", "0"),
    ("ws_header_timeout_s", "0.1"),
    ("drain_timeout_s", "0"),
    ("external_media_allow", ""),
    ("keepalive_time_s", "0.001"),
    ("keepalive_timeout_s", "2147483"),
    ("advertise_address", "[2001:db8::1]:50051"),
    ("advertise_address", "pod-1.mediastream.ns.svc.cluster.local:50051"),
    ("workers", "64"),
    ("event_loop", "asyncio"),
    ("config", ""),
]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A directory of PEM and TOML files the cases name as `{dir}/...`."""
    public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "public.pem").write_bytes(public)
    (tmp_path / "hmac.txt").write_text("a secret kept in a file\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "bad.pem").write_text(
        "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"
    )
    # TLS files are only checked to be PEM of the right kind: gRPC reads them at start.
    (tmp_path / "cert.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    )
    (tmp_path / "key.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    )
    (tmp_path / "encrypted.pem").write_text(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIE\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    (tmp_path / "broken.toml").write_text("workers = \n")
    return tmp_path


def _fill(value: str, files: Path) -> str:
    return value.replace("{dir}", str(files))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _toml(values: dict[str, object]) -> str:
    # JSON strings, numbers and arrays are TOML too.
    return "".join(f"{k} = {json.dumps(v, ensure_ascii=False)}\n" for k, v in values.items())


def _load(source: str, values: dict[str, str], files: Path) -> Settings:
    """Settings with `values` given as flags, environment variables or a file."""
    if source == "flag":
        return parse([f"{_flag(k)}={v}" for k, v in values.items()], environ={})
    if source == "env":
        return parse([], environ={_env(k): v for k, v in values.items()})
    path = files / "settings.toml"
    path.write_text(_toml(dict(values)))
    return parse(["--config", str(path)], environ={})


def _where(source: str, name: str, files: Path) -> str:
    return {"flag": _flag(name), "env": _env(name), "file": str(files / "settings.toml")}[source]


CASES = [pytest.param(bad, source, id=f"{bad}-{source}") for bad in BAD for source in bad.sources]


@pytest.mark.parametrize(("bad", "source"), CASES)
def test_each_bad_value_is_refused_naming_the_setting(bad: Bad, source: str, files: Path) -> None:
    values = {k: _fill(v, files) for k, v in {**bad.extra, bad.name: bad.value}.items()}
    with pytest.raises(ConfigError) as err:
        _load(source, values, files)
    message = str(err.value)
    assert bad.message in message
    assert err.value.key == bad.name
    assert f"(from {_where(source, bad.name, files)})" in message, message
    if bad.name in SECRETS and bad.value.strip() and not bad.value.startswith("{dir}"):
        assert bad.value.strip() not in message, "a secret in an error message"


def test_every_setting_has_a_bad_value_case() -> None:
    names = {f.name for f in dataclasses.fields(Settings)}
    covered = {bad.name for bad in BAD}
    missing = names - covered - set(FREE_FORM)
    assert not missing, (
        f"settings without a bad-value case in tests/test_config.py BAD: {sorted(missing)}; "
        "add one (and its check in Settings.validate), or list the setting in FREE_FORM "
        "saying why any value is fine"
    )
    assert not set(FREE_FORM) - names, "FREE_FORM names settings that do not exist"
    assert not set(FREE_FORM) & covered, "a FREE_FORM setting has bad-value cases"
    assert all(bad.message for bad in BAD)


@pytest.mark.parametrize(("name", "value"), GOOD, ids=[f"{n}={v!r}" for n, v in GOOD])
@pytest.mark.parametrize("source", ["flag", "env", "file"])
def test_good_values_are_accepted(name: str, value: str, source: str, files: Path) -> None:
    if name == "config" and source == "file":
        pytest.skip("the file cannot name a file")
    extra = {"tls_cert": CERT, "tls_key": KEY} if name.startswith("tls") else {}
    values = {k: _fill(v, files) for k, v in {**extra, name: value}.items()}
    settings = _load(source, values, files)
    got = getattr(settings, name)
    assert (got.value if isinstance(got, Transport) else str(got)) in (
        values[name],
        values[name].lower(),
        str(float(values[name])) if name.endswith("_s") else values[name],
    )


def test_free_form_settings_take_any_text(files: Path) -> None:
    for name in FREE_FORM:
        for value in ("", " ", "a:b,c/d", "ünïcode ✓", "-----BEGIN nothing"):
            assert getattr(parse([f"{_flag(name)}={value}"], environ={}), name) == value


# --- defaults and precedence ----------------------------------------------------------


def test_defaults_run_the_embedded_asterisk() -> None:
    s = parse([], environ={})
    assert s.embedded and s.grpc_listen == "127.0.0.1:50051" and s.transport is Transport.RTP
    assert s.config == "" and s.validate() is s


def test_every_default_is_valid() -> None:
    Settings().validate()


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    path = tmp_path / "mediastream.toml"
    path.write_text(
        _toml(
            {
                "ari_app": "fileapp",
                "ari_url": "http://file:8088/ari",
                "max_streams": 7,
                "transport": "audiosocket",
            }
        )
    )
    env = {
        "MEDIASTREAM_CONFIG": str(path),
        "MEDIASTREAM_ARI_APP": "envapp",
        "MEDIASTREAM_ARI_URL": "http://env:8088/ari",
    }
    s = parse(["--ari-app", "flagapp"], environ=env)
    assert s.ari_app == "flagapp"  # flag over environment over file
    assert s.ari_url == "http://env:8088/ari"  # environment over file
    assert (s.max_streams, s.transport) == (7, Transport.AUDIOSOCKET)  # file over default
    assert s.grpc_listen == "127.0.0.1:50051"  # default
    assert s.config == str(path)


def test_config_flag_beats_the_environment_and_empty_means_none(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('ari_app = "a"\n')
    (tmp_path / "b.toml").write_text('ari_app = "b"\n')
    env = {"MEDIASTREAM_CONFIG": str(tmp_path / "a.toml")}
    assert parse([], environ=env).ari_app == "a"
    assert parse(["--config", str(tmp_path / "b.toml")], environ=env).ari_app == "b"
    assert parse(["--config", ""], environ=env).ari_app == "mediastream"


def test_an_empty_environment_variable_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('metrics_listen = "127.0.0.1:9999"\n')
    env = {"MEDIASTREAM_CONFIG": str(path), "MEDIASTREAM_METRICS_LISTEN": ""}
    assert parse([], environ=env).metrics_listen == ""


# --- the configuration file -----------------------------------------------------------


def _file(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "mediastream.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def test_the_file_takes_toml_types(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "workers = 2\n"
        "max_streams = '50'\n"
        "keepalive_time_s = 5\n"
        "resume_grace_s = 2.5\n"
        "audiosocket_port = 9092\n"
        'api_keys = ["key-1", "key-2"]\n'
        'external_media_allow = ["10.0.0.0/8", "::1/128"]\n'
        "transport = 'WEBSOCKET'\n",
    )
    s = parse(["--config", path], environ={})
    assert (s.workers, s.max_streams, s.keepalive_time_s, s.resume_grace_s) == (2, 50, 5.0, 2.5)
    assert isinstance(s.keepalive_time_s, float) and s.audiosocket_port == 9092
    assert s.api_key_list == ["key-1", "key-2"] and s.transport is Transport.WEBSOCKET
    assert s.external_media_allow == "10.0.0.0/8,::1/128"


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ('workers = "two"', "workers", "workers must be a whole number, got 'two'"),
        ("workers = 2.5", "workers", "workers must be a whole number, got 2.5"),
        ("workers = true", "workers", "workers must be a whole number, got True"),
        ("workers = 0", "workers", "workers must be between 1 and 64, got 0"),
        ("audiosocket_port = 70000", "audiosocket_port", "must be a port number"),
        ("grpc_listen = 50051", "grpc_listen", "grpc_listen must be a string (in quotes)"),
        ("resume_grace_s = inf", "resume_grace_s", "must be a number of seconds, got inf"),
        ("keepalive_time_s = nan", "keepalive_time_s", "must be a number of seconds, got nan"),
        ("drain_timeout_s = false", "drain_timeout_s", "must be a number of seconds"),
        ("transport = 1", "transport", "transport must be one of rtp"),
        ("ari_url = [1, 2]", "ari_url", "or an array of strings"),
        ("log_level = ['INFO']", "log_level", "log_level must be a string"),
        ("max_streams = 1979-05-27", "max_streams", "max_streams must be a whole number"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_key_and_the_file(
    tmp_path: Path, text: str, name: str, message: str
) -> None:
    path = _file(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as err:
        parse(["--config", path], environ={})
    assert message in str(err.value) and f"(from {path})" in str(err.value)
    assert err.value.key == name


def test_a_secret_of_the_wrong_type_is_not_shown(tmp_path: Path) -> None:
    path = _file(tmp_path, "api_keys = [1234567, 7654321]\nmetrics_token = 98765432\n")
    with pytest.raises(ConfigError) as err:
        parse(["--config", path], environ={})
    assert "api_keys must be" in str(err.value)
    assert "1234567" not in str(err.value) and "secret, not shown" in str(err.value)


def test_a_wrongly_typed_value_is_refused_even_when_overridden(tmp_path: Path) -> None:
    # The file is type-checked as a whole; ranges apply to the values in effect.
    path = _file(tmp_path, 'workers = "two"\n')
    with pytest.raises(ConfigError, match="workers must be a whole number"):
        parse(["--config", path, "--workers", "2"], environ={})
    path = _file(tmp_path, "workers = 0\n")
    assert parse(["--config", path, "--workers", "2"], environ={}).workers == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'grpc_listn = "127.0.0.1:1"',
            "unknown setting 'grpc_listn' (did you mean 'grpc_listen'?)",
        ),
        (
            'grpc-listen = "127.0.0.1:1"',
            "unknown setting 'grpc-listen' (did you mean 'grpc_listen'?)",
        ),
        ('MEDIASTREAM_WORKERS = "2"', "unknown setting 'MEDIASTREAM_WORKERS'"),
        (
            "[mediastream]\nworkers = 2",
            "[mediastream] is a table; write settings as top-level keys",
        ),
        ('config = "other.toml"', "'config' cannot be set in a configuration file"),
        ("workers = ", "is not valid TOML"),
        ("workers = 2\nworkers = 3", "is not valid TOML"),
        (b"ari_app = '\xff'\n", "is not UTF-8 text"),
    ],
)
def test_a_broken_file_is_refused_naming_it(
    tmp_path: Path, text: str | bytes, message: str
) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        parse([], environ={"MEDIASTREAM_CONFIG": path})
    assert message in str(err.value) and path in str(err.value)


def test_a_missing_file_names_where_its_name_came_from(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"does not exist \(from MEDIASTREAM_CONFIG\)"):
        parse([], environ={"MEDIASTREAM_CONFIG": missing})
    with pytest.raises(ConfigError, match=r"does not exist \(from --config\)"):
        parse(["--config", missing], environ={})


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = _file(tmp_path, "workers = 2\n")
    os.chmod(path, 0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: every file is readable")
        with pytest.raises(ConfigError, match="Permission denied"):
            parse(["--config", path], environ={})
    finally:
        os.chmod(path, 0o600)


# --- Settings built directly, secrets, uvloop --------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": "2"}, "workers must be a whole number, got '2'"),
        ({"max_streams": True}, "max_streams must be a whole number"),
        ({"resume_grace_s": math.inf}, "resume_grace_s must be a finite number"),
        ({"transport": "rtp"}, "transport must be one of"),
        ({"api_keys": 42}, "api_keys must be a string, got a value (secret, not shown)"),
    ],
)
def test_validate_checks_types_of_settings_built_directly(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(**kwargs).validate()  # type: ignore[arg-type]


def test_event_loop_uvloop_needs_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "_module_available", lambda name: False)
    with pytest.raises(ConfigError, match="uvloop package is not installed"):
        parse(["--event-loop", "uvloop"], environ={})
    monkeypatch.setattr(config, "_module_available", lambda name: True)
    assert parse(["--event-loop", "uvloop"], environ={}).event_loop == "uvloop"


def test_secrets_are_not_in_the_repr() -> None:
    s = Settings(ari_password="s3cret", metrics_token="t0ken", api_keys="k3y", jwt_key="j4t")
    assert not {"s3cret", "t0ken", "k3y", "j4t"} & set(repr(s).replace("'", " ").split())
    assert {"ari_password", "metrics_token", "api_keys", "jwt_key"} == SECRETS


def test_the_help_shows_no_secret_default() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    text = parser.format_help()
    assert "--config FILE" in text and "MEDIASTREAM_CONFIG" in text
    assert "MEDIASTREAM_ARI_PASSWORD; default secret" in " ".join(text.split())


# --- mediastream serve --check-config ---------------------------------------------------


def _check_config(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return subprocess.run(
        [sys.executable, "-m", "mediastream.cli", "serve", "--check-config", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
    )


def test_check_config_prints_the_settings_without_secrets(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        _toml(
            {
                "ari_app": "fromfile",
                "workers": 3,
                "ari_password": "file-pass-1",
                "api_keys": ["file-key-1", "file-key-2"],
                "jwt_key": "file-jwt-secret",
            }
        ),
    )
    env = {"MEDIASTREAM_CONFIG": path, "MEDIASTREAM_METRICS_TOKEN": "env-token-1"}
    done = _check_config(
        "--ari-password", "flag-pass-1", "--advertise-address", "10.1.2.3:50051", env=env
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ari_app='fromfile'" in out and "workers=3" in out and f"config='{path}'" in out
    assert "advertise_address='10.1.2.3:50051'" in out
    for secret in ("file-pass-1", "flag-pass-1", "file-key", "file-jwt-secret", "env-token-1"):
        assert secret not in out + done.stderr


@pytest.mark.parametrize(
    ("args", "env", "file", "expected"),
    [
        (["--transport", "fax"], {}, None, "transport must be one of"),
        (["--workers", "0"], {}, None, "workers must be between 1 and 64, got 0 (from --workers)"),
        ([], {"MEDIASTREAM_WORKERS": "two"}, None, "(from MEDIASTREAM_WORKERS)"),
        ([], {}, 'workers = "two"\n', "workers must be a whole number, got 'two' (from {path})"),
        ([], {}, 'grpc_listn = "1"\n', "{path}: unknown setting 'grpc_listn'"),
        ([], {}, "advertise_address = '0.0.0.0:1'\n", "advertise_address must be host:port"),
        (["--config", "{dir}/none.toml"], {}, None, "none.toml' does not exist (from --config)"),
    ],
)
def test_check_config_exits_2_naming_the_bad_setting(
    tmp_path: Path, args: list[str], env: dict[str, str], file: str | None, expected: str
) -> None:
    path = _file(tmp_path, file) if file is not None else ""
    if file is not None:
        env = {**env, "MEDIASTREAM_CONFIG": path}
    args = [a.replace("{dir}", str(tmp_path)) for a in args]
    done = _check_config(*args, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "mediastream: configuration error: " in done.stderr
    assert expected.replace("{path}", path) in done.stderr
    assert done.stdout == ""
