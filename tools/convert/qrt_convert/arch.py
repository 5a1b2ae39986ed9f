"""Architectures: config.json -> GGUF hyperparameters, and HF tensor names -> GGUF tensor names.

What llama.cpp's convert_hf_to_gguf.py writes for
- LlamaForCausalLM / MistralForCausalLM (``LlamaModel``, architecture ``llama``, Q/K rows permuted to
  llama.cpp's adjacent-pair RoPE, FORMATS.md §1.4; Llama 3.1+ rope scaling as a ``rope_freqs`` tensor), and its
  subclasses SmolLM3ForCausalLM (``smollm3``) and GraniteForCausalLM (``granite``: head_dim ignored, the four
  multipliers as ``attention.scale``, ``embedding_scale``, ``residual_scale``, ``logit_scale``);
- Qwen2ForCausalLM (``qwen2``: NeoX RoPE, so no permutation; q/k/v biases) and Qwen3ForCausalLM (``qwen3``:
  q/k RMSNorm, no biases);
- Gemma3ForCausalLM (``gemma3``: every ``*norm.weight`` stored as ``1 + w``, post-attention / post-FFN norms,
  llama.cpp's defaults for what the config leaves out, sliding window, final logit soft-capping), and the text
  model of Gemma3ForConditionalGeneration (``language_model.`` dropped from names, the vision tower and
  projector left out as ``TextModel.filter_tensors`` leaves them);
- Phi3ForCausalLM (``phi3``: fused ``attn_qkv`` and gate/up ``ffn_up`` kept fused, partial rotary as
  ``rope.dimension_count``, LongRoPE as ``rope_factors_long/short`` tensors and ``rope.scaling.attn_factor``).
Keys are written in the order convert_hf_to_gguf.py writes them (``TextModel.set_gguf_parameters`` and the
model classes' overrides).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qrt import FormatError, UnsupportedError

from .config_defaults import with_defaults
from .gguf_writer import FLOAT32, KV, STRING, UINT32

#: HF architecture -> GGUF architecture
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Gemma3ForCausalLM": "gemma3",
    "Gemma3ForConditionalGeneration": "gemma3",  # the text model; the vision tower is left out
    "Phi3ForCausalLM": "phi3",
    "SmolLM3ForCausalLM": "smollm3",
    "GraniteForCausalLM": "granite",
}
#: llama.cpp's ``LlamaModel`` and its subclasses: Q/K permuted, vocab_size and rope.dimension_count written,
#: the vocabulary chosen as ``LlamaModel.set_vocab`` chooses it
LLAMA_FAMILY = ("llama", "smollm3", "granite")

_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")
_LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.o_proj.bias": "attn_output.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
}
_ARCH_LAYER_MAP = {
    "gemma3": {
        "post_attention_layernorm.weight": "post_attention_norm.weight",
        "pre_feedforward_layernorm.weight": "ffn_norm.weight",
        "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    },
    "phi3": {"self_attn.qkv_proj.weight": "attn_qkv.weight", "mlp.gate_up_proj.weight": "ffn_up.weight"},
}
_GLOBAL_MAP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_SKIP_SUFFIXES = (".rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")
# TextModel.filter_tensors: what llama.cpp leaves out of a multimodal checkpoint's text model
_MULTIMODAL_PREFIXES = (
    "mlp",
    "vit.",
    "vpm.",
    "siglip2.",
    "conformer.",
    "merger.",
    "resampler.",
    "sound_encoder.",
    "sound_projection.",
    "speech_embeddings.",
)
_MULTIMODAL_PARTS = (
    "visual.",
    "vision.",
    "audio.",
    "talker.",
    "vision_",
    "audio_",
    "token2wav.",
    "code2wav.",
    "projector.",
    "pre_mm_projector_norm",
    "image_newline",
    "view_seperator",
    "patch_embed",
    "patch_embedding",
    "patch_merger.",
    "patch_merge_mlp.",
    "model.connector.",
)


def _text_model_name(a: Architecture, hf: str) -> str | None:
    """The name llama.cpp maps for checkpoint tensor ``hf``, or None for a tensor it leaves out."""
    if not a.hf_arch.endswith("ForConditionalGeneration"):
        return hf
    if hf.startswith(_MULTIMODAL_PREFIXES) or any(part in hf for part in _MULTIMODAL_PARTS):
        return None
    return hf.replace("language_model.", "")


_REQUIRED_LAYER = (
    "attn_norm.weight",
    "attn_q.weight",
    "attn_k.weight",
    "attn_v.weight",
    "attn_output.weight",
    "ffn_norm.weight",
    "ffn_gate.weight",
    "ffn_up.weight",
    "ffn_down.weight",
)
_ARCH_REQUIRED_LAYER = {
    "qwen2": (*_REQUIRED_LAYER, "attn_q.bias", "attn_k.bias", "attn_v.bias"),
    "qwen3": (*_REQUIRED_LAYER, "attn_q_norm.weight", "attn_k_norm.weight"),
    "gemma3": (
        *_REQUIRED_LAYER,
        "attn_q_norm.weight",
        "attn_k_norm.weight",
        "post_attention_norm.weight",
        "post_ffw_norm.weight",
    ),
    "phi3": (
        "attn_norm.weight",
        "attn_qkv.weight",
        "attn_output.weight",
        "ffn_norm.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    ),
}


@dataclass
class TensorMap:
    """One GGUF tensor: where it comes from and what happens to it on the way."""

    gguf_name: str
    hf_name: str | None  #: None for generated tensors (rope_freqs)
    shape: tuple[int, ...]  #: numpy shape (rows first)
    permute_heads: int = 0  #: > 0: apply llama.cpp's Q/K permutation with this many heads
    generate: Callable[[], np.ndarray] | None = None  #: float32 data of a generated tensor
    offset: float = 0.0  #: added to every value (gemma3's norms: llama.cpp stores 1 + w)
    rows: int | None = None  #: keep only the first rows (gemma3's embedding: the tokenizer's size)


@dataclass
class Architecture:
    hf_arch: str
    arch: str  #: GGUF architecture name
    config: dict[str, Any]
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    vocab_size: int
    kvs: list[KV] = field(default_factory=list)  #: hyperparameters, in convert_hf_to_gguf.py order
    #: keys convert_hf_to_gguf.py writes before general.* (phi3's generate_extra_tensors runs first)
    early_kvs: list[KV] = field(default_factory=list)
    #: where convert_hf_to_gguf.py writes general.file_type among ``kvs`` (llama-quantize moves it to the end)
    file_type_index: int = 0

    @property
    def head_dim(self) -> int:
        if self.arch == "granite":  # GraniteModel drops head_dim from the config
            return self.n_embd // self.n_head
        default = 256 if self.arch == "gemma3" else self.n_embd // self.n_head
        return _cfg_int(self.config, ("head_dim",), required=False) or default


def _cfg_int(cfg: dict[str, Any], keys: tuple[str, ...], *, required: bool = True, lo: int = 1) -> int | None:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            v = cfg[k]
            if not isinstance(v, int) or isinstance(v, bool) or not (lo <= v < 1 << 31):
                raise FormatError(f"config.json: {k} = {v!r} is not an integer in [{lo}, 2^31)")
            return v
    if required:
        raise FormatError(f"config.json: missing {keys[0]}")
    return None


def _cfg_float(cfg: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            v = cfg[k]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise FormatError(f"config.json: {k} = {v!r} is not a finite number")
            return float(v)
    return None


def detect(config: dict[str, Any]) -> Architecture:
    """Read the hyperparameters of a supported architecture from config.json (already parsed)."""
    archs = config.get("architectures")
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise FormatError("config.json: no 'architectures' list")
    hf_arch = archs[0]
    if hf_arch not in ARCHITECTURES:
        raise UnsupportedError(
            f"config.json: architecture {hf_arch!r} is not supported (supported: {', '.join(ARCHITECTURES)})"
        )
    qc = config.get("quantization_config")
    if isinstance(qc, dict) and qc.get("quant_method") not in (None, "none"):
        raise UnsupportedError(
            f"config.json: the checkpoint is already quantized (quant_method={qc.get('quant_method')!r}); "
            "convert from the unquantized (bf16/f16/f32) checkpoint"
        )
    cfg = dict(config)
    if isinstance(cfg.get("text_config"), dict):
        cfg = {**cfg, **cfg["text_config"]}
    arch = ARCHITECTURES[hf_arch]
    cfg = with_defaults(hf_arch, cfg)
    n_layer = _cfg_int(cfg, ("n_layers", "num_hidden_layers", "n_layer", "num_layers"))
    n_embd = _cfg_int(cfg, ("hidden_size", "n_embd", "dim"))
    n_head = _cfg_int(cfg, ("num_attention_heads", "n_head", "n_heads"))
    n_head_kv = _cfg_int(cfg, ("num_key_value_heads", "n_kv_heads"), required=False) or n_head
    vocab_size = _cfg_int(cfg, ("vocab_size",))
    assert n_layer and n_embd and n_head and vocab_size
    if n_head % n_head_kv:
        raise FormatError(
            f"config.json: num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_head_kv}"
        )
    a = Architecture(hf_arch, arch, cfg, n_layer, n_embd, n_head, n_head_kv, vocab_size)
    a.kvs = _hparams(a)
    return a


def _rope_parameters(cfg: dict[str, Any]) -> dict[str, Any]:
    """``TextModel.__init__``: rope_parameters (transformers 5) or rope_scaling, with rope_theta mirrored in."""
    rp = cfg.get("rope_parameters", cfg.get("rope_scaling")) or {}
    if not isinstance(rp, dict):
        raise FormatError("config.json: rope_parameters / rope_scaling is not an object")
    rp = dict(rp)
    if "full_attention" not in rp and "sliding_attention" not in rp:
        theta = _cfg_float(
            cfg,
            ("global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta", "rotary_emb_base"),
        )
        if "rope_theta" not in rp and theta is not None:
            rp["rope_theta"] = theta
        if "rope_type" not in rp and rp.get("type") is not None:
            rp["rope_type"] = rp["type"]
        orig = cfg.get("original_max_position_embeddings")
        if "original_max_position_embeddings" not in rp and orig is not None:
            rp["original_max_position_embeddings"] = orig
        local = _cfg_float(
            cfg,
            (
                "local_rope_theta",
                "rope_local_theta",
                "rope_theta_local",
                "swa_rope_theta",
                "rope_local_base_freq",
            ),
        )
        if local is not None:
            rp["sliding_attention"] = {"rope_theta": local}
        rot = _cfg_float(cfg, ("partial_rotary_factor", "rope_pct", "rope_percent"))
        if "partial_rotary_factor" not in rp and rot is not None:
            rp["partial_rotary_factor"] = rot
    return rp


class _Keys:
    """gguf-py's GGUFWriter key semantics: a key written again keeps its place and takes the new value."""

    def __init__(self) -> None:
        self.d: dict[str, KV] = {}

    def add(self, key: str, vtype: int, value: Any) -> None:
        self.d[key] = KV(key, vtype, value)

    def list(self) -> list[KV]:
        return list(self.d.values())


