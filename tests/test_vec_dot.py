"""The scalar reference dot products, looped over qrt's type registry.

Every storage type has a ``vec_dot`` against its ``vec_dot_type`` (the activation format a matmul quantizes
its input to). ``qrt._C.vec_dot(weights, x, type)`` quantizes ``x`` with the partner's reference quantizer
and returns one dot per weight row. Checked here:

1. it is the dot of exactly the numbers it multiplies: the dequantized weights and the dequantized
   quantized activations, up to float32 rounding of the per-block scaling and summation;
2. it is close to the dot with the original activations (and weights), within a bound derived from the
   registry's round-trip error of the partner (and weight) type;
3. it agrees with the kernel llama.cpp runs on this machine (``ggml_vec_dot_<type>_<partner>`` from
   libggml-cpu.so), fed the same bytes.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest

import qrt
from qrt import _C
from tests.support.ggml_ref import canonical

TYPES = qrt.types()
# Every type that can be stored in a file has a dot product; the compute-only ones (Q8_1, Q8_K) are partners.
DOT_TYPES = [name for name, t in TYPES.items() if t.in_files]
COMPUTE_ONLY = [name for name, t in TYPES.items() if not t.in_files]

# Test 1: float32 rounding of the per-block scale products and of the running sum, relative to sum |w*a|.
EXACT_RTOL = 1e-6
# Test 2: the activation error e = a_q - a is independent of the weights, so sum(w*e) has standard deviation
# about |w| * rms(e) = |w| * |a| * rel_rmse / sqrt(n); allow 6 of those (rel_rmse is itself an upper bound).
SIGMAS = 6.0


def unit(name: str) -> int:
    """The shortest row: a whole number of weight blocks and of activation blocks."""
    t = TYPES[name]
    return math.lcm(t.block_size, TYPES[t.vec_dot_type].block_size)


def lengths(name: str) -> list[int]:
    return [unit(name), 3 * unit(name), 4096]


def weight_rows(n: int, seed: int) -> np.ndarray:
    """N(0,1) rows, a shifted row (large block minimums: Q4_1/Q5_1/K-quant min terms), a row with a zero
    first half and outliers. 5 rows of 4096 make 320 NF4 blocks: the last row decodes against the second
    group of 256 blocks' absmax2."""
    rng = np.random.default_rng(seed)
    rows = [rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n) + 2.0]
    sparse = rng.standard_normal(n)
    sparse[: n // 2] = 0.0
    sparse[-1] = 40.0
    rows.append(sparse)
    if n >= 4096:
        rows.append(rng.standard_normal(n))
    return np.stack(rows).astype(np.float32)


N_GAUSSIAN_ROWS = 2  # rows 0 and 1 of weight_rows are N(0, 1)


def activation(n: int, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n)
    if kind == "sparse":  # a zero first half (whole zero blocks from 2 blocks on; Q8_K: d = 0) and an outlier
        a[: n // 2] = 0.0
        a[-1] = -25.0
    elif kind == "zero":
        a[:] = 0.0
    return a.astype(np.float32)


def partner_bytes_and_values(name: str, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The activation as the kernel sees it: the partner type's bytes and their decoded values (float64)."""
    p = TYPES[name].vec_dot_type
    raw = qrt.quantize(a[None, :], p)
    return raw, qrt.dequantize(raw, p, (1, a.size))[0].astype(np.float64)


def cached_sum_correction(name: str, act_raw: np.ndarray, aq: np.ndarray, wq: np.ndarray) -> np.ndarray:
    """Per weight row, what the kernel adds to the dot of the decoded numbers by design.

    Q8_1 blocks cache s = fp16(d * sum(qs)), and ggml's Q4_1/Q5_1 dots take their min term m * sum(a) as
    m * s, so they equal the decoded dot plus sum_b m_b * (s_b - sum_{i in b} a_i). The quantizers give the
    block minimum q = 0 (and d >= 0), so m_b is the smallest decoded weight of block b."""
    if TYPES[name].vec_dot_type != "Q8_1":
        return np.zeros(wq.shape[0])
    qk = TYPES["Q8_1"].block_size
    blocks = np.ascontiguousarray(act_raw).reshape(-1, TYPES["Q8_1"].type_size)
    s = blocks[:, 2:4].copy().view(np.float16)[:, 0].astype(np.float64)
    m = wq.reshape(wq.shape[0], -1, qk).min(axis=2)
    return m @ (s - aq.reshape(-1, qk).sum(axis=1))


def dot_case(name: str, n: int, kind: str, seed: int):
    w = weight_rows(n, seed)
    a = activation(n, kind, seed + 1000)
    raw = qrt.quantize(w, name)
    got = _C.vec_dot(raw, a, name).astype(np.float64)
    wq = qrt.dequantize(raw, name, w.shape).astype(np.float64)
    act_raw, aq = partner_bytes_and_values(name, a)
    return w, a, raw, got, wq, act_raw, aq


def test_every_storage_type_has_a_dot_product() -> None:
    assert DOT_TYPES and COMPUTE_ONLY
    for name in DOT_TYPES:
        p = TYPES[name].vec_dot_type
        assert p in TYPES, name
        x = np.ones(unit(name), np.float32)
        assert _C.vec_dot(qrt.quantize(x[None, :], name), x, name).shape == (1,)


@pytest.mark.parametrize("kind", ["normal", "sparse", "zero"])
@pytest.mark.parametrize("name", DOT_TYPES)
def test_vec_dot_is_the_dot_of_the_numbers_it_multiplies(name: str, kind: str) -> None:
    for i, n in enumerate(lengths(name)):
        _, _, _, got, wq, act_raw, aq = dot_case(name, n, kind, seed=10 * i)
        ref = wq @ aq + cached_sum_correction(name, act_raw, aq, wq)
        bound = EXACT_RTOL * (np.abs(wq) @ np.abs(aq))
        err = np.abs(got - ref)
        assert np.all(err <= bound), (n, err, bound)
        if kind == "zero":
            assert np.all(got == 0.0)


@pytest.mark.parametrize("name", DOT_TYPES)
def test_vec_dot_is_close_to_the_float_dot(name: str) -> None:
    t, p = TYPES[name], TYPES[TYPES[name].vec_dot_type]
    for i, n in enumerate(lengths(name)):
        w, a, _, got, wq, _, _ = dot_case(name, n, "normal", seed=10 * i + 1)
        a64, w64 = a.astype(np.float64), w.astype(np.float64)
        # Activation quantization alone: the stored weights against the unquantized activations.
        norm = np.linalg.norm(wq, axis=1) * np.linalg.norm(a64)
        e_act = np.abs(got - wq @ a64) / norm
        tol_act = SIGMAS * p.max_rel_rmse / math.sqrt(n) + EXACT_RTOL
        assert np.all(e_act <= tol_act), (n, e_act, tol_act)
        # Both quantizations: the original float rows (the N(0,1) ones, where max_rel_rmse applies).
        g = slice(0, N_GAUSSIAN_ROWS)
        norm = np.linalg.norm(w64[g], axis=1) * np.linalg.norm(a64)
        e_all = np.abs(got[g] - w64[g] @ a64) / norm
        tol_all = SIGMAS * math.hypot(t.max_rel_rmse, p.max_rel_rmse) / math.sqrt(n) + EXACT_RTOL
        assert np.all(e_all <= tol_all), (n, e_all, tol_all)


def test_vec_dot_rejects_bad_arguments() -> None:
    x = np.ones(64, np.float32)
    raw = qrt.quantize(x[None, :], "Q4_0")
    for name in COMPUTE_ONLY:
        with pytest.raises(ValueError, match="has no dot product"):
            _C.vec_dot(np.zeros(1024, np.uint8), np.ones(256, np.float32), name)
    with pytest.raises(ValueError, match="unknown tensor type"):
        _C.vec_dot(raw, x, "Q4_9")
    with pytest.raises(ValueError, match="not a positive multiple of Q4_0's block size 32"):
        _C.vec_dot(raw, np.ones(48, np.float32), "Q4_0")
    with pytest.raises(ValueError, match="not a positive multiple of Q4_K's block size 256"):
        _C.vec_dot(np.zeros(144, np.uint8), np.ones(64, np.float32), "Q4_K")
    with pytest.raises(ValueError, match="not a whole number of Q4_0 rows"):
        _C.vec_dot(raw.reshape(-1)[:-1], x, "Q4_0")
    with pytest.raises(ValueError, match="not a whole number of Q4_0 rows"):
        _C.vec_dot(np.zeros(0, np.uint8), x, "Q4_0")
    with pytest.raises(ValueError, match="one row"):
        _C.vec_dot(raw, x[None, :], "Q4_0")
    bad = x.copy()
    bad[5] = np.inf
    with pytest.raises(ValueError, match=r"x\[5\] is not finite"):
        _C.vec_dot(raw, bad, "Q4_0")
    nf4 = qrt.quantize(np.ones((3, 64), np.float32), "NF4")
    with pytest.raises(ValueError, match="not a whole number of NF4 rows"):
        _C.vec_dot(nf4[:-1], x, "NF4")
    assert _C.vec_dot(nf4, x, "NF4").shape == (3,)


# ---------------------------------------------------------------- llama.cpp's own kernels (libggml-cpu.so)

_GGML_VEC_DOT_ARGS = [
    ctypes.c_int,  # n
    ctypes.POINTER(ctypes.c_float),  # s
    ctypes.c_size_t,  # bs
    ctypes.c_void_p,  # vx
    ctypes.c_size_t,  # bx
    ctypes.c_void_p,  # vy
    ctypes.c_size_t,  # by
    ctypes.c_int,  # nrc
]


@pytest.fixture(scope="module")
def ggml_cpu(llamacpp):
    path = llamacpp.bin_dir / "libggml-cpu.so"
    if not path.is_file():
        pytest.skip(f"{path} not built")
    ctypes.CDLL(str(llamacpp.libggml_base), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(str(path))
    lib.ggml_cpu_init.argtypes, lib.ggml_cpu_init.restype = [], None
    lib.ggml_cpu_init()
    return lib


def ggml_vec_dot_name(name: str) -> str:
    """ggml-cpu's vec_dot for a weight type (type_traits_cpu[type].vec_dot)."""
    if TYPES[name].block_size == 1:
        return f"ggml_vec_dot_{canonical(name)}"
    return f"ggml_vec_dot_{canonical(name)}_{canonical(TYPES[name].vec_dot_type)}"


@pytest.mark.parametrize("name", [n for n in DOT_TYPES if n != "NF4"])  # ggml has no NF4
def test_vec_dot_matches_llama_cpp_kernel(ggml_cpu, name: str) -> None:
    """The same weight and activation bytes through ggml's dispatched kernel (SIMD on this machine; its
    float summation order differs, so this is a tolerance, not bit-exactness).

    Not compared: the exported ``*_generic`` scalar functions. In the cached build (GCC 12.2, -O3
    -march=native on an AVX-512 machine) ``ggml_vec_dot_q5_0_q8_0_generic`` is miscompiled and returns
    garbage; ggml never calls it on x86."""
    fn = getattr(ggml_cpu, ggml_vec_dot_name(name))
    fn.argtypes, fn.restype = _GGML_VEC_DOT_ARGS, None
    for i, n in enumerate(lengths(name)):
        for kind in ("normal", "sparse"):
            _, _, raw, got, wq, act_raw, aq = dot_case(name, n, kind, seed=10 * i + 2)
            act = np.ascontiguousarray(act_raw)
            row_bytes = raw.nbytes // raw.shape[0]
            for r in range(raw.shape[0]):
                row = np.ascontiguousarray(raw.reshape(-1)[r * row_bytes : (r + 1) * row_bytes])
                s = ctypes.c_float()
                fn(n, ctypes.byref(s), 0, row.ctypes.data, 0, act.ctypes.data, 0, 1)
                scale = float(np.abs(wq[r]) @ np.abs(aq))
                assert abs(got[r] - s.value) <= EXACT_RTOL * scale, (n, kind, r, got[r], s.value)


@pytest.mark.parametrize("partner", ["Q8_0", "Q8_1"])
def test_x86_activation_quantizer_differs_from_the_reference(ggml_cpu, partner: str) -> None:
    """qrt quantizes activations with ggml's reference quantize_row_q8_{0,1}_ref (roundf: ties away from
    zero, id = 1/d). llama.cpp's x86 matmul uses quantize_row_q8_{0,1} from ggml-cpu/arch/x86/quants.c
    instead: id = 127/amax and _mm256_round_ps (ties to even). Same d, and quants that differ by at most 1,
    only where x*id lands on (or within an ulp of) a half-integer: a fast kernel that wants llama.cpp's exact
    activations must round like the SIMD version; the reference keeps the ref's rounding."""
    fn = getattr(ggml_cpu, f"quantize_row_{canonical(partner)}")
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64], None
    size = TYPES[partner].type_size
    qs = slice(size - 32, size)  # the 32 int8 quants end every block
    for x in (
        np.random.default_rng(5).standard_normal(4096).astype(np.float32),
        np.tile(np.array([127.0] + [k + 0.5 for k in range(-15, 16)], np.float32), 4),  # exact ties
    ):
        ours = qrt.quantize(x[None, :], partner).reshape(-1, size)
        simd = np.zeros_like(ours)
        fn(x.ctypes.data, simd.ctypes.data, x.size)
        np.testing.assert_array_equal(ours[:, :2], simd[:, :2])  # d
        diff = ours[:, qs].view(np.int8).astype(int) - simd[:, qs].view(np.int8).astype(int)
        assert np.abs(diff).max() <= 1
    assert np.count_nonzero(diff) > 0  # the ties: roundf(0.5) = 1, round-half-even(0.5) = 0
