"""What transformers 5's config classes fill in when config.json leaves a field out.

llama.cpp's converter reads config.json through ``AutoConfig``, so these defaults end up in its GGUF files;
they are mirrored here (transformers 5.23) so a sparse config converts the same way.
"""

from __future__ import annotations

from typing import Any

CONFIG_DEFAULTS: dict[str, dict[str, Any]] = {
    "LlamaForCausalLM": {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-06,
        "head_dim": "n_embd/n_head",
        "num_key_value_heads": "n_head",
    },
    "MistralForCausalLM": {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-06,
        "head_dim": "n_embd/n_head",
    },
    "Qwen2ForCausalLM": {
        "vocab_size": 151936,
        "hidden_size": 4096,
        "intermediate_size": 22016,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-06,
    },
    "Qwen3ForCausalLM": {
        "vocab_size": 151936,
        "hidden_size": 4096,
        "intermediate_size": 22016,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-06,
        "head_dim": 128,
    },
    "Gemma3ForCausalLM": {
        "vocab_size": 262208,
        "hidden_size": 2304,
        "intermediate_size": 9216,
        "num_hidden_layers": 26,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-06,
        "head_dim": 256,
        "sliding_window": 4096,
    },
    "Phi3ForCausalLM": {
        "vocab_size": 32064,
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": "n_head",
        "max_position_embeddings": 4096,
        "original_max_position_embeddings": 4096,
        "rms_norm_eps": 1e-05,
    },
    "SmolLM3ForCausalLM": {
        "vocab_size": 128256,
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 4,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-06,
    },
    "GraniteForCausalLM": {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": "n_head",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-06,
        "embedding_multiplier": 1.0,
        "residual_multiplier": 1.0,
        "attention_multiplier": 1.0,
        "logits_scaling": 1.0,
    },
}
_DEFAULT_ROPE_THETA = 10000.0
CONFIG_DEFAULTS["Gemma3ForConditionalGeneration"] = CONFIG_DEFAULTS["Gemma3ForCausalLM"]  # text_config's
#: (global, sliding-window) RoPE bases of the config classes whose defaults are not 10000 / none
_ROPE_THETA_DEFAULTS = {
    "Gemma3ForCausalLM": (1_000_000.0, 10000.0),
    "SmolLM3ForCausalLM": (2_000_000.0, None),
}
_ROPE_THETA_DEFAULTS["Gemma3ForConditionalGeneration"] = _ROPE_THETA_DEFAULTS["Gemma3ForCausalLM"]


def with_defaults(hf_arch: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` (config.json, text_config merged in) with the config class's default for each missing field."""
    out = dict(cfg)
    for k, v in CONFIG_DEFAULTS[hf_arch].items():
        if out.get(k) is not None:
            continue
        if v == "n_head":
            v = out.get("num_attention_heads")
        elif v == "n_embd/n_head":
            h, n = out.get("hidden_size"), out.get("num_attention_heads")
            v = h // n if isinstance(h, int) and isinstance(n, int) and n > 0 else None
        out[k] = v
    rp = out.get("rope_parameters", out.get("rope_scaling"))
    has_theta = out.get("rope_theta") is not None or (isinstance(rp, dict) and "rope_theta" in rp)
    theta, local = _ROPE_THETA_DEFAULTS.get(hf_arch, (_DEFAULT_ROPE_THETA, None))
    if not has_theta:
        out["rope_theta"] = theta
    has_local = isinstance(rp, dict) and ("sliding_attention" in rp or "full_attention" in rp)
    if local is not None and not has_local and out.get("rope_local_base_freq") is None:
        out["rope_local_base_freq"] = local
    return out