def _hparams(a: Architecture) -> list[KV]:
    if a.arch == "phi3":
        return _phi3_hparams(a)
    cfg, p = a.config, a.arch
    k = _Keys()
    k.add(f"{p}.block_count", UINT32, a.n_layer)
    n_ctx = _cfg_int(
        cfg,
        (
            "max_position_embeddings",
            "n_ctx",
            "n_positions",
            "max_length",
            "max_sequence_length",
            "model_max_length",
        ),
        required=False,
    )
    if n_ctx is not None:
        k.add(f"{p}.context_length", UINT32, n_ctx)
    k.add(f"{p}.embedding_length", UINT32, a.n_embd)
    n_ff = _cfg_int(cfg, ("intermediate_size", "n_inner", "hidden_dim"))
    k.add(f"{p}.feed_forward_length", UINT32, n_ff)
    k.add(f"{p}.attention.head_count", UINT32, a.n_head)
    if _cfg_int(cfg, ("num_key_value_heads", "n_kv_heads"), required=False) is not None:
        k.add(f"{p}.attention.head_count_kv", UINT32, a.n_head_kv)

    rp = _rope_parameters(cfg)
    rope = rp.get("full_attention", rp)
    if not isinstance(rope, dict):
        raise FormatError("config.json: rope_parameters.full_attention is not an object")
    rope_type = rope.get("rope_type")
    if rope_type is not None:
        if not isinstance(rope_type, str):
            raise FormatError(f"config.json: rope_type {rope_type!r} is not a string")
        factor = _cfg_float(rope, ("factor",))
        if rope_type == "linear" and factor is not None:
            k.add(f"{p}.rope.scaling.type", STRING, "linear")
            k.add(f"{p}.rope.scaling.factor", FLOAT32, factor)
        elif rope_type == "yarn" and factor is not None:
            k.add(f"{p}.rope.scaling.type", STRING, "yarn")
            k.add(f"{p}.rope.scaling.factor", FLOAT32, factor)
            orig = _cfg_int(rope, ("original_max_position_embeddings",))
            k.add(f"{p}.rope.scaling.original_context_length", UINT32, orig)
            for src, key in (
                (("extrapolation_factor",), "yarn_ext_factor"),
                (("attention_factor", "attn_factor"), "yarn_attn_factor"),
                (("beta_fast",), "yarn_beta_fast"),
                (("beta_slow",), "yarn_beta_slow"),
            ):
                v = _cfg_float(rope, src)
                if v is not None:
                    k.add(f"{p}.rope.scaling.{key}", FLOAT32, v)
        elif rope_type in ("su", "longrope"):
            raise UnsupportedError(f"config.json: longrope RoPE scaling is not supported for {a.hf_arch}")
        # "llama3": the rope_freqs tensor (extra_tensors); "default", "dynamic": nothing to write
    theta = _cfg_float(rope, ("rope_theta",))
    if theta is not None:
        k.add(f"{p}.rope.freq_base", FLOAT32, theta)
    swa = rp.get("sliding_attention")
    if isinstance(swa, dict) and (swa_theta := _cfg_float(swa, ("rope_theta",))) is not None:
        k.add(f"{p}.rope.freq_base_swa", FLOAT32, swa_theta)
    eps = _cfg_float(cfg, ("rms_norm_eps", "norm_eps"))
    if eps is not None:
        k.add(f"{p}.attention.layer_norm_rms_epsilon", FLOAT32, eps)
    head_dim = None if a.arch == "granite" else _cfg_int(cfg, ("head_dim",), required=False)
    if head_dim is not None:
        k.add(f"{p}.attention.key_length", UINT32, head_dim)
        k.add(f"{p}.attention.value_length", UINT32, head_dim)
    a.file_type_index = len(k.d)  # TextModel.set_gguf_parameters ends with add_file_type
    if a.arch in LLAMA_FAMILY:
        k.add(f"{p}.vocab_size", UINT32, a.vocab_size)
        k.add(f"{p}.rope.dimension_count", UINT32, a.head_dim)
    if a.arch == "granite":
        for src, key in (
            ("attention_multiplier", "attention.scale"),
            ("embedding_multiplier", "embedding_scale"),
            ("residual_multiplier", "residual_scale"),
            ("logits_scaling", "logit_scale"),
        ):
            if v := _cfg_float(cfg, (src,)):  # GraniteModel skips a 0 as it skips a missing one
                k.add(f"{p}.{key}", FLOAT32, v)
    if a.arch == "gemma3":
        _gemma3_hparams(a, k, rope)
    return k.list()


