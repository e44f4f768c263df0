"""The runner every ``atheris_<target>.py`` script shares.

    uv run python tests/fuzz/atheris_rtp.py --seconds 300    # fuzz parse_rtp for 5 minutes
    uv run python tests/fuzz/atheris_rtp.py --grow           # ... and keep what it finds

The corpus in ``tests/fuzz/corpus/<target>/`` is read first. New inputs that reach new code
go to ``out/fuzz/corpus/<target>/`` (or, with ``--grow``, into the repo's corpus), and an
input that breaks the target's contract (an unexpected exception, or more than
``--timeout`` seconds) is written to ``out/fuzz/crashes/`` and ends the run with an error.
Copy such an input into the corpus as ``found-<what>`` once it is fixed.

Extra arguments are passed to libFuzzer (``-runs=N``, ``-jobs=2``, ``-dict=...``).
Nothing from ``mediastream`` may be imported before `main` runs: atheris instruments the
modules as they are imported.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
OUT = ROOT / "out" / "fuzz"


def main(target: str) -> None:
    """Fuzz `target` (a name in `tests.fuzz.targets.TARGETS`) as the command line asks."""
    parser = argparse.ArgumentParser(description=f"coverage-guided fuzzing of the {target} target")
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz (default 60)")
    parser.add_argument("--timeout", type=int, default=5, help="seconds one input may take")
    parser.add_argument("--grow", action="store_true", help="add new inputs to the repo corpus")
    args, libfuzzer = parser.parse_known_args()
    try:
        atheris: Any = importlib.import_module("atheris")
    except ImportError:
        sys.exit("atheris is not installed (Linux x86-64 only): uv sync installs it there")
    seeds = CORPUS / target
    grown = seeds if args.grow else OUT / "corpus" / target
    crashes = OUT / "crashes"
    for folder in (grown, crashes):
        folder.mkdir(parents=True, exist_ok=True)
    # Warnings about junk input (ARI events that are not JSON, ...) are expected here.
    logging.disable(logging.WARNING)
    with atheris.instrument_imports(include=["mediastream", "tests.fuzz"]):
        targets = importlib.import_module("tests.fuzz.targets")
    fuzz: Callable[[bytes], None] = targets.TARGETS[target]
    dirs = [str(grown)] if args.grow else [str(grown), str(seeds)]
    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={args.seconds}",
            f"-timeout={args.timeout}",
            f"-artifact_prefix={crashes}/{target}-",
            *libfuzzer,
            *dirs,
        ],
        fuzz,
    )
    atheris.Fuzz()


def script(target: str) -> None:
    """Entry point of a harness run as a file: make the repo importable, then `main`."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    main(target)
