"""The CUDA backend against the CPU engine (marker ``gpu``; skipped without a usable CUDA device).

Kernels are compared with the CPU reference on random inputs (the dequant-matvec for every weight type,
RMSNorm, RoPE, SwiGLU), then the whole model. The CUDA kernels multiply f32 activations by dequantized weights where the CPU quantizes activations to
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


CUDA_TYPES = [
    "F32",
    "F16",
    "BF16",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
    "NF4",
]


@pytest.mark.parametrize("type_name", CUDA_TYPES)
@pytest.mark.parametrize(("rows", "cols", "n_tok"), [(1, 256, 1), (37, 512, 3), (300, 1536, 2)])
def test_cuda_matvec_matches_the_reference(type_name, rows, cols, n_tok) -> None:
    rng = np.random.default_rng(rows * 1000 + cols)
    w = rng.standard_normal((rows, cols), dtype=np.float32)
    raw = qrt.quantize(w, type_name)
    wq = qrt.dequantize(raw, type_name, (rows, cols)).astype(np.float64)  # the reference decode
    x = rng.standard_normal((n_tok, cols), dtype=np.float32)
    got = _C.cuda_test_matvec(raw, type_name, rows, x)
    want = x.astype(np.float64) @ wq.T
    # f32 accumulation over cols products: error ~ sqrt(cols) * eps * |w||x|
    tol = 1e-5 * np.sqrt(cols) * np.linalg.norm(wq, axis=1)[None, :] * np.linalg.norm(x, axis=1)[:, None]
    assert got.shape == (n_tok, rows)
    assert (np.abs(got - want) <= tol + 1e-6).all()


@pytest.mark.parametrize("n", [1, 576, 2049])
def test_cuda_rmsnorm(n) -> None:
    rng = np.random.default_rng(n)
    x = rng.standard_normal((3, n), dtype=np.float32)
    w = rng.standard_normal(n, dtype=np.float32)
    got = _C.cuda_test_rmsnorm(x, w, 1e-5)
    x64 = x.astype(np.float64)
    want = x64 / np.sqrt((x64 * x64).mean(axis=1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("neox", [False, True])
def test_cuda_rope(neox) -> None:
    rng = np.random.default_rng(7)
    n_tok, n_head, hd = 4, 3, 64
    x = rng.standard_normal((n_tok, n_head, hd), dtype=np.float32)
    pos = np.array([0, 1, 17, 4000], np.int32)
    inv = (10000.0 ** (-2.0 * np.arange(hd // 2) / hd)).astype(np.float32)
    got = _C.cuda_test_rope(x, pos, inv, 1.0, neox)
    theta = pos[:, None].astype(np.float64) * inv[None, :].astype(np.float64)  # [n_tok, half]
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    a = np.arange(hd // 2) if neox else 2 * np.arange(hd // 2)
    b = a + hd // 2 if neox else a + 1
    want = x.astype(np.float64).copy()
    x0, x1 = x[:, :, a].astype(np.float64), x[:, :, b].astype(np.float64)
    want[:, :, a], want[:, :, b] = x0 * c - x1 * s, x0 * s + x1 * c
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_cuda_silu_mul() -> None:
    rng = np.random.default_rng(3)
    g, u = (rng.standard_normal(1000, dtype=np.float32) * 4 for _ in range(2))
    got = _C.cuda_test_silu_mul(g, u)
    g64 = g.astype(np.float64)
    np.testing.assert_allclose(got, g64 / (1 + np.exp(-g64)) * u, rtol=1e-5, atol=1e-6)


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


def test_cuda_nf4(tmp_path_factory, ids, monkeypatch) -> None:
    """SmolLM2 converted to NF4 (the CUDA matvec decodes its blocks through format/nf4.h) against the CPU's
    exact NF4 path (QRT_REPACK=0: the packed kernels' int8 codebook would add its own small error)."""
    pytest.importorskip("transformers")
    from qrt_convert import cli
    from tests.support import hf_fixture

    path = tmp_path_factory.mktemp("nf4") / "smollm2.NF4.gguf"
    assert cli.main([str(hf_fixture.smollm2_hf()), "-o", str(path), "--type", "NF4"]) == 0
    monkeypatch.setenv("QRT_REPACK", "0")
    compare(path, ids, "all")


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