def _gemma3_hparams(a: Architecture, k: _Keys, rope: dict[str, Any]) -> None:
    """``Gemma3Model.set_gguf_parameters``: llama.cpp's defaults for what config.json leaves out."""
    cfg, p = a.config, a.arch
    k.add(
        f"{p}.context_length", UINT32, _cfg_int(cfg, ("max_position_embeddings",), required=False) or 131072
    )
    k.add(f"{p}.attention.head_count", UINT32, a.n_head)
    eps = _cfg_float(cfg, ("rms_norm_eps",))
    k.add(f"{p}.attention.layer_norm_rms_epsilon", FLOAT32, 1e-6 if eps is None else eps)
    k.add(f"{p}.attention.key_length", UINT32, a.head_dim)
    k.add(f"{p}.attention.value_length", UINT32, a.head_dim)
    theta = _cfg_float(rope, ("rope_theta",))
    k.add(f"{p}.rope.freq_base", FLOAT32, 1_000_000.0 if theta is None else theta)
    if cfg.get("attn_logit_softcapping") is not None:
        raise UnsupportedError("config.json: gemma3 with attn_logit_softcapping (llama.cpp refuses it too)")
    if softcap := _cfg_float(cfg, ("final_logit_softcapping",)):
        k.add(f"{p}.final_logit_softcapping", FLOAT32, softcap)
    if cfg.get("sliding_window_pattern") != 1:
        k.add(f"{p}.attention.sliding_window", UINT32, _cfg_int(cfg, ("sliding_window",)))
    k.add(f"{p}.attention.head_count_kv", UINT32, a.n_head_kv)


