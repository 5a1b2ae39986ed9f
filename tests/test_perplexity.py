"""Perplexity by llama.cpp's method on tests/data/gpl-3.0.txt with the SmolLM2 Q4_1 file.

References on exactly this (ctx 512, 14 chunks): llama.cpp's llama-perplexity 18.346, HF transformers fp32
18.300. qrt must land in [18.21, 18.53]: no more than 1% above llama.cpp, and not so far below HF fp32 that
it hints at a bug such as a leaking causal mask.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import qrt
from qrt.perplexity import chunk_nll, perplexity


@pytest.fixture(scope="module")
def gpl_text(repo_root) -> str:
    return (repo_root / "tests" / "data" / "gpl-3.0.txt").read_text(encoding="utf-8")


def test_chunk_nll_is_the_log_softmax_loss() -> None:
    logits = np.array([[0.0, 1.0, 2.0], [5.0, 5.0, 5.0]], np.float32)
    nll = chunk_nll(logits, np.array([2, 1]))
    expected0 = -(2.0 - math.log(math.exp(0) + math.exp(1) + math.exp(2)))
    np.testing.assert_allclose(nll, [expected0, math.log(3.0)], rtol=1e-12)


@pytest.mark.slow
def test_gpl3_perplexity_matches_llama_cpp(smollm2_path, gpl_text: str) -> None:
    with qrt.load(smollm2_path, n_ctx=512) as model:
        result = perplexity(model, gpl_text, 512)
    assert result.chunks == 14 and result.scored_tokens == 14 * 255
    assert 18.21 <= result.ppl <= 18.53, result


def test_too_short_text_is_a_value_error(smollm2_path) -> None:
    with qrt.load(smollm2_path, n_ctx=64) as model, pytest.raises(ValueError, match="at least 2 \\* n_ctx"):
        perplexity(model, "too short", 64)


def test_cli_prints_running_estimate_and_final_line(smollm2_path, gpl_text: str, tmp_path) -> None:
    text = tmp_path / "head.txt"
    text.write_text(gpl_text[:3000], encoding="utf-8")  # ~650 tokens: 5 chunks of 128
    run = subprocess.run(
        [sys.executable, "-m", "qrt.cli.perplexity", "-m", str(smollm2_path), "-f", str(text), "-c", "128"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.startswith("[1]")
    assert run.stdout.startswith("Final estimate: PPL = ")
    missing = subprocess.run(
        [sys.executable, "-m", "qrt.cli.perplexity", "-m", str(smollm2_path), "-f", "/nonexistent.txt"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and missing.stderr.startswith("qrt-perplexity: error: ")
