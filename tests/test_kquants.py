"""K-quants (Q2_K..Q6_K, Q8_K) against llama.cpp, byte for byte.

Oracles: ggml's own ``quantize_row_<t>_ref`` / ``dequantize_row_<t>`` through ctypes (``ggml_ref``), the
files llama-quantize writes (``kquant_file``) and gguf-py's dequantizers. SmolLM2-135M's only tensors with
rows of a multiple of 256 are the 30 ``ffn_down`` (576 x 1536); llama-quantize gives the others a legacy
fallback type, so those 30 are the K-quant tensors of every file (FILES below).
"""

from __future__ import annotations

import functools
import pathlib

import gguf
import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType as GGMLType

import qrt

K_TYPES = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
ALL_TYPES = (*K_TYPES, "Q8_K")
# llama-quantize outputs compared, as "FTYPE[:pure]". Their K-quant tensors: Q4_K_M 16 Q4_K + 14 Q6_K,
# Q6_K 30 Q6_K, Q3_K_M 29 Q4_K + 1 Q5_K, Q2_K 30 Q3_K (llama-quantize bumps ffn_down), and with --pure
# (no per-tensor overrides) Q2_K 30 Q2_K, Q5_K_S 30 Q5_K: every K type is covered.
FILES = ("Q4_K_M", "Q6_K", "Q3_K_M", "Q2_K", "Q2_K:pure", "Q5_K_S:pure")
TYPES = qrt.types()

# Byte offsets of the fp16 super-block scales d (and dmin) in each block (ggml-common.h).
SCALE_OFFSETS = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}
Q8_K_BYTES = 292  # float d, int8 qs[256], int16 bsums[16]