def _phi3_rope(a: Architecture) -> tuple[dict[str, Any], int, int]:
    """(rope parameters, rope dimensions, original context) as ``Phi3MiniModel`` computes them."""
    rp = _rope_parameters(a.config)
    orig = _cfg_int(rp, ("original_max_position_embeddings",))
    rot = _cfg_float(rp, ("partial_rotary_factor",))
    rot = 1.0 if rot is None else rot
    if not 0.0 < rot <= 1.0:
        raise FormatError(f"config.json: partial_rotary_factor {rot} is not in (0, 1]")
    return rp, int(rot * a.n_embd) // a.n_head, orig  # type: ignore[return-value]


def _phi3_hparams(a: Architecture) -> list[KV]:
    cfg, p = a.config, a.arch
    rp, rope_dims, orig = _phi3_rope(a)
    k = _Keys()
    k.add(f"{p}.context_length", UINT32, _cfg_int(cfg, ("n_positions", "max_position_embeddings")))
    k.add(f"{p}.rope.scaling.original_context_length", UINT32, orig)
    k.add(f"{p}.embedding_length", UINT32, a.n_embd)
    k.add(f"{p}.feed_forward_length", UINT32, _cfg_int(cfg, ("intermediate_size",)))
    k.add(f"{p}.block_count", UINT32, a.n_layer)
    k.add(f"{p}.attention.head_count", UINT32, a.n_head)
    k.add(f"{p}.attention.head_count_kv", UINT32, _cfg_int(cfg, ("num_key_value_heads", "n_head_kv")))
    eps = _cfg_float(cfg, ("rms_norm_eps",))
    if eps is None:
        raise FormatError("config.json: missing rms_norm_eps")
    k.add(f"{p}.attention.layer_norm_rms_epsilon", FLOAT32, eps)
    k.add(f"{p}.rope.dimension_count", UINT32, rope_dims)
    rope = rp.get("full_attention", rp)
    theta = _cfg_float(rope, ("rope_theta",)) if isinstance(rope, dict) else None
    if theta is None:
        raise FormatError("config.json: missing rope_theta")
    k.add(f"{p}.rope.freq_base", FLOAT32, theta)
    a.file_type_index = len(k.d)
    k.add(
        f"{p}.attention.sliding_window", UINT32, _cfg_int(cfg, ("sliding_window",), required=False, lo=0) or 0
    )
    return k.list()


