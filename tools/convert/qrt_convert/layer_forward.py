"""A float32 numpy forward of llama-family decoder layers, for calibration (GPTQ, AWQ) in qrt-convert.

Calibration needs the inputs of every linear layer over the calibration text, computed with the layers
before it already quantized (GPTQ's sequential rule), so it runs the model a layer at a time in numpy on the
converter's own tensors (GGUF names and layouts: Q/K rows already permuted for llama.cpp's RoPE). The maths
is llama.cpp's ``llm_build_llama`` (HF ``LlamaDecoderLayer``): RMSNorm, Q/K/V (+ biases for qwen2), RoPE
(adjacent pairs for ``llama``, half-split NEOX pairs for ``qwen2``), causal grouped-query attention, output
projection, residual, RMSNorm, SiLU(gate) · up, down projection, residual. ``tests/test_gptq.py`` checks the
whole stack against qrt's engine on the F16 file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qrt import UnsupportedError

#: architectures whose layers this module computes, and whether their RoPE is NEOX-style
ARCHITECTURES = {"llama": False, "qwen2": True}


@dataclass(frozen=True)
class LayerShape:
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rope_dim: int
    rope_base: float
    rms_eps: float

    @classmethod
    def from_metadata(cls, kv: dict) -> LayerShape:
        """From GGUF metadata (``{key: value}``); UnsupportedError for other architectures or RoPE scaling."""
        arch = kv["general.architecture"]
        if arch not in ARCHITECTURES:
            raise UnsupportedError(
                f"calibration by gptq/awq supports the {', '.join(ARCHITECTURES)} architectures, not {arch!r}"
            )
        if f"{arch}.rope.scaling.type" in kv:
            raise UnsupportedError(f"calibration by gptq/awq does not handle RoPE scaling ({arch})")
        n_embd, n_head = int(kv[f"{arch}.embedding_length"]), int(kv[f"{arch}.attention.head_count"])
        head_dim = int(kv.get(f"{arch}.attention.key_length", n_embd // n_head))
        return cls(
            arch,
            int(kv[f"{arch}.block_count"]),
            n_embd,
            n_head,
            int(kv.get(f"{arch}.attention.head_count_kv", n_head)),
            head_dim,
            int(kv.get(f"{arch}.rope.dimension_count", head_dim)),
            float(kv.get(f"{arch}.rope.freq_base", 10000.0)),
            float(kv[f"{arch}.attention.layer_norm_rms_epsilon"]),
        )


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    ms = np.mean(np.square(x, dtype=np.float32), axis=-1, keepdims=True)
    return (x / np.sqrt(ms + np.float32(eps))) * weight


def rope(x: np.ndarray, shape: LayerShape) -> np.ndarray:
    """Rotate ``x`` (tokens, heads, head_dim) by positions 0..tokens-1 (llama.cpp's rope_f32, mode 0 or NEOX)."""
    t, d = x.shape[0], shape.rope_dim
    inv = shape.rope_base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.arange(t, dtype=np.float64)[:, None] * inv[None, :]
    cos, sin = np.cos(ang).astype(np.float32)[:, None, :], np.sin(ang).astype(np.float32)[:, None, :]
    out = x.copy()
    if ARCHITECTURES[shape.arch]:  # NEOX: element i pairs with i + d/2
        x0, x1 = x[..., : d // 2], x[..., d // 2 : d]
        out[..., : d // 2] = x0 * cos - x1 * sin
        out[..., d // 2 : d] = x0 * sin + x1 * cos
    else:  # adjacent pairs (2i, 2i + 1)
        x0, x1 = x[..., 0:d:2], x[..., 1:d:2]
        out[..., 0:d:2] = x0 * cos - x1 * sin
        out[..., 1:d:2] = x0 * sin + x1 * cos
    return out


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, shape: LayerShape) -> np.ndarray:
    """Causal grouped-query attention of one sequence: q (T, n_head·hd), k/v (T, n_head_kv·hd) -> (T, n_head·hd)."""
    t, hd = q.shape[0], shape.head_dim
    q = rope(q.reshape(t, shape.n_head, hd), shape)
    k = rope(k.reshape(t, shape.n_head_kv, hd), shape)
    v = v.reshape(t, shape.n_head_kv, hd)
    group = shape.n_head // shape.n_head_kv
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)
    # (heads, T, hd) @ (heads, hd, T): batched BLAS products (einsum here is several times slower)
    scores = np.matmul(q.transpose(1, 0, 2), k.transpose(1, 2, 0)) / np.float32(np.sqrt(hd))
    scores[:, np.triu(np.ones((t, t), bool), 1)] = -np.inf
    scores -= scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
    return np.matmul(p, v.transpose(1, 0, 2)).transpose(1, 0, 2).reshape(t, shape.n_head * hd)


#: the linear layers of a decoder layer in the order calibration quantizes them, grouped by shared input
GROUPS: tuple[tuple[str, ...], ...] = (
    ("attn_q", "attn_k", "attn_v"),
    ("attn_output",),
    ("ffn_gate", "ffn_up"),
    ("ffn_down",),
)

#: ``quantize(group, inputs) -> weights``: called once per group with the group's input activations
#: (tokens, in_features) and returns the weights (dequantized) the forward continues with, by name
Quantizer = Callable[[Sequence[str], np.ndarray], dict[str, np.ndarray]]


def layer(
    x: np.ndarray, w: dict[str, np.ndarray], shape: LayerShape, quantize: Quantizer | None = None
) -> np.ndarray:
    """One decoder layer over ``x`` (sequences, tokens, n_embd); ``w`` maps short names (``attn_q``,
    ``attn_norm``, ``attn_q.bias`` ...) to float32 arrays. With ``quantize``, each group of linears is
    replaced, before it is used, by what ``quantize`` returns for the group's inputs (the sequential rule)."""
    n_seq, t, _ = x.shape

    def group(names: Sequence[str], inp: np.ndarray) -> list[np.ndarray]:
        if quantize is not None:
            w.update(quantize(names, inp.reshape(-1, inp.shape[-1])))
        return [w[n] for n in names]

    h = rms_norm(x, w["attn_norm"], shape.rms_eps)
    wq, wk, wv = group(GROUPS[0], h)
    heads = np.empty((n_seq, t, shape.n_head * shape.head_dim), np.float32)
    for s in range(n_seq):
        q, k, v = h[s] @ wq.T, h[s] @ wk.T, h[s] @ wv.T
        if "attn_q.bias" in w:
            q, k, v = q + w["attn_q.bias"], k + w["attn_k.bias"], v + w["attn_v.bias"]
        heads[s] = attention(q, k, v, shape)
    (wo,) = group(GROUPS[1], heads)
    x = x + heads @ wo.T
    h = rms_norm(x, w["ffn_norm"], shape.rms_eps)
    wg, wu = group(GROUPS[2], h)
    g = h @ wg.T
    act = g / (1 + np.exp(-g)) * (h @ wu.T)
    (wd,) = group(GROUPS[3], act)
    return x + act @ wd.T
