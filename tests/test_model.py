"""The CPU engine: llama-family forward through the paged KV cache (qrt._C.Model).

- SmolLM2 (real weights) against Hugging Face transformers on torch CPU float32, teacher-forced on
  gpl-3.0.txt: mean KL(HF || qrt) and top-1 agreement.
- Tiny random models written with gguf-py (llama, mistral, qwen2; F32 and Q8_0; GQA; tied and untied
  embeddings; linear RoPE scaling and rope_freqs) against a float64 NumPy forward written from the
  definitions, so the RoPE conventions (NORM pairs for llama, NEOX halves for qwen2) and biases are pinned.
- The paged cache: prefill == prefill + single-token decode across 16-token block boundaries; batches
  split by n_batch; interleaved sequences == each alone; truncation and block reuse.
- Bad inputs (BAD_INPUTS.md 16-20, 30, 33, 37): ids out of range, prompts longer than n_ctx, hostile
  metadata and tensor shapes, unknown architectures, a KV cache larger than memory.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import gguf
import numpy as np
import pytest

import qrt
from tests.support.cache import cache_dir, file_lock

Model = qrt._C.Model
N_THREADS = 2

# ----------------------------------------------------------------------------------------------------
# SmolLM2 against Hugging Face transformers

N_REF_TOKENS = 512
# llama.cpp's figures for this comparison over the full 14-chunk measure (the bar). qrt rounds the
# matmul inputs to int8 as llama.cpp does, but the attention inputs and the output layer's twice (~15 bits;
# model/matmul.h): on these 512 tokens that measures mean KL 0.0018 / top-1 0.975 (AVX2) and 0.0017 / 0.984
# (scalar reference), where int8 everywhere gives 0.0042 / 0.963 and float32 activations 1e-5 / 0.998; which
# near-ties flip depends on float summation order, hence the margins. Over the 14 chunks (bench/accuracy.py):
# 0.0014 / 97.5%; llama.cpp measured the same way 0.0030-0.0031 / 96.3-96.5% (bench/RESULTS.md).
KL_BAR, TOP1_BAR = 0.0028, 0.965
KL_QRT, TOP1_QRT = 0.0022, 0.965

_HF_SCRIPT = r"""
import pathlib, sys, warnings
warnings.simplefilter("ignore")
import numpy as np, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
gguf_path, text_path, n, out = sys.argv[1:5]
p = pathlib.Path(gguf_path)
torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
ids = tok(pathlib.Path(text_path).read_text())["input_ids"][: int(n)]
model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32)
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0].float().numpy()
np.save(out + ".ids.npy", np.asarray(ids, dtype=np.int32))
np.save(out + ".logits.npy", logits)
"""


def _skip_or_fail(msg: str) -> None:
    if os.environ.get("QRT_TEST_REQUIRE_ORACLE") == "1":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def gpl_text(repo_root: pathlib.Path) -> pathlib.Path:
    path = repo_root / "tests" / "data" / "gpl-3.0.txt"
    if not path.is_file():
        _skip_or_fail(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def hf_reference(smollm2_path: pathlib.Path, gpl_text: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids [N], logits [N, n_vocab]) from transformers, computed once in a subprocess and cached."""
    stem = cache_dir() / f"hf-smollm2-q4_1-gpl3-{N_REF_TOKENS}"
    ids_path, logits_path = pathlib.Path(f"{stem}.ids.npy"), pathlib.Path(f"{stem}.logits.npy")
    with file_lock(cache_dir() / ".hf-reference.lock"):
        if not (ids_path.is_file() and logits_path.is_file()):
            for mod in ("torch", "transformers", "accelerate"):
                if importlib.util.find_spec(mod) is None:
                    _skip_or_fail(
                        f"Hugging Face reference needs '{mod}' (pip install transformers --no-deps ...)"
                    )
            tmp = f"{stem}.{os.getpid()}.tmp"
            r = subprocess.run(
                [sys.executable, "-c", _HF_SCRIPT, str(smollm2_path), str(gpl_text), str(N_REF_TOKENS), tmp],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if r.returncode != 0:
                _skip_or_fail(f"Hugging Face reference failed: {r.stderr[-2000:]}")
            os.replace(f"{tmp}.logits.npy", logits_path)
            os.replace(f"{tmp}.ids.npy", ids_path)
    return np.load(ids_path), np.load(logits_path)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@pytest.mark.slow
def test_logits_match_hugging_face(
    smollm2_path: pathlib.Path, hf_reference: tuple[np.ndarray, np.ndarray]
) -> None:
    ids, hf_logits = hf_reference
    m = Model(str(smollm2_path), n_ctx=len(ids), n_threads=N_THREADS)
    ours = m.logits(ids)
    assert ours.shape == hf_logits.shape == (len(ids), m.n_vocab)
    assert np.isfinite(ours).all()
    p_hf, p_qrt = log_softmax(hf_logits), log_softmax(ours)
    kl = (np.exp(p_hf) * (p_hf - p_qrt)).sum(axis=-1)
    top1 = float((hf_logits.argmax(-1) == ours.argmax(-1)).mean())
    report = f"mean KL {kl.mean():.3g} (max {kl.max():.3g}), top-1 {top1:.4f} over {len(ids)} tokens"
    print(report)
    assert kl.mean() <= KL_BAR and top1 >= TOP1_BAR, report
    assert kl.mean() <= KL_QRT and top1 >= TOP1_QRT, report


# ----------------------------------------------------------------------------------------------------
# SmolLM2: properties, the paged cache, sequences


@pytest.fixture(scope="module")
def smol(smollm2_path: pathlib.Path) -> Model:
    return Model(str(smollm2_path), n_ctx=96, n_threads=N_THREADS, n_seq_max=3)


def random_ids(n: int, seed: int, n_vocab: int = 49152) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_vocab, n, dtype=np.int32)