def _phi3_rope_factors(a: Architecture) -> list[TensorMap]:
    """``Phi3MiniModel.generate_extra_tensors``: LongRoPE factors as tensors, the attention factor as a key
    (``a.early_kvs``)."""
    rp, rope_dims, orig = _phi3_rope(a)
    long_f, short_f = rp.get("long_factor"), rp.get("short_factor")
    if not long_f:
        return []
    n_ctx = _cfg_int(a.config, ("n_positions", "max_position_embeddings"))
    assert n_ctx is not None
    scale = n_ctx / orig
    rope_type = str(rp.get("rope_type", "")).lower()
    if rope_type in ("su", "longrope"):
        attn = math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1.0 else 1.0
    elif rope_type == "yarn":
        attn = 0.1 * math.log(scale) + 1.0 if scale > 1.0 else 1.0
    else:
        raise UnsupportedError(f"config.json: phi3 rope scaling type {rope_type!r} is not supported")
    a.early_kvs = [KV(f"{a.arch}.rope.scaling.attn_factor", FLOAT32, attn)]
    out = []
    for kind, f in (("long", long_f), ("short", short_f)):
        if not isinstance(f, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in f
        ):
            raise FormatError(f"config.json: rope {kind}_factor is not a list of numbers")
        if len(f) * 2 != rope_dims or len(f) != len(long_f):
            raise FormatError(
                f"config.json: {len(f)} rope {kind} factors; {rope_dims // 2} expected "
                f"(rope dimensions {rope_dims} / 2)"
            )
        values = np.array(f, dtype=np.float32)
        out.append(TensorMap(f"rope_factors_{kind}.weight", None, (len(f),), generate=lambda v=values: v))
    return out


