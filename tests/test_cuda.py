"""The CUDA backend against the CPU engine (marker ``gpu``; skipped without a usable CUDA device).

The CUDA kernels multiply f32 activations by dequantized weights where the CPU quantizes activations to
int8, so logits agree closely but not bit for bit: these tests compare distributions (KL, top-1), and the
GPU path against itself exactly where the arithmetic is the same (decode vs prefill).
"""

from __future__ import annotations

import numpy as np
import pytest

import qrt
from qrt import _C

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        "cuda" not in _C.offload_backends(), reason="no usable CUDA device (or a CPU-only build)"
    ),
]

N_CTX = 256


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def mean_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    return float((np.exp(lp) * (lp - lq)).sum(axis=-1).mean())


@pytest.fixture(scope="module")
def ids(smollm2_path) -> list[int]:
    with qrt.load(smollm2_path, n_ctx=N_CTX) as m:
        return m.tokenize("The quick brown fox jumps over the lazy dog. " * 6)[:64]


def compare(path, ids: list[int], gpu_layers) -> None:
    with qrt.load(path, n_ctx=N_CTX) as cpu:
        ref = cpu.logits(ids)
    with qrt.load(path, n_ctx=N_CTX, gpu_layers=gpu_layers, require_gpu=True) as gpu:
        assert gpu.offload is not None and gpu.offload["backend"] == "cuda"
        got = gpu.logits(ids)
    assert np.isfinite(got).all()
    assert mean_kl(ref, got) < 0.01
    assert (ref.argmax(-1) == got.argmax(-1)).mean() >= 0.9


@pytest.mark.parametrize("gpu_layers", [1, 15, 30, "all"])
def test_cuda_logits_match_the_cpu(smollm2_path, ids, gpu_layers) -> None:
    compare(smollm2_path, ids, gpu_layers)


@pytest.mark.parametrize(
    "ftype", ["Q8_0", "Q4_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "F16"]
)
def test_cuda_every_weight_type(kquant_file, ids, ftype) -> None:
    compare(kquant_file(ftype), ids, "all")


def test_cuda_decode_equals_prefill(smollm2_path, ids) -> None:
    with qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers="all", require_gpu=True) as m:
        prefill = m.logits(ids[:40])
        native = m._native
        native.clear(0)
        rows = [native.eval(np.array([t], np.int32), 0, False) for t in ids[:40]]
        native.clear(0)
    np.testing.assert_allclose(np.stack(rows), prefill, rtol=0, atol=1e-4)


def test_cuda_greedy_text(smollm2_path) -> None:
    with qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers="all", require_gpu=True) as m:
        assert "Paris" in m.generate("The capital of France is", max_tokens=12, temperature=0)


def test_cuda_auto_reports_memory(smollm2_path) -> None:
    with qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers="auto", require_gpu=True) as m:
        o = m.offload
        assert o["gpu_layers"] == m.n_layer + 1  # 135M parameters fit on any GPU
        assert o["total_bytes"] + _C.DEVICE_MARGIN_BYTES <= o["free_bytes"]
