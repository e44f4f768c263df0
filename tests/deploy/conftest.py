"""Helpers for the deployment checks: tools, manifests, the gateway's settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mediastream.config import ENV_PREFIX, Settings
from tests.deploy import tools

ROOT = tools.ROOT
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCS = ROOT / "docs"

T = TypeVar("T")

SETTINGS = {ENV_PREFIX + f.name.upper(): f for f in dataclasses.fields(Settings)}
"""Every MEDIASTREAM_* variable the gateway reads, to its field."""

SECRET_SETTINGS = {env for env, f in SETTINGS.items() if not f.repr}
"""Settings the gateway never prints (passwords, keys, tokens)."""


def need(get: Callable[[], T]) -> T:
    """A tool from tests.deploy.tools, or skip the test saying why it is missing."""
    try:
        return get()
    except tools.ToolUnavailable as exc:
        pytest.skip(f"cannot be installed here: {exc}")


def load_yaml(path: Path) -> list[dict[str, Any]]:
    """Every document of a YAML file (empty ones dropped)."""
    yaml = need(tools.yaml)
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object of deploy/k8s by (kind, name)."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_yaml(path):
            key = (doc["kind"], doc.get("metadata", {}).get("name", ""))
            assert key not in objects, f"{key} defined twice"
            objects[key] = doc
    return objects
