"""The test fixtures deliver real data: the SmolLM2 GGUF, the ggml oracle, llama-quantize files."""

from __future__ import annotations

from collections import Counter

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT

from tests.support import smollm2


def _np_shape(t) -> tuple[int, ...]:
    # GGUFReader reports ggml order (ne0 first); numpy order is reversed
    return tuple(int(d) for d in reversed(t.shape.tolist()))


def test_smollm2_opens_with_gguf_py(smollm2_path):
    r = gguf.GGUFReader(smollm2_path)
    assert len(r.tensors) == smollm2.N_TENSORS == 272
    types = Counter(t.tensor_type for t in r.tensors)
    assert types[QT.Q4_1] > 200
    assert r.get_field("general.architecture").contents() == "llama"


@pytest.mark.slow
def test_ggml_dequantize_matches_gguf_py_on_smollm2(smollm2_path, ggml_ref):
    r = gguf.GGUFReader(smollm2_path)
    checked = Counter()
    for t in r.tensors:
        if t.tensor_type not in (QT.Q4_1, QT.Q8_0):
            continue
        name = t.tensor_type.name.lower()
        ours = ggml_ref.dequantize(name, t.data, _np_shape(t))
        ref = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        assert ours.shape == ref.shape, t.name
        np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32), err_msg=t.name)
        checked[t.tensor_type] += 1
    assert checked[QT.Q4_1] == 210
    assert checked[QT.Q8_0] == 1


def _random_rows(rng, rows: int, n: int) -> np.ndarray:
    x = rng.standard_normal((rows, n)).astype(np.float32)
    x *= np.float32(10.0) ** rng.uniform(-4, 3, size=(rows, 1)).astype(np.float32)
    x[0, :32] = 0.0  # an all-zero block
    x[1, 5] = 1e4  # an outlier
    return x


@pytest.mark.parametrize("qtype", [QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1], ids=lambda q: q.name)
def test_quantize_ref_matches_gguf_py(ggml_ref, qtype):
    rng = np.random.default_rng(1234)
    x = _random_rows(rng, 16, 512)
    ours = ggml_ref.quantize_ref(qtype.name.lower(), x)
    ref = gguf.quants.quantize(x, qtype)
    assert ours.dtype == ref.dtype == np.uint8
    np.testing.assert_array_equal(ours, ref)
    # ggml_quantize_chunk without imatrix == the ref quantizer for these types
    np.testing.assert_array_equal(ggml_ref.quantize_chunk(qtype.name.lower(), x), ours)


def test_type_sizes(ggml_ref):
    for name, (blk, size) in {
        "q4_0": (32, 18),
        "q4_1": (32, 20),
        "q5_0": (32, 22),
        "q5_1": (32, 24),
        "q8_0": (32, 34),
        "q8_1": (32, 36),
        "q2_K": (256, 84),
        "q3_K": (256, 110),
        "q4_K": (256, 144),
        "q5_K": (256, 176),
        "q6_K": (256, 210),
        "q8_K": (256, 292),
    }.items():
        assert (ggml_ref.block_size(name), ggml_ref.type_size(name)) == (blk, size), name


@pytest.mark.parametrize("qtype", ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K"])
def test_kquant_ref_roundtrip(ggml_ref, qtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 1024)).astype(np.float32)
    q = ggml_ref.quantize_ref(qtype, x)
    assert q.shape == (8, 1024 // 256 * ggml_ref.type_size(qtype))
    y = ggml_ref.dequantize(qtype, q, x.shape)
    rel = np.linalg.norm(y - x, axis=1) / np.linalg.norm(x, axis=1)
    assert (
        rel.max() < {"q2_K": 0.6, "q3_K": 0.25, "q4_K": 0.12, "q5_K": 0.06, "q6_K": 0.03, "q8_K": 0.01}[qtype]
    )


def _check_requant(path, ggml_ref, expect: dict) -> None:
    r = gguf.GGUFReader(path)
    assert len(r.tensors) == 272
    types = Counter(t.tensor_type for t in r.tensors)
    for qt, n in expect.items():
        assert types[qt] == n, (qt.name, dict(types))
    # the oracle decodes every quantized tensor exactly like gguf-py does
    for t in r.tensors:
        if t.tensor_type != QT.F32:
            ours = ggml_ref.dequantize(t.tensor_type.name, t.data, _np_shape(t))
            ref = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
            np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32), err_msg=t.name)


@pytest.mark.slow
def test_llama_quantize_q4_k_m_file(kquant_file, ggml_ref):
    path = kquant_file("Q4_K_M")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.Q4_K_M.gguf"
    # only the 30 ffn_down tensors (ne0=1536) can be K-quants (n_embd=576 % 256 != 0)
    _check_requant(path, ggml_ref, {QT.Q4_K: 16, QT.Q6_K: 14, QT.Q5_0: 166, QT.Q8_0: 15})


@pytest.mark.slow
def test_llama_quantize_q2_k_pure_file(kquant_file, ggml_ref):
    path = kquant_file("Q2_K", pure=True)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.Q2_K.pure.gguf"
    _check_requant(path, ggml_ref, {QT.Q2_K: 30, QT.Q4_0: 181})
