"""Regenerate every file made from proto/ (the one command: `make generate`).

Python code is produced with grpc_tools.protoc (pinned in pyproject.toml, so the
gencode matches the protobuf runtime) into each package's private `_proto`
module, with imports made relative so the generated modules need no top-level
`voipbin` package. With --check, nothing is written: the command fails if any
committed generated file differs from what the protos produce now.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PYTHON_TARGETS = [
    Path("server/mediastream/_proto"),
    Path("sdk/python/src/mediastream_client/_proto"),
]
HEADER = "# Generated from proto/ by scripts/generate.py. Do not edit.\n"


def _python_outputs(proto_root: Path) -> dict[str, str]:
    protos = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *protos,
        ]
        subprocess.run(cmd, check=True)
        out: dict[str, str] = {}
        for path in sorted(Path(tmp).rglob("*.py*")):
            text = path.read_text()
            # voipbin/mediastream/v1/x_pb2 -> flat private module x_pb2
            text = re.sub(
                r"^from voipbin\.mediastream\.v1 import ", "from . import ", text, flags=re.M
            )
            out[path.name] = HEADER + text
        out["__init__.py"] = HEADER + '"""Generated protobuf and gRPC modules (private)."""\n'
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="repository root (default: this script's repository)",
    )
    args = parser.parse_args()
    root: Path = args.root.resolve()
    outputs = _python_outputs(root / "proto")
    stale: list[str] = []
    for target in (root / t for t in PYTHON_TARGETS):
        existing = {p.name for p in target.glob("*.py*")} if target.exists() else set()
        for name, text in outputs.items():
            path = target / name
            current = path.read_text() if path.exists() else ""
            if current != text:
                stale.append(str(path.relative_to(root)))
                if args.check:
                    sys.stdout.writelines(
                        difflib.unified_diff(
                            current.splitlines(True),
                            text.splitlines(True),
                            str(path),
                            "regenerated",
                            n=1,
                        )
                    )
        for name in existing - outputs.keys():
            stale.append(str((target / name).relative_to(root)))
        if not args.check:
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for name, text in outputs.items():
                (target / name).write_text(text)
    if args.check and stale:
        print("generated code is stale; run `make generate`:", *stale, sep="\n  ")
        return 1
    print("generated code is up to date" if args.check else f"wrote {len(PYTHON_TARGETS)} targets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
