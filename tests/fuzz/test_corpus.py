"""Replay the fuzz corpus through every target: the cheap, deterministic part of fuzzing in CI.

Every file in ``corpus/<target>/`` (seeds from the Asterisk recordings, inputs that once
broke a parser, what atheris kept) must pass its target's contract, each within
`PER_INPUT_S`: a parser may refuse an input only with its documented error, and never hang.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

CORPUS = Path(__file__).resolve().parent / "corpus"
HERE = Path(__file__).resolve().parent

PER_INPUT_S = 2.0
"""Ceiling for one input on a loaded CI machine; real times are around a millisecond."""


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_corpus_replays_within_the_contract(target: str) -> None:
    files = sorted(p for p in (CORPUS / target).iterdir() if p.is_file())
    assert files, f"corpus/{target} is empty"
    fuzz = TARGETS[target]
    for path in files:
        data = path.read_bytes()
        start = time.perf_counter()
        try:
            fuzz(data)
        except Exception as exc:
            raise AssertionError(f"corpus/{target}/{path.name}: {exc!r}") from exc
        elapsed = time.perf_counter() - start
        assert elapsed < PER_INPUT_S, f"corpus/{target}/{path.name} took {elapsed:.2f} s"


def test_every_target_has_a_corpus_and_an_atheris_harness() -> None:
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) == sorted(TARGETS)
    harnesses = sorted(p.stem.removeprefix("atheris_") for p in HERE.glob("atheris_*.py"))
    assert harnesses == sorted(TARGETS)


def test_what_fuzzing_found_stays_in_the_corpus() -> None:
    # Each of these once raised something other than the parser's documented error.
    found = {p.parent.name for p in CORPUS.glob("*/found-*")}
    assert {"wschannel_event", "wschannel_command", "ari_event", "ari_answer"} <= found
    assert {"twilio", "voipbin_control", "settings"} <= found