def _llama3_rope_freqs(a: Architecture) -> Callable[[], np.ndarray] | None:
    """``LlamaModel.generate_extra_tensors``: Llama-3.1 style rope factors."""
    rp = _rope_parameters(a.config)
    rope = rp.get("full_attention", rp)
    if (
        not isinstance(rope, dict)
        or str(rope.get("rope_type", "")).lower() != "llama3"
        or a.arch not in LLAMA_FAMILY
    ):
        return None
    base = _cfg_float(rope, ("rope_theta",)) or 10000.0
    dim = a.head_dim
    factor = _cfg_float(rope, ("factor",)) or 8.0
    low = _cfg_float(rope, ("low_freq_factor",)) or 1.0
    high = _cfg_float(rope, ("high_freq_factor",)) or 4.0
    old_ctx = _cfg_float(rope, ("original_max_position_embeddings",)) or 8192.0
    if high == low:
        raise FormatError("config.json: llama3 rope scaling with low_freq_factor == high_freq_factor")

    def make() -> np.ndarray:
        import torch  # the same float32 arithmetic as llama.cpp's converter, when torch is there

        freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        out = []
        for f in freqs:
            wavelen = 2 * math.pi / f
            if wavelen < old_ctx / high:
                out.append(1)
            elif wavelen > old_ctx / low:
                out.append(factor)
            else:
                smooth = (old_ctx / wavelen - low) / (high - low)
                out.append(1 / ((1 - smooth) / factor + smooth))
        return torch.tensor(out, dtype=torch.float32).numpy()

    return make


