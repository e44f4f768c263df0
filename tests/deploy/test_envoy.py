"""deploy/envoy: Envoy's configuration valid for Envoy and right for the gateway.

There is no Envoy binary here, so envoy.yaml is checked by deploy/envoy/validate,
a Go program that decodes it with Envoy's own API (go-control-plane, the
version of the pinned image) and runs the API's validation rules; the
manifests are rendered with kustomize and checked with kubeconform, as
deploy/k8s is. Both tools come from the Go module proxy; without Go the tests
that need them skip.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mediastream.api.grpc_service import SERVICE_NAME
from tests.deploy import tools
from tests.deploy.conftest import DEPLOY, k8s_objects, load_yaml, need
from tests.deploy.test_k8s import _kubeconform

ENVOY = DEPLOY / "envoy"
CONFIG = ENVOY / "envoy.yaml"
VALIDATE = ENVOY / "validate"

HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

# One worker runs the whole module under pytest-xdist: its module fixture builds a validator.
pytestmark = pytest.mark.xdist_group("envoy")
GO_ENV = {"GOFLAGS": "-buildvcs=false", "GOWORK": "off"}


# --- tools ------------------------------------------------------------------------------


def _kustomize() -> Path:
    return tools.kustomize()


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/envoy/validate, built once (its modules downloaded on first use)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain (`go`) to build deploy/envoy/validate with")
    env = {**os.environ, **GO_ENV}
    download = subprocess.run(
        [go, "mod", "download"], cwd=VALIDATE, env=env, capture_output=True, text=True, timeout=600
    )
    if download.returncode != 0:
        pytest.skip(f"cannot download the validator's Go modules: {download.stderr[-500:]}")
    binary = tmp_path_factory.mktemp("envoy-validate") / "validate"
    build = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=VALIDATE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    return binary


def _validate(binary: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), str(path)], capture_output=True, text=True, timeout=60, check=False
    )


@cache
def _rendered() -> str:
    """`kustomize build deploy/envoy`, what `kubectl apply -k deploy/envoy` applies."""
    done = subprocess.run(
        [str(need(_kustomize)), "build", str(ENVOY)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _objects() -> dict[tuple[str, str], dict[str, Any]]:
    yaml = need(tools.yaml)
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in yaml.safe_load_all(_rendered()):
        if doc:
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


# --- envoy.yaml: valid for Envoy --------------------------------------------------------


def _config() -> dict[str, Any]:
    (doc,) = load_yaml(CONFIG)
    return doc


def test_envoy_yaml_is_valid_for_envoy(validator: Path) -> None:
    done = _validate(validator, CONFIG)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ok: {CONFIG}"


def _hcms(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each listener's HTTP connection manager, by listener name."""
    found = {}
    for listener in doc["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                if f["typed_config"]["@type"] == HCM:
                    found[listener["name"]] = f["typed_config"]
    return found


def _cluster(doc: dict[str, Any], name: str) -> dict[str, Any]:
    (cluster,) = (c for c in doc["static_resources"]["clusters"] if c["name"] == name)
    return dict(cluster)


def _misspell_a_field(doc: dict[str, Any]) -> None:
    hcm = _hcms(doc)["grpc"]
    hcm["stream_idle_timout"] = hcm.pop("stream_idle_timeout")


def _drop_a_cluster_name(doc: dict[str, Any]) -> None:
    del doc["static_resources"]["clusters"][0]["name"]


def _misname_an_extension(doc: dict[str, Any]) -> None:
    _hcms(doc)["grpc"]["http_filters"][0]["typed_config"]["@type"] += "Typo"


def _break_a_rule_inside_typed_config(doc: dict[str, Any]) -> None:
    _hcms(doc)["websocket"]["stat_prefix"] = ""


def _route_to_a_missing_cluster(doc: dict[str, Any]) -> None:
    route = _hcms(doc)["grpc"]["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    route["cluster"] = "mediastream-typo"


def _use_a_deprecated_field(doc: dict[str, Any]) -> None:
    doc["static_resources"]["clusters"][0]["dns_refresh_rate"] = "5s"


def _give_a_port_out_of_range(doc: dict[str, Any]) -> None:
    doc["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = 70000


BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "misspelled field": (_misspell_a_field, 'unknown field "stream_idle_timout"'),
    "cluster without a name": (_drop_a_cluster_name, "Cluster.Name: value length must be"),
    "unknown typed_config type": (_misname_an_extension, "unable to resolve"),
    "rule broken inside a typed_config": (
        _break_a_rule_inside_typed_config,
        "HttpConnectionManager.StatPrefix: value length must be",
    ),
    "route to an undefined cluster": (_route_to_a_missing_cluster, "unknown cluster"),
    "deprecated field": (_use_a_deprecated_field, "dns_refresh_rate: deprecated field"),
    "port out of range": (_give_a_port_out_of_range, "SocketAddress.PortValue"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_validator_rejects_a_broken_config(validator: Path, tmp_path: Path, breakage: str) -> None:
    # The validator can fail: each deliberate error is caught, and named.
    yaml = need(tools.yaml)
    doc = copy.deepcopy(_config())
    breaker, message = BREAKAGES[breakage]
    breaker(doc)
    bad = tmp_path / "envoy.yaml"
    bad.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = _validate(validator, bad)
    assert done.returncode == 1, done.stdout + done.stderr
    assert message in done.stderr, done.stderr


# --- envoy.yaml: right for the gateway --------------------------------------------------


def test_no_timer_ends_a_stream() -> None:
    doc = _config()
    hcms = _hcms(doc)
    assert {"grpc", "websocket"} <= set(hcms)
    for name in ("grpc", "websocket"):
        hcm = hcms[name]
        assert hcm["stream_idle_timeout"] == "0s", name
        assert hcm.get("request_timeout", "0s") == "0s", name
        common = hcm.get("common_http_protocol_options", {})
        assert not {"max_stream_duration", "max_connection_duration"} & set(common), name
        assert "max_stream_duration" not in hcm, name
        for vhost in hcm["route_config"]["virtual_hosts"]:
            for route in vhost["routes"]:
                action = route["route"]
                # Without an explicit 0s Envoy ends every request after 15 s.
                assert action["timeout"] == "0s", (name, route)
                assert not {"idle_timeout", "max_stream_duration"} & set(action), route
                assert "per_try_timeout" not in action.get("retry_policy", {}), route
    for name in ("mediastream", "mediastream-ws"):
        options = _cluster(doc, name)["typed_extension_protocol_options"][HTTP_OPTIONS]
        common = options.get("common_http_protocol_options", {})
        assert not {"max_stream_duration", "max_connection_duration"} & set(common), name


def test_grpc_is_balanced_per_stream_over_http2() -> None:
    hcm = _hcms(_config())["grpc"]
    assert hcm["codec_type"] == "HTTP2"
    (vhost,) = hcm["route_config"]["virtual_hosts"]
    assert {r["route"]["cluster"] for r in vhost["routes"]} == {"mediastream"}
    cluster = _cluster(_config(), "mediastream")
    options = cluster["typed_extension_protocol_options"][HTTP_OPTIONS]
    assert "http2_protocol_options" in options["explicit_http_config"]
    # Per request, and a gRPC request is a stream; no hashing, no stickiness.
    assert cluster["lb_policy"] in {"ROUND_ROBIN", "LEAST_REQUEST"}
    # Only healthy pods, even when most are draining.
    assert cluster["common_lb_config"]["healthy_panic_threshold"]["value"] == 0
    # The default circuit breakers would cap every pod together at 1024 streams.
    gateway = k8s_objects()
    replicas = gateway[("Deployment", "mediastream")]["spec"]["replicas"]
    per_pod = int(gateway[("ConfigMap", "mediastream-config")]["data"]["MEDIASTREAM_MAX_STREAMS"])
    for name in ("mediastream", "mediastream-ws"):
        (limits,) = _cluster(_config(), name)["circuit_breakers"]["thresholds"]
        for key in ("max_requests", "max_connections", "max_pending_requests"):
            assert limits[key] >= 10 * replicas * per_pod, (name, key)


def test_websocket_upgrades_reach_the_shim() -> None:
    hcm = _hcms(_config())["websocket"]
    # HTTP/1.1 downstream, so that the cluster (which follows it) is HTTP/1.1 too.
    assert hcm["codec_type"] == "HTTP1"
    assert {"upgrade_type": "websocket"} in hcm["upgrade_configs"]
    (vhost,) = hcm["route_config"]["virtual_hosts"]
    assert {r["route"]["cluster"] for r in vhost["routes"]} == {"mediastream-ws"}
    options = _cluster(_config(), "mediastream-ws")["typed_extension_protocol_options"]
    assert "use_downstream_protocol_config" in options[HTTP_OPTIONS]


def _endpoint(cluster: dict[str, Any]) -> dict[str, Any]:
    (locality,) = cluster["load_assignment"]["endpoints"]
    (lb_endpoint,) = locality["lb_endpoints"]
    return dict(lb_endpoint["endpoint"])


def test_upstreams_are_the_gateway_pods_and_their_grpc_health() -> None:
    gateway = k8s_objects()
    headless = gateway[("Service", "mediastream-pods")]
    assert headless["spec"]["clusterIP"] == "None"
    ports = {p["name"]: p["port"] for p in headless["spec"]["ports"]}
    (container,) = gateway[("Deployment", "mediastream")]["spec"]["template"]["spec"]["containers"]
    readiness = container["readinessProbe"]["grpc"]
    for name, port in (("mediastream", "grpc"), ("mediastream-ws", "ws")):
        cluster = _cluster(_config(), name)
        # One host per ready pod, not one per Service.
        assert cluster["type"] == "STRICT_DNS", name
        address = _endpoint(cluster)["address"]["socket_address"]
        host, service = address["address"], headless["metadata"]["name"]
        # The short name (Envoy in the gateway's namespace) or the full one.
        assert re.fullmatch(rf"{service}(\.[a-z0-9-]+\.svc\.cluster\.local)?", host), host
        assert address["port_value"] == ports[port], name
        # The readiness the kubelet probes: NOT_SERVING while draining or without Asterisk.
        (check,) = cluster["health_checks"]
        assert check["grpc_health_check"]["service_name"] == SERVICE_NAME == readiness["service"]
        assert cluster["ignore_health_on_host_removal"] is True
    # The WebSocket pods are checked on their gRPC port.
    ws = _endpoint(_cluster(_config(), "mediastream-ws"))
    assert ws["health_check_config"]["port_value"] == ports["grpc"] == readiness["port"]


def test_admin_stays_on_loopback_and_ops_exposes_only_two_pages() -> None:
    doc = _config()
    admin = doc["admin"]["address"]["socket_address"]
    assert admin["address"] == "127.0.0.1"
    target = _endpoint(_cluster(doc, "envoy-admin"))["address"]["socket_address"]
    assert target == admin
    (vhost,) = _hcms(doc)["ops"]["route_config"]["virtual_hosts"]
    to_admin = {r["match"].get("path") for r in vhost["routes"] if "route" in r}
    assert to_admin == {"/ready", "/stats/prometheus"}
    assert all(r["route"]["cluster"] == "envoy-admin" for r in vhost["routes"] if "route" in r)
    assert vhost["routes"][-1]["direct_response"]["status"] == 404


# --- the manifests ------------------------------------------------------------------------


@pytest.mark.parametrize("version", tools.KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version: str, tmp_path: Path) -> None:
    rendered = tmp_path / "envoy.yaml"
    rendered.write_text(_rendered())
    done = _kubeconform(version, rendered)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Valid: 4, Invalid: 0, Errors: 0", done.stdout), done.stdout


def _envoy_deployment() -> dict[str, Any]:
    (deployment,) = (o for (kind, _), o in _objects().items() if kind == "Deployment")
    return deployment


def _envoy_container() -> dict[str, Any]:
    (container,) = _envoy_deployment()["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_the_configmap_is_envoy_yaml_and_envoy_reads_it() -> None:
    # One copy: the ConfigMap is generated from deploy/envoy/envoy.yaml.
    (configmap,) = (o for (kind, _), o in _objects().items() if kind == "ConfigMap")
    assert configmap["data"] == {"envoy.yaml": CONFIG.read_text()}
    pod = _envoy_deployment()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    container = _envoy_container()
    (mount,) = (m for m in container["volumeMounts"] if "configMap" in volumes[m["name"]])
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    args = container["args"]
    assert args[args.index("--config-path") + 1] == f"{mount['mountPath']}/envoy.yaml"


def test_the_image_is_the_envoy_the_config_is_validated_for() -> None:
    image = _envoy_container()["image"]
    match = re.fullmatch(r"envoyproxy/envoy:v(\d+)\.(\d+)\.(\d+)", image)
    assert match, f"pin a release tag: {image}"
    gomod = (VALIDATE / "go.mod").read_text()
    api = re.search(r"github\.com/envoyproxy/go-control-plane/envoy v(\d+)\.(\d+)\.\d+", gomod)
    assert api, "go.mod requires no go-control-plane/envoy"
    assert match.groups()[:2] == api.groups(), (image, api.group(0))


def _listener_ports() -> dict[str, int]:
    return {
        listener["name"]: listener["address"]["socket_address"]["port_value"]
        for listener in _config()["static_resources"]["listeners"]
    }


def test_ports_probes_and_services_line_up() -> None:
    objects = _objects()
    container = _envoy_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    listeners = _listener_ports()
    assert ports == {
        "grpc": listeners["grpc"],
        "ws": listeners["websocket"],
        "ops": listeners["ops"],
    }
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[kind]["httpGet"]
        assert (probe["path"], probe["port"]) == ("/ready", "ops"), kind
    (service,) = (o for (kind, _), o in objects.items() if kind == "Service")
    labels = _envoy_deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "grpc": ports["grpc"],
        "ws": ports["ws"],
    }
    # The same ports as the gateway's own Service: clients just change the host.
    gateway = k8s_objects()[("Service", "mediastream")]["spec"]["ports"]
    assert {p["name"]: p["port"] for p in gateway} == {"grpc": ports["grpc"], "ws": ports["ws"]}
    (pdb,) = (o for (kind, _), o in objects.items() if kind == "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # Envoy's pods must not join the gateway's Services.
    for name in ("mediastream", "mediastream-pods"):
        selector = k8s_objects()[("Service", name)]["spec"]["selector"]
        assert not selector.items() <= labels.items(), name


def test_envoy_is_locked_down() -> None:
    pod = _envoy_deployment()["spec"]["template"]["spec"]
    container = _envoy_container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["memory"]
    assert "cpu" not in container["resources"]["limits"]
    # Without it Envoy starts a worker per CPU of the node, not of the pod.
    assert "--concurrency" in container["args"]