def edge_rows(ncols: int, seed: int) -> np.ndarray:
    """Rows that reach the special cases of the k-quant searches: zero and tiny (sub-)blocks, constant
    blocks (max == min), a lone non-zero, outliers, exact ties, all-positive and all-negative blocks."""
    rng = np.random.default_rng(seed)
    n = rng.standard_normal(ncols)
    idx = np.arange(ncols)
    rows = [
        n,
        np.where(idx % 97 == 5, 60.0, n),  # outliers
        np.zeros(ncols),
        -np.zeros(ncols),
        rng.uniform(-1, 1, ncols) * 1e-30,  # tiny: below every GROUP_MAX_EPS test once squared
        rng.uniform(-1, 1, ncols) * 1e-15,  # around GROUP_MAX_EPS itself
        np.full(ncols, 0.75),
        np.full(ncols, -2.5),
        np.eye(1, ncols, ncols // 3)[0] * 4.0,  # a single non-zero
        np.eye(1, ncols, 17)[0] * -1e-3,
        np.where(idx % 16 == 0, n, 0.0),  # one value per 16-element sub-block
        np.where((idx // 32) % 2 == 0, 0.0, n),  # alternate zero / random 32-element sub-blocks
        np.where((idx // 16) % 3 == 0, 1e-30, n * 1e-3),
        np.abs(n) + 0.5,  # strictly positive: the min of Q2/Q4/Q5 is clamped to 0
        -np.abs(n) - 0.5,
        np.round(n * 2) / 2,  # many exact ties for nearest_int
        rng.standard_normal(ncols) * 3e3,  # large but with d still in fp16 range
        rng.standard_normal(ncols) * 1e6,  # d overflows fp16 to inf
        rng.standard_normal(ncols) * 1e15,  # sums of squares overflow float32
        rng.standard_normal(ncols) * 1e-38,  # 1/max overflows
        rng.standard_normal(ncols) * 1e-42,  # subnormal inputs
        np.where(idx % 256 < 128, n * 1e-6, n * 10),  # very uneven sub-block scales
        rng.laplace(size=ncols),
        rng.uniform(0, 1, ncols) ** 8,
    ]
    return np.stack(rows).astype(np.float32)


def blocks(raw: np.ndarray, type_name: str) -> np.ndarray:
    return np.ascontiguousarray(raw).view(np.uint8).reshape(-1, TYPES[type_name].type_size)


def assert_same_blocks(ours: np.ndarray, ref: np.ndarray, type_name: str) -> int:
    """Compare quantized bytes block by block; returns the number of blocks compared.

    For Q8_K, ggml leaves bsums unwritten when a block is all zero (d == 0); qrt zeroes them, so those
    blocks are compared on d and qs only, and qrt's bsums are checked to be 0."""
    a, b = blocks(ours, type_name), blocks(ref, type_name)
    assert a.shape == b.shape
    if type_name == "Q8_K":
        zero = a[:, :4].copy().view(np.float32)[:, 0] == 0
        np.testing.assert_array_equal(a[zero, :260], b[zero, :260])
        assert not a[zero, 260:].any(), "qrt must write bsums = 0 for an all-zero Q8_K block"
        a, b = a[~zero], b[~zero]
    bad = np.flatnonzero((a != b).any(axis=1))
    assert bad.size == 0, f"{type_name}: {bad.size}/{len(a)} blocks differ, first at block {bad[0]}"
    return len(ours.reshape(-1)) // TYPES[type_name].type_size


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", ALL_TYPES)
def test_registry_rows(name: str) -> None:
    t = TYPES[name]
    block, size = gguf.GGML_QUANT_SIZES[GGMLType[name]]
    assert (t.id, t.block_size, t.type_size) == (GGMLType[name].value, block, size)
    assert block == 256
    assert t.vec_dot_type == "Q8_K"
    assert t.in_files == (name != "Q8_K")
    assert t.row_wise


# --------------------------------------------------------------------------- quantize vs ggml


@pytest.mark.parametrize("name", ALL_TYPES)
@pytest.mark.parametrize("shape", [(1, 256), (3, 512), (7, 1024), (5, 4096)])
def test_quantize_random_matches_ggml(ggml_ref, name: str, shape: tuple[int, int]) -> None:
    x = np.random.default_rng(shape[0] * 10 + shape[1]).standard_normal(shape).astype(np.float32)
    assert_same_blocks(qrt.quantize(x, name), ggml_ref.quantize_ref(name, x), name)


@pytest.mark.parametrize("name", ALL_TYPES)
@pytest.mark.parametrize("ncols", [256, 768])
def test_quantize_edge_cases_match_ggml(ggml_ref, name: str, ncols: int) -> None:
    x = edge_rows(ncols, seed=ncols)
    assert_same_blocks(qrt.quantize(x, name), ggml_ref.quantize_ref(name, x), name)


@pytest.mark.parametrize("name", ALL_TYPES)
def test_quantize_3d_many_blocks_matches_ggml(ggml_ref, name: str) -> None:
    # 2*3*4096/256 = 96 blocks of heavy-tailed data; the leading dims are kept in the output shape.
    x = np.random.default_rng(7).standard_t(3, size=(2, 3, 4096)).astype(np.float32)
    ours = qrt.quantize(x, name)
    assert ours.shape == (2, 3, 16 * TYPES[name].type_size)
    assert_same_blocks(ours, ggml_ref.quantize_ref(name, x.reshape(6, 4096)), name)


def test_q8_K_zero_block_writes_zero_bsums() -> None:
    x = np.zeros((1, 512), np.float32)
    x[0, 300] = 2.0  # block 0 all zero, block 1 not
    raw = blocks(qrt.quantize(x, "Q8_K"), "Q8_K")
    assert not raw[0].any()
    d = raw[1, :4].copy().view(np.float32)[0]
    qs = raw[1, 4:260].view(np.int8)
    bsums = raw[1, 260:].copy().view(np.int16)
    assert d == np.float32(1) / (np.float32(-127) / np.float32(2.0))
    assert qs[300 - 256] == -127 and np.count_nonzero(qs) == 1  # iscale = -127/max
    np.testing.assert_array_equal(bsums, qs.astype(np.int32).reshape(16, 16).sum(axis=1))


# --------------------------------------------------------------------------- dequantize vs ggml


def random_blocks(name: str, nblocks: int, seed: int) -> np.ndarray:
    """Random block bytes (every bit pattern of scales and quants) with finite, moderate scales, so the
    comparison is about decoding, not NaN payloads."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(nblocks, TYPES[name].type_size), dtype=np.uint8)
    if name == "Q8_K":
        raw[:, :4] = (rng.standard_normal(nblocks) * 1e-2).astype(np.float32).view(np.uint8).reshape(-1, 4)
    else:
        for off in SCALE_OFFSETS[name]:
            half = (rng.standard_normal(nblocks) * 1e-2).astype(np.float16)
            raw[:, off : off + 2] = half.view(np.uint8).reshape(-1, 2)
    return raw


@pytest.mark.parametrize("name", ALL_TYPES)
def test_dequantize_random_blocks_matches_ggml(ggml_ref, name: str) -> None:
    raw = random_blocks(name, 64, seed=len(name) + int(name[1]))
    shape = (4, 16 * 256)
    ours = qrt.dequantize(raw, name, shape)
    ref = ggml_ref.dequantize(name, raw, shape)
    np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))
    if name != "Q8_K":  # gguf-py has no Q8_K
        ref_py = gguf.quants.dequantize(raw.reshape(4, -1), GGMLType[name]).astype(np.float32)
        np.testing.assert_array_equal(ours.view(np.uint32), ref_py.view(np.uint32))


# --------------------------------------------------------------------------- llama-quantize's files


@functools.cache
def _reader(path: pathlib.Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(path)


def kquant_tensors(kquant_file, spec: str) -> list[gguf.ReaderTensor]:
    ftype, _, pure = spec.partition(":")
    path = kquant_file(ftype, pure=pure == "pure")
    tensors = [t for t in _reader(path).tensors if t.tensor_type.name in K_TYPES]
    assert len(tensors) == 30, f"{spec}: expected the 30 ffn_down tensors as K-quants"
    return tensors


@pytest.mark.slow  # opening the six files with gguf-py (the readers are cached for the tests below)
def test_files_cover_every_k_type(kquant_file) -> None:
    seen = {t.tensor_type.name for spec in FILES for t in kquant_tensors(kquant_file, spec)}
    assert seen == set(K_TYPES)


@pytest.fixture(scope="module")
def smollm2_f32(smollm2_path: pathlib.Path):
    """tensor name -> f32 source of that tensor, as llama-quantize sees it: the Q4_1 data dequantized
    (gguf-py's Q4_1 decoder is bit-exact with ggml's, FORMATS.md §2.4)."""
    reader = _reader(smollm2_path)
    by_name = {t.name: t for t in reader.tensors}
    cache: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in cache:
            t = by_name[name]
            cache[name] = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        return cache[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("spec", FILES)
def test_dequantize_llama_quantize_file_matches_gguf_py(kquant_file, spec: str) -> None:
    for t in kquant_tensors(kquant_file, spec):
        shape = tuple(int(v) for v in reversed(t.shape))
        name = t.tensor_type.name
        ours = qrt.dequantize(t.data, name, shape)
        ref = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        assert ref.shape == shape
        np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32), err_msg=f"{spec} {t.name}")


@pytest.mark.slow
@pytest.mark.parametrize("spec", FILES)
def test_quantize_matches_llama_quantize_file(kquant_file, smollm2_f32, spec: str) -> None:
    """The issue's check: our quantizer on llama-quantize's f32 source reproduces the bytes it wrote."""
    for t in kquant_tensors(kquant_file, spec):
        src = smollm2_f32(t.name)
        assert src.shape == tuple(int(v) for v in reversed(t.shape))
        assert_same_blocks(qrt.quantize(src, t.tensor_type.name), np.asarray(t.data), t.tensor_type.name)


# --------------------------------------------------------------------------- round-trip error


@pytest.mark.parametrize("name", ALL_TYPES)
def test_round_trip_error_within_registry_bound(name: str) -> None:
    x = np.random.default_rng(11).standard_normal((32, 4096)).astype(np.float32)
    y = qrt.dequantize(qrt.quantize(x, name), name, x.shape)
    rel_rmse = float(np.sqrt(np.mean((y - x) ** 2)) / np.sqrt(np.mean(x**2)))
    bound = TYPES[name].max_rel_rmse
    # The bound was set at ~1.3x the measured error; far below it means the bound no longer tests anything.
    assert bound / 1.6 < rel_rmse <= bound
