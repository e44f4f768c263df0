"""docs/: generated parts fresh, and the hand-written parts match the code."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys

import pytest

from mediastream import errors, metrics
from mediastream.core.stream import TargetKind
from tests.deploy.conftest import DOCS, ROOT, SETTINGS

SERVER = ROOT / "server" / "mediastream"
ERROR_CLASSES = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, errors.MediaStreamError)
}


def error_reasons() -> dict[str, set[str]]:
    """Every `reason` a client can get, to the files that raise it.

    Read from the code: each construction of an error class of the error tree,
    with its `reason=` (a literal, or an f-string over the target kind) or,
    without one, the class's default reason. The emulator is not the gateway.
    """
    found: dict[str, set[str]] = {}
    for path in sorted(SERVER.rglob("*.py")):
        rel = path.relative_to(SERVER).as_posix()
        if rel.startswith(("_proto/", "emulator/")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name not in ERROR_CLASSES or name == "MediaStreamError":
                continue
            reason = next((k.value for k in node.keywords if k.arg == "reason"), None)
            if reason is None:
                reasons = {ERROR_CLASSES[name].default_reason}
            elif isinstance(reason, ast.Constant) and isinstance(reason.value, str):
                reasons = {reason.value}
            elif isinstance(reason, ast.JoinedStr) and "kind.name" in ast.unparse(reason):
                template = ast.unparse(reason)
                reasons = {
                    re.sub(r"\{[^}]*kind\.name\}", kind.name, template)[2:-1] for kind in TargetKind
                }
            else:
                continue  # passed through from elsewhere (e.g. error.reason)
            for r in reasons:
                found.setdefault(r, set()).add(rel)
    return found


def test_api_reference_is_fresh() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_api_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr


def test_every_setting_is_in_the_configuration_reference() -> None:
    text = (DOCS / "operations.md").read_text()
    rows = {
        m.group(1): line
        for line in text.splitlines()
        if (m := re.match(r"\| `(MEDIASTREAM_[A-Z0-9_]+)` \|", line))
    }
    missing = set(SETTINGS) - set(rows)
    assert not missing, f"settings missing from docs/operations.md: {sorted(missing)}"
    for env, f in SETTINGS.items():
        row = rows[env]
        assert f"`--{f.name.replace('_', '-')}`" in row, env
        default = f.default if f.default is not dataclasses.MISSING else None
        value = getattr(default, "value", default)
        if value == "":
            shown = "empty"
        else:
            shown = f"`{value:g}`" if isinstance(value, float) else f"`{value}`"
        assert shown in row, f"{env}: default {shown} not in {row!r}"


TEST_KNOBS = {"MEDIASTREAM_REAL_PROXY_LONG_S": ROOT / "tests" / "real_proxy" / "test_proxies.py"}
"""Environment variables of the test suite that the docs name, and the test that reads each."""


def test_test_knobs_are_read_by_their_tests() -> None:
    for knob, path in TEST_KNOBS.items():
        assert f'os.environ.get("{knob}"' in path.read_text(), f"{path} no longer reads {knob}"


@pytest.mark.parametrize("name", ["operations.md", "troubleshooting.md", "architecture.md"])
def test_docs_name_only_real_settings_and_paths(name: str) -> None:
    text = (DOCS / name).read_text()
    named = set(re.findall(r"MEDIASTREAM_[A-Z0-9_]*[A-Z0-9]", text))
    invented = named - set(SETTINGS) - set(TEST_KNOBS)
    assert not invented, f"{name} names settings that do not exist: {sorted(invented)}"
    repo_path = r"`((?:server|sdk|proto|deploy|docs|scripts|tests|bench)/[^` ]*)`"
    for path in re.findall(repo_path, text):
        assert (ROOT / path.rstrip("/")).exists(), f"{name} names a missing path {path}"


def _raisable_elsewhere() -> tuple[set[str], list[re.Pattern[str]]]:
    """Reasons the AST reader cannot pin down: literals passed on, f-string families."""
    literals: set[str] = set()
    families: list[re.Pattern[str]] = []
    for path in SERVER.rglob("*.py"):
        if path.relative_to(SERVER).as_posix().startswith(("_proto/", "emulator/")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.add(node.value)
            elif (
                isinstance(node, ast.keyword)
                and node.arg == "reason"
                and isinstance(node.value, ast.JoinedStr)
            ):
                parts = [
                    re.escape(str(v.value)) if isinstance(v, ast.Constant) else "[A-Z_]+"
                    for v in node.value.values
                ]
                families.append(re.compile("".join(parts)))
    return literals, families


def test_every_error_reason_is_in_troubleshooting() -> None:
    reasons = error_reasons()
    assert "CALL_NOT_FOUND" in reasons and "TOO_MANY_STREAMS" in reasons  # the reader works
    text = (DOCS / "troubleshooting.md").read_text()
    documented = set(re.findall(r"^### `([A-Z][A-Z0-9_]+)`", text, re.M))
    missing = {r: sorted(files) for r, files in reasons.items() if r not in documented}
    assert not missing, f"reasons without an entry in docs/troubleshooting.md: {missing}"
    literals, families = _raisable_elsewhere()
    stale = {
        r
        for r in documented - set(reasons)
        if r not in literals and not any(f.fullmatch(r) for f in families)
    }
    assert not stale, f"docs/troubleshooting.md documents reasons no code raises: {sorted(stale)}"


def test_every_metric_is_documented() -> None:
    text = (DOCS / "operations.md").read_text()
    for family in metrics.REGISTRY.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in text, f"metric {name} missing from docs/operations.md"


def test_docs_link_to_files_that_exist() -> None:
    for doc in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
