"""The Dockerfile: linted, consistent with the gateway, and its install steps work.

No Docker engine runs here, so the image is never built. Instead the build
stage's own `uv` commands are run, with its environment, on a copy of exactly
the files the build context lets in, and the result is started.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from mediastream.api.grpc_service import SERVICE_NAME
from tests.deploy import tools
from tests.deploy.conftest import ROOT, SETTINGS, need

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        word, _, rest = text.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for word, rest in _instructions():
        if word == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word, rest))
    return stages


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in stage:
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_hadolint_passes() -> None:
    binary = need(tools.hadolint)
    done = subprocess.run(
        [str(binary), "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    binary = need(tools.hadolint)
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install uv\n")
    done = subprocess.run([str(binary), str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "DL3007" in done.stdout


def test_runtime_stage_is_non_root_and_healthchecked() -> None:
    final = _stages()[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    (health,) = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert "healthcheck.py" in health
    entry = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entry == ['["mediastream"]']


def test_settings_and_ports_line_up() -> None:
    final = _stages()[-1]
    env = _env(final)
    unknown = {k for k in env if k.startswith("MEDIASTREAM_")} - set(SETTINGS)
    assert not unknown, f"not settings of the gateway: {unknown}"
    exposed = {
        int(p.split("/")[0]) for word, rest in final if word == "EXPOSE" for p in rest.split()
    }
    assert int(env["MEDIASTREAM_AUDIOSOCKET_PORT"]) != 0, "AudioSocket needs a fixed port"
    expected = {
        int(env["MEDIASTREAM_GRPC_LISTEN"].rpartition(":")[2]),
        int(env["MEDIASTREAM_WS_LISTEN"].rpartition(":")[2]),
        int(env["MEDIASTREAM_METRICS_LISTEN"].rpartition(":")[2]),
        int(env["MEDIASTREAM_AUDIOSOCKET_PORT"]),
    }
    assert exposed == expected
    for key in ("MEDIASTREAM_GRPC_LISTEN", "MEDIASTREAM_METRICS_LISTEN"):
        assert env[key].startswith("0.0.0.0:"), f"{key} must listen beyond loopback"


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `**` spans directories, a match covers its subtree."""
    out = ""
    i = 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(f"^{out}(?:/.*)?$")


def _context_files() -> list[Path]:
    """Files of the repository the .dockerignore allow-list lets into the context."""
    rules = [
        (line.startswith("!"), _dockerignore_regex(line.lstrip("!")))
        for line in map(str.strip, (ROOT / ".dockerignore").read_text().splitlines())
        if line and not line.startswith("#")
    ]
    assert rules[0] == (False, _dockerignore_regex("*")), "the .dockerignore is an allow-list"
    out: list[Path] = []
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT).as_posix()
        if not path.is_file() or rel.startswith((".git/", ".venv/", "node_modules/")):
            continue
        included = True
        for negate, regex in rules:  # the last matching rule wins
            if regex.match(rel):
                included = negate
        if included:
            out.append(path)
    return out


def test_every_copied_file_is_in_the_context() -> None:
    context = {p.relative_to(ROOT).as_posix() for p in _context_files()}
    for word, rest in _instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _ = shlex.split(rest)
        for source in sources:
            src = source.rstrip("/")
            assert any(f == src or f.startswith(src + "/") for f in context), source
    assert not any("__pycache__" in f or f.startswith("tests/") for f in context)


def test_build_stage_installs_a_working_gateway(tmp_path: Path) -> None:
    """The build stage's uv commands, run here; then the result starts and answers health."""
    build, final = _stages()[0], _stages()[-1]
    src = tmp_path / "src"
    for path in _context_files():
        dest = src / path.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    venv = tmp_path / "opt"
    env = {**os.environ, **_env(build)}
    for key in ("VIRTUAL_ENV", "UV_NO_CACHE"):  # this machine's uv cache makes it quick
        env.pop(key, None)
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    env["UV_PYTHON"] = str(Path(sys.base_prefix) / "bin" / "python3")
    uv = tools._uv()
    commands = [rest for word, rest in build if word == "RUN" and rest.startswith("uv ")]
    assert commands, "the build stage installs with uv"
    for command in commands:
        args = shlex.split(command)[1:]
        done = subprocess.run(
            [*uv, *args], cwd=src, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    site = next(venv.glob("lib/python*/site-packages"))
    assert (site / "mediastream").is_dir()
    assert not (site / "mediastream_client").exists(), "the SDK is not part of the image"
    assert not list(site.glob("pytest*")), "no dev dependencies in the image"
    # Start it with the runtime stage's environment (ports moved off the defaults).
    runtime = {**os.environ, **_env(final)}
    runtime.pop("VIRTUAL_ENV", None)
    runtime["PATH"] = f"{venv / 'bin'}:{os.environ['PATH']}"
    runtime.update(
        MEDIASTREAM_GRPC_LISTEN="127.0.0.1:0",
        MEDIASTREAM_WS_LISTEN="127.0.0.1:0",
        MEDIASTREAM_METRICS_LISTEN="127.0.0.1:0",
        MEDIASTREAM_AUDIOSOCKET_PORT="0",
    )
    process = subprocess.Popen(
        [str(venv / "bin" / "mediastream"), "serve"],
        env=runtime,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert '"event": "ready"' in ready, ready
        grpc_address = re.search(r'"grpc": "([^"]+)"', ready)
        assert grpc_address
        probe = subprocess.run(
            [
                str(venv / "bin" / "python"),
                str(ROOT / "deploy" / "healthcheck.py"),
                "--address",
                grpc_address.group(1),
            ],
            env=runtime,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode == 0, probe.stdout + probe.stderr
        assert f"'{SERVICE_NAME}': SERVING" in probe.stdout
    finally:
        process.terminate()
        process.wait(30)