def map_tensors(
    a: Architecture, names: dict[str, tuple[int, ...]], gemma3_vocab_rows: int | None = None
) -> list[TensorMap]:
    """GGUF tensors for the checkpoint tensors ``names`` (HF name -> numpy shape), checked against the
    hyperparameters. Raises UnsupportedError for a tensor with no GGUF name, FormatError for missing tensors
    and shapes that do not fit. ``gemma3_vocab_rows``: how many embedding rows gemma3 keeps (llama.cpp cuts the
    rows past its tokenizer.json's tokens)."""
    out: list[TensorMap] = []
    have: set[str] = set()
    layer_map = {**_LAYER_MAP, **_ARCH_LAYER_MAP.get(a.arch, {})}
    for hf, shape in names.items():
        name = _text_model_name(a, hf)
        if name is None or name.endswith(_SKIP_SUFFIXES):
            continue
        if name in _GLOBAL_MAP:
            g = _GLOBAL_MAP[name]
        else:
            m = _LAYER.fullmatch(name)
            if not m or m.group(2) not in layer_map:
                raise UnsupportedError(f"tensor {hf!r} has no GGUF name for {a.hf_arch}")
            layer = int(m.group(1))
            if layer >= a.n_layer:
                raise FormatError(f"tensor {hf!r}: layer {layer} but config.json has {a.n_layer} layers")
            g = f"blk.{layer}.{layer_map[m.group(2)]}"
        if g in have:
            raise FormatError(f"tensor {hf!r}: a second tensor for {g}")
        tm = TensorMap(g, hf, tuple(shape))
        if a.arch == "gemma3" and hf.endswith("norm.weight"):
            tm.offset = 1.0
        if a.arch == "gemma3" and g == "token_embd.weight":
            tm.rows = gemma3_vocab_rows
        heads = 0
        if a.arch in LLAMA_FAMILY and (".attn_q." in g or ".attn_k." in g):
            heads = a.n_head if ".attn_q." in g else a.n_head_kv
            if not shape or shape[0] % (2 * heads):
                raise FormatError(
                    f"tensor {hf!r}: {shape[0] if shape else 0} rows do not split into {heads} heads of even size"
                )
        tm.permute_heads = heads
        if tm.rows is not None and shape:
            tm.rows = min(tm.rows, shape[0])  # a slice past the end cuts nothing
            tm.shape = (tm.rows, *shape[1:])
        out.append(tm)
        have.add(g)
    gen = _llama3_rope_freqs(a)
    if gen is not None:
        out.append(TensorMap("rope_freqs.weight", None, (a.head_dim // 2,), generate=gen))
        have.add("rope_freqs.weight")
    if a.arch == "phi3":
        for tm in _phi3_rope_factors(a):
            out.append(tm)
            have.add(tm.gguf_name)
    _check(a, out, have)
    return out


def _check(a: Architecture, maps: list[TensorMap], have: set[str]) -> None:
    need = ["token_embd.weight", "output_norm.weight"]
    need += [
        f"blk.{i}.{t}" for i in range(a.n_layer) for t in _ARCH_REQUIRED_LAYER.get(a.arch, _REQUIRED_LAYER)
    ]
    missing = [n for n in need if n not in have]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FormatError(f"checkpoint lacks tensors {', '.join(missing[:3])}{more}")
    shapes = {m.gguf_name: m.shape for m in maps}
    emb = shapes["token_embd.weight"]
    if len(emb) != 2 or emb[1] != a.n_embd:
        raise FormatError(f"token embedding shape {emb} does not match hidden_size {a.n_embd}")
    emb_rows = next(m.rows for m in maps if m.gguf_name == "token_embd.weight") or a.vocab_size
    if emb[0] != emb_rows:
        raise FormatError(f"token embedding has {emb[0]} rows but config.json vocab_size is {a.vocab_size}")
    if "output.weight" in shapes and shapes["output.weight"] != (a.vocab_size, a.n_embd):
        raise FormatError(f"lm_head shape {shapes['output.weight']} differs from the embedding's {emb}")
    hd = a.head_dim
    q, kv = a.n_head * hd, a.n_head_kv * hd
    for i in range(a.n_layer):
        want = {
            "attn_q.weight": (q, a.n_embd),
            "attn_k.weight": (kv, a.n_embd),
            "attn_v.weight": (kv, a.n_embd),
            "attn_qkv.weight": (q + 2 * kv, a.n_embd),
            "attn_output.weight": (a.n_embd, q),
            "attn_norm.weight": (a.n_embd,),
            "ffn_norm.weight": (a.n_embd,),
            "post_attention_norm.weight": (a.n_embd,),
            "post_ffw_norm.weight": (a.n_embd,),
            "attn_q_norm.weight": (hd,),
            "attn_k_norm.weight": (hd,),
        }
        up = shapes[f"blk.{i}.ffn_up.weight"]
        n_ff = up[0] if len(up) == 2 else -1
        if a.arch == "phi3":  # gate and up fused: 2 * n_ff rows
            n_ff = n_ff // 2 if n_ff % 2 == 0 else -1
            want["ffn_up.weight"] = (2 * n_ff, a.n_embd)
        else:
            want |= {"ffn_gate.weight": (n_ff, a.n_embd), "ffn_up.weight": (n_ff, a.n_embd)}
        want["ffn_down.weight"] = (a.n_embd, n_ff)
        for t, shape in want.items():
            if f"blk.{i}.{t}" not in shapes:
                continue
            got = shapes[f"blk.{i}.{t}"]
            if got != shape:
                raise FormatError(f"blk.{i}.{t}: shape {got} does not match the config (expected {shape})")
    for n, s in shapes.items():
        if n.endswith(".bias") and len(s) != 1:
            raise FormatError(f"{n}: a bias of shape {s}")
    if shapes["output_norm.weight"] != (a.n_embd,):
        raise FormatError(
            f"output_norm.weight: shape {shapes['output_norm.weight']} (expected ({a.n_embd},))"
        )


def permute_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute`` (FORMATS.md §1.4) on the first axis of ``w``; works on any run of
    whole heads, so a tensor can be permuted a chunk of heads at a time."""
    rows = w.shape[0]
    hd = rows // heads
    return w.reshape(heads, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