def test_properties(smol: Model) -> None:
    assert (smol.arch, smol.rope_type) == ("llama", "norm")
    assert (smol.n_vocab, smol.n_embd, smol.n_layer, smol.n_ff) == (49152, 576, 30, 1536)
    assert (smol.n_head, smol.n_head_kv, smol.head_dim) == (9, 3, 64)
    assert (smol.n_ctx, smol.n_seq_max, smol.n_threads, smol.n_ctx_train) == (96, 3, N_THREADS, 8192)
    # 3 sequences x 6 blocks x 16 tokens x 30 layers x (K + V) x 3 heads x 64 dims x 2 bytes
    assert smol.kv_bytes == 3 * 96 * 30 * 2 * 3 * 64 * 2
    assert smol.seq_len(0) == 0


def test_logits_deterministic_and_leave_no_state(smol: Model) -> None:
    ids = random_ids(20, 1)
    a = smol.logits(ids)
    assert smol.seq_len(0) == 0
    b = smol.logits(ids.tolist())  # any integer sequence
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (20, 49152)


# Bit-identical today (same row dot products, same cache contents); the tolerance leaves room for future
# batched kernels.
PAGED_ATOL = 1e-4


def test_decode_equals_prefill_across_blocks(smol: Model) -> None:
    ids = random_ids(70, 2)  # crosses the block boundaries at 16, 32, 48 and 64
    full = smol.logits(ids)
    smol.clear(0)
    steps = [smol.eval(ids[:5], all_logits=True)]
    steps += [smol.eval(ids[i : i + 1])[None] for i in range(5, len(ids))]
    assert smol.seq_len(0) == len(ids)
    smol.clear(0)
    np.testing.assert_allclose(np.concatenate(steps), full, rtol=0, atol=PAGED_ATOL)


def test_uneven_chunks_equal_prefill(smol: Model) -> None:
    ids = random_ids(66, 3)
    full = smol.logits(ids)
    smol.clear(1)
    out, at = [], 0
    for n in (7, 9, 1, 16, 17, 15, 1):
        out.append(smol.eval(ids[at : at + n], seq_id=1, all_logits=True))
        at += n
    smol.clear(1)
    np.testing.assert_allclose(np.concatenate(out), full, rtol=0, atol=PAGED_ATOL)
    last = smol.eval(ids, seq_id=1)  # all_logits=False: the last position only
    smol.clear(1)
    assert last.shape == (49152,)
    np.testing.assert_allclose(last, full[-1], rtol=0, atol=PAGED_ATOL)


