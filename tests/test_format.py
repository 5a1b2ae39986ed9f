"""Tensor formats, looped over qrt's type registry: exactness against gguf-py, round-trip error, errors."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType as GGMLType

import qrt

TYPES = qrt.types()
FILE_TYPES = [name for name, t in TYPES.items() if t.in_files]
ROW_TYPES = [name for name, t in TYPES.items() if t.row_wise]
# gguf-py 0.19.0 quantizes these bit-exactly like ggml's reference quantizers (FORMATS.md §2.4).
GGUF_PY_QUANTIZES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]


def hard_rows(ncols: int, seed: int = 0) -> np.ndarray:
    """Rows that exercise the edge cases of block quantizers: outliers, zeros, ties, tiny and huge values.

    No negative zeros: on an all -0.0 block gguf-py writes d = +0 where ggml's C (and qrt) write -0
    (ggml starts its running max at +0.0 and never replaces it); the ggml oracle tests cover that case.
    """
    rng = np.random.default_rng(seed)
    rows = [
        rng.standard_normal(ncols),
        rng.standard_normal(ncols) * 1e-3,
        np.zeros(ncols),
        np.full(ncols, 0.5),
        np.full(ncols, -3.0),
        rng.uniform(-1, 1, ncols) * 1e-30,
        np.where(np.arange(ncols) % 7 == 0, 100.0, rng.standard_normal(ncols)),
        np.round(rng.standard_normal(ncols) * 4) / 4,  # many exact ties
        np.where(np.arange(ncols) == ncols // 3, -7.0, 0.0),  # a single non-zero
        rng.standard_normal(ncols) * 1000.0,
    ]
    return np.stack(rows).astype(np.float32)


def test_registry_is_consistent() -> None:
    assert {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"} <= set(TYPES)
    ids = [t.id for t in TYPES.values()]
    assert len(ids) == len(set(ids))
    for name, t in TYPES.items():
        assert t.vec_dot_type in TYPES, name
        # gguf-py still sizes Q8_1 as 40 bytes (two floats); ggml's block_q8_1 holds two halves: 36.
        if name in GGMLType.__members__ and name != "Q8_1":
            assert t.id == GGMLType[name].value, name
            block, size = gguf.GGML_QUANT_SIZES[GGMLType[name]]
            assert (t.block_size, t.type_size) == (block, size), name


@pytest.mark.parametrize("name", GGUF_PY_QUANTIZES)
@pytest.mark.parametrize("ncols", [256, 32 * 7, 4096])
def test_quantize_matches_gguf_py(name: str, ncols: int) -> None:
    x = hard_rows(ncols)
    ours = qrt.quantize(x, name)
    ref = gguf.quants.quantize(x, GGMLType[name])
    np.testing.assert_array_equal(ours.reshape(-1), ref.view(np.uint8).reshape(-1))


@pytest.mark.parametrize("name", GGUF_PY_QUANTIZES)
def test_dequantize_matches_gguf_py(name: str) -> None:
    x = hard_rows(512, seed=1)
    raw = gguf.quants.quantize(x, GGMLType[name])
    ours = qrt.dequantize(raw, name, x.shape)
    ref = gguf.quants.dequantize(raw, GGMLType[name]).astype(np.float32)
    np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))


def test_f16_decodes_every_half_exactly() -> None:
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    ours = qrt.dequantize(halves, "F16", halves.shape)
    ref = halves.view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))


def test_f16_rounds_to_nearest_even_like_numpy() -> None:
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 1 << 32, size=1 << 18, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = x[np.isfinite(x) & (np.abs(x) < 1e6)]
    # Exact ties and the overflow/underflow boundaries.
    edge = np.array(
        [65504, 65519.996, 65520, -65520, 2.0**-24, 2.0**-25, 3 * 2.0**-26, 2.0**-14, 1 + 2.0**-11],
        dtype=np.float32,
    )
    x = np.concatenate([x, edge])
    ours = qrt.quantize(x, "F16").view(np.uint16)
    with np.errstate(over="ignore"):
        ref = x.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("name", ROW_TYPES)
def test_round_trip_error_within_registry_bound(name: str) -> None:
    if not TYPES[name].in_files and name not in ("Q8_1", "Q8_K"):
        pytest.skip("not a storage type")
    x = np.random.default_rng(3).standard_normal((16, 4096)).astype(np.float32)
    y = qrt.dequantize(qrt.quantize(x, name), name, x.shape)
    rel_rmse = float(np.sqrt(np.mean((y - x) ** 2)) / np.sqrt(np.mean(x**2)))
    assert rel_rmse <= TYPES[name].max_rel_rmse
    if name not in ("F32",):
        assert rel_rmse > 0  # a lossy type that reproduces its input exactly is a broken test


@pytest.mark.parametrize("name", FILE_TYPES)
def test_threads_give_identical_bytes(name: str) -> None:
    x = np.random.default_rng(4).standard_normal((64, 1024)).astype(np.float32)
    one = qrt.quantize(x, name, n_threads=1)
    many = qrt.quantize(x, name, n_threads=3)
    np.testing.assert_array_equal(one, many)
    np.testing.assert_array_equal(
        qrt.dequantize(one, name, x.shape, n_threads=1), qrt.dequantize(one, name, x.shape, n_threads=3)
    )


def test_quantize_rejects_bad_arguments() -> None:
    x = np.ones((2, 64), np.float32)
    with pytest.raises(ValueError, match=r"unknown tensor type 'Q4_9'.*known types: F32"):
        qrt.quantize(x, "Q4_9")
    with pytest.raises(ValueError, match="not a multiple of Q4_0's block size 32"):
        qrt.quantize(np.ones((2, 48), np.float32), "Q4_0")
    bad = x.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="flat index 67 is not finite"):
        qrt.quantize(bad, "Q8_0")
    with pytest.raises(ValueError, match="empty"):
        qrt.quantize(np.zeros((0, 32), np.float32), "Q8_0")


def test_dequantize_rejects_bad_arguments() -> None:
    raw = qrt.quantize(np.ones((2, 64), np.float32), "Q8_0")
    with pytest.raises(ValueError, match="takes 136 bytes, got 135"):
        qrt.dequantize(raw.reshape(-1)[:-1], "Q8_0", (2, 64))
    with pytest.raises(ValueError, match="not a positive multiple"):
        qrt.dequantize(raw, "Q8_0", (4, 34))
    with pytest.raises(ValueError, match="positive"):
        qrt.dequantize(raw, "Q8_0", (0, 64))


def test_dequantize_into_out() -> None:
    x = np.random.default_rng(5).standard_normal((3, 256)).astype(np.float32)
    raw = qrt.quantize(x, "Q4_K")
    out = np.full_like(x, np.nan)
    assert qrt.dequantize(raw, "Q4_K", x.shape, out=out) is out
    np.testing.assert_array_equal(out, qrt.dequantize(raw, "Q4_K", x.shape))
    for bad in (
        np.empty((3, 255), np.float32),
        np.empty((3, 256), np.float64),
        np.empty((256, 3), np.float32).T,
    ):
        with pytest.raises(
            ValueError, match=r"out must be a writeable C-contiguous float32 array of shape \(3, 256\)"
        ):
            qrt.dequantize(raw, "Q4_K", x.shape, out=bad)
