"""deploy/k8s: valid against the Kubernetes schemas, and right for this gateway."""

from __future__ import annotations

import inspect
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mediastream import config
from mediastream.api.grpc_external_media import SERVICE_NAME as EXTERNAL_MEDIA_SERVICE
from mediastream.api.grpc_service import SERVICE_NAME
from mediastream.app import Gateway
from tests.deploy import tools
from tests.deploy.conftest import (
    K8S,
    ROOT,
    SECRET_SETTINGS,
    SETTINGS,
    k8s_objects,
    load_yaml,
    need,
)

HEALTH_SERVICES = {"", SERVICE_NAME, EXTERNAL_MEDIA_SERVICE}


def _kubeconform(version: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    binary = need(tools.kubeconform)
    location = need(tools.schema_location)
    return subprocess.run(
        [
            str(binary),
            "-strict",
            "-summary",
            "-kubernetes-version",
            version,
            "-schema-location",
            location,
            "-skip",
            "Kustomization",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("version", tools.KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    done = _kubeconform(version, K8S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Invalid: 0, Errors: 0", done.stdout), done.stdout


def test_kubeconform_rejects_a_broken_manifest(tmp_path: Path) -> None:
    # The schemas are really loaded and strict: an unknown field fails.
    text = (K8S / "deployment.yaml").read_text().replace("maxSurge:", "maxSurgee:")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    done = _kubeconform(tools.KUBERNETES_VERSIONS[-1], bad)
    assert done.returncode != 0
    assert "maxSurgee" in done.stdout


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def _deployment() -> dict[str, Any]:
    return k8s_objects()[("Deployment", "mediastream")]


def _container() -> dict[str, Any]:
    (container,) = _deployment()["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _config_env() -> dict[str, str]:
    objects = k8s_objects()
    env = dict(objects[("ConfigMap", "mediastream-config")]["data"])
    env.update(objects[("Secret", "mediastream-secrets")]["stringData"])
    return {k: str(v) for k, v in env.items()}


def test_probes_use_grpc_health_with_a_service_the_gateway_reports() -> None:
    c = _container()
    grpc_port = int(_config_env()["MEDIASTREAM_GRPC_LISTEN"].rpartition(":")[2])
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c[kind]["grpc"]
        assert probe["port"] == grpc_port, kind
        assert "service" in probe and probe["service"] in HEALTH_SERVICES, kind
    assert c["readinessProbe"]["grpc"]["service"] == SERVICE_NAME


def test_liveness_outlasts_a_drain() -> None:
    # Health is NOT_SERVING for the whole drain: liveness must not kill it first.
    c = _container()
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > float(
        _config_env()["MEDIASTREAM_DRAIN_TIMEOUT_S"]
    )


def test_grace_period_covers_prestop_drain_and_shutdown() -> None:
    spec = _deployment()["spec"]["template"]["spec"]
    command = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    drain = float(_config_env()["MEDIASTREAM_DRAIN_TIMEOUT_S"])
    grpc_grace = inspect.signature(Gateway.stop).parameters["grace"].default
    assert spec["terminationGracePeriodSeconds"] >= pause + drain + grpc_grace + 10


def test_each_pod_advertises_its_own_address_and_app() -> None:
    env = {e["name"]: e for e in _container()["env"]}
    assert env["MEDIASTREAM_MEDIA_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["MEDIASTREAM_ARI_APP"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # Not also set for every pod alike.
    assert not {"MEDIASTREAM_MEDIA_HOST", "MEDIASTREAM_ARI_APP"} & set(_config_env())


def test_settings_are_real_valid_and_secrets_stay_secret() -> None:
    objects = k8s_objects()
    configmap = set(objects[("ConfigMap", "mediastream-config")]["data"])
    secret = set(objects[("Secret", "mediastream-secrets")]["stringData"])
    assert not (configmap | secret) - set(SETTINGS), "unknown settings"
    assert not configmap & SECRET_SETTINGS, "a secret setting in the ConfigMap"
    assert secret <= SECRET_SETTINGS
    environ = {
        **_config_env(),
        "MEDIASTREAM_MEDIA_HOST": "10.1.2.3",
        "MEDIASTREAM_ARI_APP": "mediastream-5d4f7c9b8-x2x9z",
    }
    config.load(environ=environ)  # raises ConfigError on a bad value


def test_container_is_locked_down() -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    c = _container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # The image's user (Dockerfile USER) is the one the pod runs as.
    user = re.findall(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M)[-1]
    assert pod["securityContext"]["runAsUser"] == int(user)


def test_ports_services_and_budget_line_up() -> None:
    objects = k8s_objects()
    env = _config_env()
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    assert ports["grpc"] == int(env["MEDIASTREAM_GRPC_LISTEN"].rpartition(":")[2])
    assert ports["ws"] == int(env["MEDIASTREAM_WS_LISTEN"].rpartition(":")[2])
    assert ports["metrics"] == int(env["MEDIASTREAM_METRICS_LISTEN"].rpartition(":")[2])
    assert ports["audiosocket"] == int(env["MEDIASTREAM_AUDIOSOCKET_PORT"])
    labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    services = [o for (kind, _), o in objects.items() if kind == "Service"]
    assert {s["metadata"]["name"] for s in services} == {"mediastream", "mediastream-pods"}
    for service in services:
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, port
    public = objects[("Service", "mediastream")]["spec"]["ports"]
    assert {p["name"] for p in public} == {"grpc", "ws"}
    headless = objects[("Service", "mediastream-pods")]["spec"]
    assert headless["clusterIP"] == "None"
    assert "audiosocket" in {p["name"] for p in headless["ports"]}
    pdb = objects[("PodDisruptionBudget", "mediastream")]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert _deployment()["spec"]["selector"]["matchLabels"].items() <= labels.items()