def test_without_repacking(smollm2_path: pathlib.Path, smol: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    # QRT_REPACK=0: the file's own layout through the row-wise gemm instead of the packed kernels: the same
    # integer sums in another float order. Not close to a few ulps: an ulp can flip the int8 rounding of an
    # activation downstream, and 30 layers spread that; between any two of the kernel routes (packed, row-wise,
    # scalar reference) these 40 random tokens measure mean KL 0.0033-0.0035 and mean |logit diff| 0.12-0.15.
    ids = random_ids(40, 5)
    monkeypatch.setenv("QRT_REPACK", "0")
    m = Model(str(smollm2_path), n_ctx=64, n_threads=N_THREADS)
    a, b = m.logits(ids).astype(np.float64), smol.logits(ids).astype(np.float64)
    la = a - a.max(1, keepdims=True)
    la -= np.log(np.exp(la).sum(1, keepdims=True))
    lb = b - b.max(1, keepdims=True)
    lb -= np.log(np.exp(lb).sum(1, keepdims=True))
    kl = float((np.exp(la) * (la - lb)).sum(1).mean())
    assert kl < 0.01 and float(np.abs(a - b).mean()) < 0.3, (kl, float(np.abs(a - b).mean()))
    assert not np.array_equal(a, b)  # the other route did run


def test_small_batches_equal_one_batch(smollm2_path: pathlib.Path, smol: Model) -> None:
    ids = random_ids(50, 4)
    m = Model(str(smollm2_path), n_ctx=64, n_threads=N_THREADS, n_batch=16)
    assert m.n_batch == 16
    np.testing.assert_allclose(m.logits(ids), smol.logits(ids), rtol=0, atol=PAGED_ATOL)


def test_interleaved_sequences_equal_each_alone(smol: Model) -> None:
    a, b, c = random_ids(45, 5), random_ids(23, 6), random_ids(30, 7)
    alone = {k: smol.logits(v) for k, v in {"a": a, "b": b, "c": c}.items()}
    for s in range(3):
        smol.clear(s)
    got: dict[str, list[np.ndarray]] = {"a": [], "b": [], "c": []}
    plan = [("a", 0, 0, 10), ("b", 1, 0, 3), ("a", 0, 10, 11), ("b", 1, 3, 20), ("a", 0, 11, 40)]
    plan += [("b", 1, 20, 23), ("a", 0, 40, 45)]
    for name, seq, lo, hi in plan:
        ids = {"a": a, "b": b}[name]
        got[name].append(smol.eval(ids[lo:hi], seq_id=seq, all_logits=True))
    assert (smol.seq_len(0), smol.seq_len(1)) == (45, 23)
    # Free sequence 0 while 1 is live; a new sequence reuses its blocks without disturbing 1.
    smol.clear(0)
    got["c"].append(smol.eval(c[:17], seq_id=0, all_logits=True))
    got["c"].append(smol.eval(c[17:], seq_id=0, all_logits=True))
    b_more = smol.eval(a[:4], seq_id=1, all_logits=True)  # sequence 1 continues after the reuse
    for s in range(3):
        smol.clear(s)
    for name in ("a", "b", "c"):
        np.testing.assert_allclose(
            np.concatenate(got[name]), alone[name], rtol=0, atol=PAGED_ATOL, err_msg=name
        )
    np.testing.assert_allclose(b_more, smol.logits(np.concatenate([b, a[:4]]))[23:], rtol=0, atol=PAGED_ATOL)


def test_truncate_then_continue(smol: Model) -> None:
    ids = random_ids(40, 8)
    full = smol.logits(ids)
    smol.eval(ids[:33], seq_id=2)
    smol.truncate(2, 20)  # back across a block boundary
    assert smol.seq_len(2) == 20
    tail = smol.eval(ids[20:], seq_id=2, all_logits=True)
    smol.clear(2)
    np.testing.assert_allclose(tail, full[20:], rtol=0, atol=PAGED_ATOL)


def test_gil_released(smol: Model) -> None:
    ids = random_ids(90, 9)
    t = threading.Thread(target=smol.logits, args=(ids,))
    ticks = 0
    t.start()
    while t.is_alive():
        ticks += 1
        time.sleep(0.001)
    t.join()
    assert ticks > 10  # the main thread ran while the model computed


# ----------------------------------------------------------------------------------------------------
# Bad arguments


def test_bad_token_ids(smol: Model) -> None:
    for bad in ([-1], [49152], [5, 2**40], np.array([2**64 - 1], dtype=np.uint64)):
        with pytest.raises(ValueError, match="out of range"):
            smol.eval(bad)
    with pytest.raises(ValueError, match="out of range"):
        smol.logits([1, 2, 49152])
    with pytest.raises(TypeError, match="integers"):
        smol.logits(np.array([1.5, 2.0]))
    with pytest.raises(ValueError, match="1-D"):
        smol.logits(np.zeros((2, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="no tokens"):
        smol.eval([])
    assert smol.seq_len(0) == 0  # nothing appended by a refused call


def test_prompt_longer_than_context(smol: Model) -> None:
    with pytest.raises(ValueError, match="prompt has 97 tokens, context is 96"):
        smol.logits(random_ids(97, 10))
    smol.eval(random_ids(90, 11), seq_id=1)
    with pytest.raises(ValueError, match="prompt has 7 tokens, context is 96"):
        smol.eval(random_ids(7, 12), seq_id=1)
    assert smol.seq_len(1) == 90
    smol.eval(random_ids(6, 13), seq_id=1)  # exactly full is fine
    assert smol.seq_len(1) == 96
    smol.clear(1)


def test_bad_sequence_ids(smol: Model) -> None:
    for seq in (-1, 3):
        with pytest.raises(ValueError, match="sequence id"):
            smol.eval([1], seq_id=seq)
        with pytest.raises(ValueError, match="sequence id"):
            smol.clear(seq)


def test_bad_construction_arguments(smollm2_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="n_ctx"):
        Model(str(smollm2_path), n_ctx=0)
    with pytest.raises(ValueError, match="n_threads"):
        Model(str(smollm2_path), n_ctx=16, n_threads=-1)
    with pytest.raises(ValueError, match="n_seq_max"):
        Model(str(smollm2_path), n_ctx=16, n_seq_max=0)
    with pytest.raises(OSError):
        Model(str(tmp_path / "missing.gguf"), n_ctx=16)


def test_kv_cache_too_large(smollm2_path: pathlib.Path) -> None:
    # 64 sequences x 2^24 tokens x 23040 bytes per token: about 22 TiB
    with pytest.raises(MemoryError, match=r"cannot allocate \d+ bytes"):
        Model(str(smollm2_path), n_ctx=2**24, n_threads=1, n_seq_max=64)


# ----------------------------------------------------------------------------------------------------
# Tiny random models vs a NumPy forward

F32, Q8_0 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.Q8_0
U32, F32V, STR = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.STRING
TINY = {"n_vocab": 100, "n_embd": 64, "n_layer": 2, "n_ff": 96, "n_head": 4, "n_head_kv": 2}


def tiny_metadata(arch: str, **over: object) -> dict[str, tuple[object, gguf.GGUFValueType]]:
    hp = {**TINY, **over}
    return {
        f"{arch}.context_length": (256, U32),
        f"{arch}.embedding_length": (hp["n_embd"], U32),
        f"{arch}.block_count": (hp["n_layer"], U32),
        f"{arch}.feed_forward_length": (hp["n_ff"], U32),
        f"{arch}.attention.head_count": (hp["n_head"], U32),
        f"{arch}.attention.head_count_kv": (hp["n_head_kv"], U32),
        f"{arch}.attention.layer_norm_rms_epsilon": (1e-5, F32V),
        f"{arch}.rope.freq_base": (10000.0, F32V),
    }


def tiny_tensors(seed: int, bias: bool = False, tied: bool = False, **over: int) -> dict[str, np.ndarray]:
    hp = {**TINY, **over}
    rng = np.random.default_rng(seed)
    e, ff, v = hp["n_embd"], hp["n_ff"], hp["n_vocab"]
    hd = e // hp["n_head"]
    nq, nkv = hp["n_head"] * hd, hp["n_head_kv"] * hd

    def mat(rows: int, cols: int) -> np.ndarray:  # numpy [out, in] = ggml ne [in, out]
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def vec(n: int, mean: float = 0.0) -> np.ndarray:
        return (mean + 0.1 * rng.standard_normal(n)).astype(np.float32)

    t = {"token_embd.weight": rng.standard_normal((v, e)).astype(np.float32), "output_norm.weight": vec(e, 1)}
    if not tied:
        t["output.weight"] = mat(v, e)
    for i in range(hp["n_layer"]):
        b = f"blk.{i}."
        t |= {b + "attn_norm.weight": vec(e, 1), b + "ffn_norm.weight": vec(e, 1)}
        t |= {
            b + "attn_q.weight": mat(nq, e),
            b + "attn_k.weight": mat(nkv, e),
            b + "attn_v.weight": mat(nkv, e),
        }
        t |= {
            b + "attn_output.weight": mat(e, nq),
            b + "ffn_gate.weight": mat(ff, e),
            b + "ffn_up.weight": mat(ff, e),
        }
        t |= {b + "ffn_down.weight": mat(e, ff)}
        if bias:
            t |= {b + "attn_q.bias": vec(nq), b + "attn_k.bias": vec(nkv), b + "attn_v.bias": vec(nkv)}
    return t


def write_gguf(
    path: pathlib.Path,
    arch: str,
    metadata: dict[str, tuple[object, gguf.GGUFValueType]],
    tensors: dict[str, np.ndarray],
    quant: gguf.GGMLQuantizationType = F32,
) -> dict[str, np.ndarray]:
    """Writes the file; returns the tensors as the model will see them (dequantized)."""
    w = gguf.GGUFWriter(str(path), arch)
    for key, (value, vtype) in metadata.items():
        w.add_key_value(key, value, vtype)
    seen = {}
    for name, a in tensors.items():
        if quant != F32 and a.ndim == 2 and a.shape[1] % 32 == 0:
            q = gguf.quants.quantize(a, quant)
            w.add_tensor(name, q, raw_dtype=quant)
            seen[name] = gguf.quants.dequantize(q, quant).reshape(a.shape)
        else:
            w.add_tensor(name, a)
            seen[name] = a
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return seen


def reference_forward(
    t: dict[str, np.ndarray],
    ids: np.ndarray,
    n_head: int,
    n_head_kv: int,
    neox: bool,
    freq_base: float = 10000.0,
    freq_scale: float = 1.0,
    eps: float = 1e-5,
    int8_activations: bool = False,
) -> np.ndarray:
    """Logits [len(ids), n_vocab] in float64, straight from the definitions.

    ``int8_activations``: the inputs of the quantized (Q8_0) matrices are rounded as qrt's matmul rounds
    them: Q8_0 blocks, and for attn_q/k/v and the output layer also the residual a second time (matmul.h).
    """
    t = {k: v.astype(np.float64) for k, v in t.items()}
    n = len(ids)
    hd = t["blk.0.attn_q.weight"].shape[0] // n_head
    inv_freq = freq_base ** (-np.arange(0, hd, 2) / hd) / t.get("rope_freqs.weight", np.ones(hd // 2))
    ang = freq_scale * np.arange(n)[:, None, None] * inv_freq[None, None, :]  # [n, 1, hd/2]
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(x: np.ndarray) -> np.ndarray:  # [n, heads, hd]
        a, b = (x[..., : hd // 2], x[..., hd // 2 :]) if neox else (x[..., 0::2], x[..., 1::2])
        ra, rb = a * cos - b * sin, a * sin + b * cos
        out = np.empty_like(x)
        if neox:
            out[..., : hd // 2], out[..., hd // 2 :] = ra, rb
        else:
            out[..., 0::2], out[..., 1::2] = ra, rb
        return out

    def rmsnorm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def linear(x: np.ndarray, name: str) -> np.ndarray:
        if int8_activations and t[name + ".weight"].shape[1] % 32 == 0:
            twice = any(r in name for r in ("attn_q", "attn_k", "attn_v")) or name in ("output", "tied")
            x = q8_0_round_trip(x) + (q8_0_round_trip(x - q8_0_round_trip(x)) if twice else 0)
        y = x @ t[name + ".weight"].T
        return y + t[name + ".bias"] if name + ".bias" in t else y

    x = t["token_embd.weight"][ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(len([k for k in t if k.endswith("attn_norm.weight")])):
        b = f"blk.{i}."
        h = rmsnorm(x, t[b + "attn_norm.weight"])
        q = rope(linear(h, b + "attn_q").reshape(n, n_head, hd))
        k = rope(linear(h, b + "attn_k").reshape(n, n_head_kv, hd))
        v = linear(h, b + "attn_v").reshape(n, n_head_kv, hd)
        k, v = np.repeat(k, n_head // n_head_kv, axis=1), np.repeat(v, n_head // n_head_kv, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        x = x + linear(np.einsum("hqk,khd->qhd", p, v).reshape(n, n_head * hd), b + "attn_output")
        h = rmsnorm(x, t[b + "ffn_norm.weight"])
        g, u = linear(h, b + "ffn_gate"), linear(h, b + "ffn_up")
        x = x + linear(g / (1 + np.exp(-g)) * u, b + "ffn_down")
    if "output.weight" in t:
        return linear(rmsnorm(x, t["output_norm.weight"]), "output")
    t["tied.weight"] = t["token_embd.weight"]
    return linear(rmsnorm(x, t["output_norm.weight"]), "tied")


def q8_0_round_trip(x: np.ndarray) -> np.ndarray:
    """x through quantize_row_q8_0_ref and back, per row of a 2-D array (float32 arithmetic, as ggml)."""
    b = x.astype(np.float32).reshape(x.shape[0], -1, 32)
    d = np.abs(b).max(-1, keepdims=True) / np.float32(127)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    v = b * inv
    q = np.trunc(v) + np.sign(v) * (np.abs(v - np.trunc(v)) >= 0.5)  # roundf: halves away from zero
    return (q * d.astype(np.float16).astype(np.float32)).reshape(x.shape).astype(np.float64)


def assert_close_to_reference(ours: np.ndarray, ref: np.ndarray, bound: float = 3e-3) -> None:
    # K and V are stored as f16 (relative rounding 2^-11); everything else is fp32, or int8 activations for
    # quantized matrices (the caller widens the bound).
    err = np.abs(ours - ref).max() / np.abs(ref).max()
    assert err < bound, f"max error {err:.3g} relative to the largest logit (bound {bound:.3g})"
    assert (ours.argmax(-1) == ref.argmax(-1)).mean() >= 0.95


TINY_CASES: dict[str, dict] = {
    "llama-f32": {"arch": "llama"},
    "llama-q8_0-tied": {"arch": "llama", "quant": Q8_0, "tied": True},
    "llama-mha": {"arch": "llama", "n_head_kv": 4},
    "llama-rope-scaled": {"arch": "llama", "freq_base": 500.0, "linear": 2.0, "rope_freqs": True},
    "mistral": {"arch": "mistral"},
    "qwen2-bias": {"arch": "qwen2", "bias": True},
    "qwen2-q8_0-tied": {"arch": "qwen2", "bias": True, "quant": Q8_0, "tied": True},
}


@pytest.mark.parametrize("case", TINY_CASES)
def test_tiny_model_matches_numpy(tmp_path: pathlib.Path, case: str) -> None:
    c = TINY_CASES[case]
    arch, n_head_kv = c["arch"], c.get("n_head_kv", TINY["n_head_kv"])
    md = tiny_metadata(arch, n_head_kv=n_head_kv)
    tensors = tiny_tensors(7, bias=c.get("bias", False), tied=c.get("tied", False), n_head_kv=n_head_kv)
    freq_base, freq_scale = c.get("freq_base", 10000.0), 1.0
    md[f"{arch}.rope.freq_base"] = (freq_base, F32V)
    if "linear" in c:
        md[f"{arch}.rope.scaling.type"] = ("linear", STR)
        md[f"{arch}.rope.scaling.factor"] = (c["linear"], F32V)
        freq_scale = 1.0 / c["linear"]
    if c.get("rope_freqs"):
        tensors["rope_freqs.weight"] = np.linspace(1.0, 4.0, 8, dtype=np.float32)
    path = tmp_path / f"{case}.gguf"
    seen = write_gguf(path, arch, md, tensors, c.get("quant", F32))
    ids = random_ids(40, 14, TINY["n_vocab"])
    m = Model(str(path), n_ctx=64, n_threads=N_THREADS)
    assert m.rope_type == ("neox" if arch == "qwen2" else "norm")
    ref = reference_forward(seen, ids, TINY["n_head"], n_head_kv, arch == "qwen2", freq_base, freq_scale)
    ours = m.logits(ids)
    bound = 3e-3
    if "quant" in c:
        # int8 activations: one rounding more or less in a block (qrt computes in float32, the reference in
        # float64) moves a logit by up to ~0.3% here, so the reference cannot replay qrt's roundings. Bound:
        # what rounding the activations alone does to the float64 forward, with 50% to spare.
        ref8 = reference_forward(
            seen,
            ids,
            TINY["n_head"],
            n_head_kv,
            arch == "qwen2",
            freq_base,
            freq_scale,
            int8_activations=True,
        )
        bound = max(bound, 1.5 * np.abs(ref8 - ref).max() / np.abs(ref).max())
    assert_close_to_reference(ours, ref, bound)
    # and through the cache, one token at a time
    steps = np.stack([m.eval(ids[i : i + 1]) for i in range(len(ids))])
    np.testing.assert_allclose(steps, ours, rtol=0, atol=1e-5)


def test_rope_convention_matters(tmp_path: pathlib.Path) -> None:
    """The reference check above would notice a swapped RoPE convention."""
    md, tensors = tiny_metadata("llama"), tiny_tensors(8)
    seen = write_gguf(tmp_path / "t.gguf", "llama", md, tensors)
    ids = random_ids(40, 15, TINY["n_vocab"])
    ours = Model(str(tmp_path / "t.gguf"), n_ctx=64, n_threads=1).logits(ids)
    wrong = reference_forward(seen, ids, TINY["n_head"], TINY["n_head_kv"], neox=True)
    assert np.abs(ours - wrong).max() / np.abs(wrong).max() > 1e-2


# ----------------------------------------------------------------------------------------------------
# Hostile model files (BAD_INPUTS 16-20)

Edit = Callable[[dict, dict], None]


def _drop_key(key: str) -> Edit:
    return lambda md, t: md.pop(key)


def _set_key(key: str, value: object, vtype: gguf.GGUFValueType) -> Edit:
    return lambda md, t: md.__setitem__(key, (value, vtype))


def _set_tensor(name: str, shape: tuple[int, ...]) -> Edit:
    return lambda md, t: t.__setitem__(name, np.zeros(shape, np.float32))


HOSTILE: dict[str, tuple[Edit, type[Exception], tuple[str, ...]]] = {
    "missing block_count": (
        _drop_key("llama.block_count"),
        qrt.FormatError,
        ("missing key 'llama.block_count'",),
    ),
    "missing rms eps": (
        _drop_key("llama.attention.layer_norm_rms_epsilon"),
        qrt.FormatError,
        ("missing key", "layer_norm_rms_epsilon"),
    ),
    "block_count as string": (
        _set_key("llama.block_count", "2", STR),
        qrt.FormatError,
        ("llama.block_count", "STRING", "expected an integer"),
    ),
    "block_count as float": (
        _set_key("llama.block_count", 2.0, F32V),
        qrt.FormatError,
        ("llama.block_count", "expected an integer"),
    ),
    "zero layers": (_set_key("llama.block_count", 0, U32), qrt.FormatError, ("block_count", "out of range")),
    "zero heads": (
        _set_key("llama.attention.head_count", 0, U32),
        qrt.FormatError,
        ("head_count", "out of range"),
    ),
    "heads not dividing": (
        _set_key("llama.attention.head_count_kv", 3, U32),
        qrt.FormatError,
        ("head_count 4 is not a multiple of head_count_kv 3",),
    ),
    "embedding not dividing": (
        _set_key("llama.attention.head_count", 6, U32),
        qrt.FormatError,
        ("embedding_length 64 is not a multiple of head_count 6",),
    ),
    "odd head dim": (
        _set_key("llama.attention.key_length", 15, U32),
        qrt.FormatError,
        ("head dimension 15 is odd",),
    ),
    "partial rope": (
        _set_key("llama.rope.dimension_count", 8, U32),
        qrt.UnsupportedError,
        ("rope.dimension_count 8",),
    ),
    "negative eps": (
        _set_key("llama.attention.layer_norm_rms_epsilon", -1.0, F32V),
        qrt.FormatError,
        ("layer_norm_rms_epsilon", "must be > 0"),
    ),
    "nan freq base": (_set_key("llama.rope.freq_base", float("nan"), F32V), qrt.FormatError, ("freq_base",)),
    "yarn scaling": (
        _set_key("llama.rope.scaling.type", "yarn", STR),
        qrt.UnsupportedError,
        ("rope.scaling.type 'yarn'",),
    ),
    "vocab_size disagrees": (
        _set_key("llama.vocab_size", 99, U32),
        qrt.FormatError,
        ("token_embd.weight", "[64, 100]", "expected [64, 99]"),
    ),
    "wrong tensor shape": (
        _set_tensor("blk.1.attn_k.weight", (24, 64)),
        qrt.FormatError,
        ("'blk.1.attn_k.weight' has shape [64, 24], expected [64, 32]",),
    ),
    "1-D tensor wrong length": (
        _set_tensor("blk.0.ffn_norm.weight", (63,)),
        qrt.FormatError,
        ("blk.0.ffn_norm.weight", "expected [64]"),
    ),
    "matrix where a vector goes": (
        _set_tensor("output_norm.weight", (2, 64)),
        qrt.FormatError,
        ("output_norm.weight", "[64, 2]", "expected [64]"),
    ),
    "missing tensor": (
        lambda md, t: t.pop("blk.0.ffn_up.weight"),
        qrt.FormatError,
        ("missing tensor 'blk.0.ffn_up.weight'",),
    ),
    "missing token_embd": (
        lambda md, t: t.pop("token_embd.weight"),
        qrt.FormatError,
        ("missing tensor 'token_embd.weight'",),
    ),
    "unexpected tensor": (
        _set_tensor("blk.0.ffn_gate.bias", (96,)),
        qrt.UnsupportedError,
        ("'blk.0.ffn_gate.bias' is not used",),
    ),
    "layer beyond block_count": (
        _set_key("llama.block_count", 1, U32),
        qrt.UnsupportedError,
        ("'blk.1.",),
    ),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_metadata(tmp_path: pathlib.Path, case: str) -> None:
    edit, exc, fragments = HOSTILE[case]
    md, tensors = tiny_metadata("llama"), tiny_tensors(9)
    edit(md, tensors)
    path = tmp_path / "hostile.gguf"
    write_gguf(path, "llama", md, tensors)
    with pytest.raises(exc) as info:
        Model(str(path), n_ctx=16, n_threads=1)
    for f in [str(path), *fragments]:
        assert f in str(info.value), f"{f!r} not in {info.value}"


def test_unknown_architecture(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "gpt9.gguf"
    write_gguf(path, "gpt9", tiny_metadata("gpt9"), tiny_tensors(10))
    with pytest.raises(
        qrt.UnsupportedError,
        match=r"architecture 'gpt9' is not supported; supported: llama, mistral, qwen2, qwen3, gemma3, phi3, "
        r"smollm3, granite$",
    ):
        Model(str(path), n_ctx=16)


def test_qwen2_requires_biases(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "qwen2.gguf"
    write_gguf(path, "qwen2", tiny_metadata("qwen2"), tiny_tensors(11))
    with pytest.raises(qrt.FormatError, match=r"missing tensor 'blk\.0\.attn_q\.bias'"):
        Model(str(path), n_ctx=16)


def test_vocab_from_tokenizer_tokens(tmp_path: pathlib.Path) -> None:
    """Without <arch>.vocab_size the token list decides n_vocab, and token_embd must agree."""
    md = tiny_metadata("llama")
    md["tokenizer.ggml.tokens"] = ([f"t{i}" for i in range(TINY["n_vocab"])], gguf.GGUFValueType.ARRAY)
    path = tmp_path / "ok.gguf"
    write_gguf(path, "llama", md, tiny_tensors(12))
    assert Model(str(path), n_ctx=16).n_vocab == TINY["n_vocab"]
    md["tokenizer.ggml.tokens"] = ([f"t{i}" for i in range(TINY["n_vocab"] + 1)], gguf.GGUFValueType.ARRAY)
    write_gguf(path, "llama", md, tiny_tensors(12))
    with pytest.raises(qrt.FormatError, match=r"token_embd\.weight.*expected \[64, 101\]"):
        Model(str(path), n_ctx=16)
