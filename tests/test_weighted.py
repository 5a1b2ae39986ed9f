"""Importance-weighted quantizers (``qrt.quantize(x, type, imatrix=w)``) against ggml, byte for byte.

Oracle: ``ggml_quantize_chunk(type, x, ..., imatrix)`` from libggml-base through ctypes (``ggml_ref``), the call
llama-quantize makes per tensor when it has an importance matrix.
"""

from __future__ import annotations

import numpy as np
import pytest

import qrt

WEIGHTED = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
IGNORED = ("Q8_0", "F16", "BF16", "F32")  # ggml quantizes these without looking at the weights


def first_bad_row(a: np.ndarray, b: np.ndarray) -> int | None:
    bad = np.flatnonzero((a.reshape(len(a), -1) != b.reshape(len(b), -1)).any(axis=1))
    return int(bad[0]) if bad.size else None


def importance(n: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    """Importance vectors like the ones llama-imatrix writes (mean x² per column), and harder ones."""
    if kind == "imatrix":  # heavy-tailed, a few dominant channels
        return (rng.standard_normal(n) * np.exp(rng.normal(0, 1.5, n))).astype(np.float32) ** 2
    if kind == "sparse":  # columns never activated
        w = rng.exponential(1.0, n).astype(np.float32)
        w[rng.random(n) < 0.3] = 0
        return w
    if kind == "zero":
        return np.zeros(n, np.float32)
    if kind == "huge":
        return rng.uniform(1e20, 1e30, n).astype(np.float32)
    raise AssertionError(kind)


@pytest.mark.parametrize("name", WEIGHTED)
@pytest.mark.parametrize("kind", ["imatrix", "sparse", "zero", "huge"])
@pytest.mark.parametrize("shape", [(1, 256), (5, 768), (3, 4096)])
def test_weighted_random_matches_ggml(ggml_ref, name: str, kind: str, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 7919 + shape[1])
    x = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 2, (shape[0], 1))).astype(np.float32)
    w = importance(shape[1], rng, kind)
    ours = qrt.quantize(x, name, imatrix=w, n_threads=2)
    ref = ggml_ref.quantize_chunk(name, x, w)
    assert first_bad_row(ours, ref) is None, f"{name}: row {first_bad_row(ours, ref)} differs"


@pytest.mark.parametrize("name", WEIGHTED)
def test_weighted_edge_rows_match_ggml(ggml_ref, name: str) -> None:
    from tests.test_kquants import edge_rows

    x = edge_rows(1024, seed=3)
    w = importance(1024, np.random.default_rng(5), "imatrix")
    ours = qrt.quantize(x, name, imatrix=w)
    ref = ggml_ref.quantize_chunk(name, x, w)
    assert first_bad_row(ours, ref) is None, f"{name}: edge row {first_bad_row(ours, ref)} differs"


@pytest.mark.parametrize("name", WEIGHTED)
def test_weighted_real_weights_match_ggml(ggml_ref, smollm2_path, name: str) -> None:
    """Real SmolLM2 matrices (rows of 576 for the legacy types, the 1536-wide ffn_down for k-quants) with
    an importance per column of the shape llama-imatrix produces."""
    tensor = "blk.3.ffn_down.weight" if name.endswith("_K") else "blk.3.attn_q.weight"
    with qrt.gguf.open(smollm2_path) as f:
        x = f.dequantize(tensor)[:64]
    w = importance(x.shape[1], np.random.default_rng(11), "imatrix")
    ours = qrt.quantize(x, name, imatrix=w)
    ref = ggml_ref.quantize_chunk(name, x, w)
    assert first_bad_row(ours, ref) is None, f"{name}: {tensor} row {first_bad_row(ours, ref)} differs"
    # The weights matter, except at Q4_1: the values lie on the source file's own Q4_1 grid.
    if name != "Q4_1":
        assert not np.array_equal(ours, qrt.quantize(x, name))


@pytest.mark.parametrize("name", IGNORED)
def test_types_without_weighted_quantizer_ignore_imatrix(name: str) -> None:
    x = np.random.default_rng(1).standard_normal((2, 64)).astype(np.float32)
    w = np.linspace(0, 5, 64, dtype=np.float32)
    np.testing.assert_array_equal(qrt.quantize(x, name, imatrix=w), qrt.quantize(x, name))


def test_weighted_fits_important_columns_better() -> None:
    """A quality check that could fail: with the weights on a few columns, those columns' error drops."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 1024)).astype(np.float32)
    w = np.full(1024, 1e-3, np.float32)
    w[::8] = 1.0
    for name in WEIGHTED:
        plain = qrt.dequantize(qrt.quantize(x, name), name, x.shape)
        weighted = qrt.dequantize(qrt.quantize(x, name, imatrix=w), name, x.shape)
        err_plain = np.mean(w * (plain - x) ** 2)
        err_weighted = np.mean(w * (weighted - x) ** 2)
        assert err_weighted < err_plain, name


@pytest.mark.parametrize(
    ("w", "match"),
    [
        (np.ones(255, np.float32), "one weight per column"),
        (np.ones((2, 256), np.float32), "one weight per column"),
        (np.full(256, -1.0, np.float32), "negative or not finite"),
        (np.full(256, np.nan, np.float32), "negative or not finite"),
        (np.full(256, np.inf, np.float32), "negative or not finite"),
    ],
)
def test_bad_imatrix_is_value_error(w: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        qrt.quantize(np.ones((2, 256), np.float32), "Q4_K", imatrix=w)
