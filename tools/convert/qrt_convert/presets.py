"""Which type each tensor gets: llama-quantize's rules (``src/llama-quant.cpp``, FORMATS.md §4), and qrt's NF4.

The functions mirror llama.cpp's ``tensor_allows_quantization``, ``llama_tensor_get_type_impl``,
``tensor_type_fallback`` and ``tensor_requires_imatrix`` for the file types offered here (with or without an
importance matrix, no ``--pure``, dense models),
walking the tensors in llama-quantize's order (:func:`tensor_order`) so the attn_v / ffn_down counters see the
same sequence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: qrt-convert --type -> (general.file_type, base tensor type). IDs are llama.cpp's ``llama_ftype``.
FTYPES: dict[str, tuple[int, str]] = {
    "F16": (1, "F16"),
    "BF16": (32, "BF16"),
    "Q8_0": (7, "Q8_0"),
    "Q4_0": (2, "Q4_0"),
    "Q4_1": (3, "Q4_1"),
    "Q5_0": (8, "Q5_0"),
    "Q5_1": (9, "Q5_1"),
    "Q2_K": (10, "Q2_K"),
    "Q2_K_S": (21, "Q2_K"),  # needs an importance matrix, as in llama-quantize
    "Q3_K_S": (11, "Q3_K"),
    "Q3_K_M": (12, "Q3_K"),
    "Q3_K_L": (13, "Q3_K"),
    "Q4_K_S": (14, "Q4_K"),
    "Q4_K_M": (15, "Q4_K"),
    "Q5_K_S": (16, "Q5_K"),
    "Q5_K_M": (17, "Q5_K"),
    "Q6_K": (18, "Q6_K"),
    # qrt's own: llama.cpp has no NF4 ftype; the id is outside llama_ftype's range, like the NF4 type id.
    "NF4": (1000, "NF4"),
}

#: element count of one block, per type written by the converter
BLOCK = {
    "F32": 1,
    "F16": 1,
    "BF16": 1,
    "Q4_0": 32,
    "Q4_1": 32,
    "Q5_0": 32,
    "Q5_1": 32,
    "Q8_0": 32,
    "Q2_K": 256,
    "Q3_K": 256,
    "Q4_K": 256,
    "Q5_K": 256,
    "Q6_K": 256,
    "NF4": 64,
}

_BLK = re.compile(r"blk\.(\d+)\.")


def tensor_order(names: list[str]) -> list[str]:
    """llama-quantize's output order (``weight_name_comparer``): non-``blk`` tensors first, then by layer,
    by name within a group."""

    def key(n: str) -> tuple[int, str]:
        m = _BLK.match(n)
        return (int(m.group(1)) if m else -1, n)

    return sorted(names, key=key)


def allows_quantization(name: str, n_dims: int) -> bool:
    """``tensor_allows_quantization`` for the tensors a dense llama-family model has."""
    return (
        n_dims >= 2
        and name.endswith("weight")
        and "_norm.weight" not in name
        and "ffn_gate_inp.weight" not in name
        and ".position_embd" not in name
    )


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name == "token_embd.weight":
        return "token_embd"
    for cat in ("attn_qkv.weight", "attn_kv_b.weight", "attn_v.weight", "attn_k.weight", "attn_q.weight"):
        if cat in name:
            return cat.split(".")[0]
    if "attn_output.weight" in name:
        return "attn_output"
    for cat in ("ffn_up", "ffn_gate", "ffn_down"):
        if cat in name:
            return cat
    return "other"


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@dataclass(frozen=True)
class ModelInfo:
    arch: str  #: GGUF architecture name ("llama", "qwen2")
    n_layer: int
    n_head: int
    n_head_kv: int

    @property
    def is_70b(self) -> bool:  # llama.cpp's LLM_TYPE_70B, as load_hparams decides it for these archs
        if self.n_layer != 80:
            return False
        return self.arch != "llama" or self.n_head != self.n_head_kv


def _fallback(t: str, ncols: int) -> str:
    """``tensor_type_fallback``: a type whose block does not divide the row length is demoted."""
    if ncols % BLOCK[t] == 0:
        return t
    t2 = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}.get(t, t)
    if ncols % BLOCK[t2] != 0:
        return "F16"
    return t2


def requires_imatrix(name: str, type_: str, ftype: str) -> bool:
    """``tensor_requires_imatrix``: the Q2_K tensors of a Q2_K_S file (not the embedding or output head)."""
    return type_ == "Q2_K" and ftype == "Q2_K_S" and _category(name) not in ("output", "token_embd")


def choose_types(
    tensors: list[tuple[str, tuple[int, ...], str]], ftype: str, model: ModelInfo, has_imatrix: bool = False
) -> dict[str, str]:
    """Type per tensor. ``tensors``: (GGUF name, ggml ne, type before quantization: F32 for norms and
    biases, else the float type), in :func:`tensor_order`. ``has_imatrix``: llama-quantize was given an
    importance matrix (it then bumps Q4_0/Q5_0 files' first ffn_down layers to Q4_1/Q5_1)."""
    if ftype not in FTYPES:
        raise ValueError(f"unknown type {ftype!r}; choose one of {', '.join(FTYPES)}")
    base = FTYPES[ftype][1]
    tied = not any(n == "output.weight" for n, _, _ in tensors)
    n_attn_v = sum(1 for n, _, _ in tensors if _category(n) in ("attn_v", "attn_qkv", "attn_kv_b"))
    n_gqa = model.n_head // model.n_head_kv if model.n_head_kv else 0
    i_attn_v = 0
    i_ffn_down = 0
    out: dict[str, str] = {}
    for name, ne, src_type in tensors:
        if not allows_quantization(name, len(ne)):
            out[name] = src_type
            continue
        if ftype == "NF4":
            out[name] = _nf4_type(name, ne[0])
            continue
        t = base
        if base in ("F16", "BF16"):
            out[name] = t
            continue
        cat = _category(name)
        if cat == "output" or (tied and cat == "token_embd"):
            if ne[0] % BLOCK[t] != 0:
                t = "Q8_0"
            elif t != "Q8_0":
                t = "Q6_K"
        elif cat == "token_embd":
            pass
        elif cat in ("attn_v", "attn_qkv", "attn_kv_b"):
            if ftype == "Q2_K":
                t = "Q4_K" if n_gqa >= 4 else "Q3_K"
            elif ftype == "Q2_K_S" and n_gqa >= 4:
                t = "Q4_K"
            elif ftype == "Q3_K_M":
                t = "Q5_K" if i_attn_v < 2 else "Q4_K"
            elif ftype == "Q3_K_L":
                t = "Q5_K"
            elif ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i_attn_v, n_attn_v):
                t = "Q6_K"
            elif ftype == "Q4_K_S" and i_attn_v < 4:
                t = "Q5_K"
            if model.is_70b and t in ("Q3_K", "Q4_K"):
                t = "Q5_K"
            i_attn_v += 1
        elif cat == "ffn_down":
            i, n = i_ffn_down, model.n_layer
            if ftype == "Q2_K":
                t = "Q3_K"
            elif ftype == "Q2_K_S":
                if i < n // 8:
                    t = "Q4_K"
            elif ftype == "Q3_K_M":
                t = "Q5_K" if i < n // 16 else "Q4_K"
            elif ftype == "Q3_K_L":
                t = "Q5_K"
            elif ftype == "Q4_K_M":
                if _use_more_bits(i, n):
                    t = "Q6_K"
            elif ftype == "Q5_K_M" and _use_more_bits(i, n):
                t = "Q6_K"
            elif ftype == "Q4_K_S" and i < n // 8:
                t = "Q5_K"
            elif ftype in ("Q4_0", "Q5_0") and has_imatrix and i < n // 8:
                t = "Q4_1" if ftype == "Q4_0" else "Q5_1"
            i_ffn_down += 1
        elif cat == "attn_output":
            t = {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(ftype, t)
        out[name] = _fallback(t, ne[0])
    return out


def _nf4_type(name: str, ncols: int) -> str:
    """qrt's NF4 mix: every quantizable matrix of the blocks in NF4 (QLoRA's choice), the embedding and the
    output head in Q8_0 (bitsandbytes keeps those unquantized; Q8_0 is close to that at half the size)."""
    if _BLK.match(name) and ncols % BLOCK["NF4"] == 0:
        return "NF4"
    return "Q8_0" if ncols % BLOCK["Q8_0"] == 0 else "F16"
