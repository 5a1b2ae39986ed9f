"""Tiny random-weight Hugging Face checkpoints of the architectures people run today, built once into the test
cache, and llama.cpp's own conversion of each (the reference for qrt-convert and for the forward tests).

``tiny_checkpoint(arch)``: an HF directory (config.json, model.safetensors in float32, tokenizer files, chat
template) made with transformers from the architecture's own config class, with random weights from a fixed
seed (``initializer_range`` 0.15, norm weights perturbed so no norm is the identity) and a real tokenizer built
from llama.cpp's vocabulary files (the llama-cpp-python sdist) or the gemma-3-270m GGUF:

- ``qwen3``: Qwen3Config, the Qwen2 BPE vocabulary (tokenizer.json only; pre-tokenizer ``qwen2``), config
  vocab 151936 above the tokenizer's 151646 tokens (the vocabulary file's 151643 + 3 added; Qwen3 adds 23 more), head_dim 32 with hidden 64 / 4 heads
  (q width twice the hidden size, as Qwen3-0.6B), GQA 4/2, q/k norms, tied embeddings.
- ``gemma3``: Gemma3TextConfig / Gemma3ForCausalLM, the gemma-3-270m SentencePiece vocabulary (262144 pieces;
  tokenizer.model + tokenizer.json), head_dim 64 with hidden 64 / 4 heads / 1 KV head (270m's shape ratios),
  sliding window 16, final_logit_softcapping 30, a linear RoPE factor 8 on the global layers (Gemma 3 4B+).
  Six layers, not four: llama.cpp's gemma3 converter writes no layer pattern and its loader then assumes
  every 6th layer global (``load_swa_pattern(ml, 6)``), so with the default layer_types (5 sliding, 1 full)
  transformers and llama.cpp agree on which layers slide; with 4 layers llama.cpp would make all 4 slide.
- ``phi3``: Phi3Config, the Phi-3 SentencePiece vocabulary (tokenizer.model + tokenizer.json + added tokens;
  config vocab 32064), partial rotary 0.75 (Phi-4-mini's) and LongRoPE (short/long factors, 4k -> 128k), GQA
  4/2, untied output.
- ``smollm3``: SmolLM3Config, the Llama 3 BPE vocabulary (``llama-bpe``), 4 layers so the 4th has no RoPE,
  GQA 4/1, tied embeddings.
- ``granite``: GraniteConfig, the Llama 3 vocabulary, embedding_multiplier 12, residual_multiplier 0.22,
  attention_multiplier 1/32, logits_scaling 4 (granite-3 values, the last halved so logits stay spread).
- ``llama3``: LlamaConfig with rope_scaling llama3 (factor 32, 8k original context: Llama 3.2's), the Llama 3
  vocabulary, GQA 4/2, tied embeddings (Llama 3.2 1B/3B).

The BPE tokenizers are transformers' conversion of the vocabulary GGUF, corrected to the real model's
tokenizer.json where that conversion differs (Llama 3's ``ignore_merges`` and BOS post-processor, no
``[PADn]`` added tokens, added tokens listed in tokenizer_config.json): each is checked to hash to the
pre-tokenizer llama.cpp names for it.

``VARIANTS``: checkpoints taking other paths through the converters (transformers 4 config.json spellings,
shape-only configs, gemma3 with only tokenizer.json, Gemma3ForConditionalGeneration, phi3 at hidden 256 for the
K-quant mixes, Granite's GPT2Tokenizer class); ``tiny_checkpoint`` and ``llamacpp_gguf`` take their names too.

``llamacpp_gguf(arch, outtype)``: llama.cpp's ``convert_hf_to_gguf.py --outtype f32|f16|bf16`` of the
checkpoint (with its vendored gguf-py), cached beside it. llama.cpp converts all six and every variant.

Everything lives in ``<cache>/hf/arch-v<FIXTURE_VERSION>/``: a checkout with another fixture version builds
its own folder and never touches this one.

Needs torch, transformers, sentencepiece's protobuf module and the llama-cpp-python sdist (fetched into the
cache); callers skip when those are missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from .cache import cache_dir, file_lock

ARCHS = ("qwen3", "gemma3", "phi3", "smollm3", "granite", "llama3")
OUTTYPES = ("f32", "f16", "bf16")
FIXTURE_VERSION = "3"
_VERSIONS: dict[str, str] = {}  # per checkpoint (and its tokenizer): a bump rebuilds only that one
SEED = 1234
INIT_RANGE = 0.15

# llama.cpp's check text and the hashes it maps to these names (conversion/base.py get_vocab_base_pre)
_EXPECTED_PRE = {"qwen2": "qwen2", "llama-bpe": "llama-bpe"}

_TEMPLATES = {
    "qwen3": "Qwen-Qwen3-0.6B.jinja",
    "gemma3": None,  # the gemma-3-270m GGUF carries its own
    "phi3": "microsoft-Phi-3.5-mini-instruct.jinja",
    "smollm3": "HuggingFaceTB-SmolLM3-3B.jinja",
    "granite": "ibm-granite-granite-3.3-2B-Instruct.jinja",
    "llama3": "meta-llama-Llama-3.2-3B-Instruct.jinja",
}


def _hf_root() -> pathlib.Path:
    d = cache_dir() / "hf"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _versioned(version: str) -> pathlib.Path:
    d = _hf_root() / f"arch-v{version}"
    d.mkdir(exist_ok=True)
    return d


def _build_once(dst: pathlib.Path, version: str, build) -> pathlib.Path:
    """Build ``dst`` with ``build(tmp_dir)`` under a file lock; a marker holding ``version`` says it is done.
    The version names a parent directory too (:func:`_versioned`), so checkouts of different versions sharing
    the cache never rebuild each other's files under the other's feet; the checkpoint's own name stays plain
    (the converters derive general.name from it)."""
    marker = dst / ".qrt-fixture"
    if marker.is_file() and marker.read_text() == version:
        return dst
    with file_lock(dst.parent / f".{dst.name}.lock"):
        if marker.is_file() and marker.read_text() == version:
            return dst
        tmp = pathlib.Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}-"))
        try:
            build(tmp)
            (tmp / ".qrt-fixture").write_text(version)
            if dst.exists():
                shutil.rmtree(dst)
            os.replace(tmp, dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


# ---------------------------------------------------------------------------------------- tokenizers


def _models_dir() -> pathlib.Path:
    from .llamacpp import source_tree

    return source_tree() / "models"


def _template(arch: str) -> str | None:
    name = _TEMPLATES[arch]
    return (_models_dir() / "templates" / name).read_text(encoding="utf-8") if name else None


def _gguf_tokenizer(gguf_path: pathlib.Path, out: pathlib.Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tok.save_pretrained(out)
    (out / "special_tokens_map.json").unlink(missing_ok=True)
    _drop_added(out, lambda i, t: True)


def _template_into_config(out: pathlib.Path, keep: bool) -> None:
    """Move chat_template.jinja into tokenizer_config.json (``keep``) or drop it (another is set later)."""
    jinja = out / "chat_template.jinja"
    if keep and jinja.is_file():
        tmpl = jinja.read_text(encoding="utf-8")
        _edit_json(out / "tokenizer_config.json", lambda tc: tc.__setitem__("chat_template", tmpl))
    jinja.unlink(missing_ok=True)


def _drop_added(out: pathlib.Path, keep) -> None:
    """Remove added tokens for which ``keep(id, content)`` is false from tokenizer.json (transformers' GGUF
    conversion adds ``[PADn]`` fillers real checkpoints lack), and list the others in tokenizer_config.json's
    added_tokens_decoder as real checkpoints do (transformers 5 leaves it out; without it, its tokenizer
    classes forget which tokens were added, and so would llama.cpp's converter)."""
    tj_path, tc_path = out / "tokenizer.json", out / "tokenizer_config.json"
    tj = json.loads(tj_path.read_text(encoding="utf-8"))
    tj["added_tokens"] = [a for a in tj["added_tokens"] if keep(a["id"], a["content"])]
    vocab = tj["model"]["vocab"]
    if isinstance(vocab, dict):
        tj["model"]["vocab"] = {t: i for t, i in vocab.items() if keep(i, t)}
    tj_path.write_text(json.dumps(tj, ensure_ascii=False, indent=2), encoding="utf-8")
    tc = json.loads(tc_path.read_text(encoding="utf-8"))
    fields = ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
    tc["added_tokens_decoder"] = {str(a["id"]): {f: a[f] for f in fields} for a in tj["added_tokens"]}
    tc_path.write_text(json.dumps(tc, ensure_ascii=False, indent=2), encoding="utf-8")


def _edit_json(path: pathlib.Path, fn) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    fn(data)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def _pre_name(tok_dir: pathlib.Path) -> str | None:
    """The name llama.cpp's converter gives this tokenizer's pre-tokenizer (same hash, same text)."""
    import importlib.util

    from transformers import AutoTokenizer

    root = pathlib.Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "_qrt_pre_tokenizers", root / "tools" / "convert" / "qrt_convert" / "pre_tokenizers.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ids = AutoTokenizer.from_pretrained(str(tok_dir)).encode(mod.CHECK_TEXT)
    return mod.PRE_TOKENIZERS.get(hashlib.sha256(str(ids).encode()).hexdigest())


def _build_qwen2_tokenizer(out: pathlib.Path) -> None:
    _gguf_tokenizer(_models_dir() / "ggml-vocab-qwen2.gguf", out)
    _template_into_config(out, keep=False)
    _drop_added(out, lambda i, t: not t.startswith("[PAD"))

    def cfg(tc: dict) -> None:
        # Qwen3's tokenizer_config.json: no BOS, <|im_end|> ends a turn, <|endoftext|> pads
        tc.update(bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>", add_bos_token=False)
        tc["tokenizer_class"] = "Qwen2Tokenizer"

    _edit_json(out / "tokenizer_config.json", cfg)


def _build_llama3_tokenizer(out: pathlib.Path) -> None:
    _gguf_tokenizer(_models_dir() / "ggml-vocab-llama-bpe.gguf", out)
    _template_into_config(out, keep=False)
    _drop_added(out, lambda i, t: i < 128256)

    def tj_fix(tj: dict) -> None:
        # Llama 3's tokenizer.json: merges ignored for whole-word vocabulary hits, BOS added by the post-processor
        tj["model"]["ignore_merges"] = True
        tj["post_processor"] = {
            "type": "Sequence",
            "processors": [
                {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
                {
                    "type": "TemplateProcessing",
                    "single": [
                        {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}},
                    ],
                    "pair": [
                        {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}},
                        {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                        {"Sequence": {"id": "B", "type_id": 1}},
                    ],
                    "special_tokens": {
                        "<|begin_of_text|>": {
                            "id": "<|begin_of_text|>",
                            "ids": [128000],
                            "tokens": ["<|begin_of_text|>"],
                        }
                    },
                },
            ],
        }

    _edit_json(out / "tokenizer.json", tj_fix)

    def cfg(tc: dict) -> None:
        tc.update(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token=None)
        tc["tokenizer_class"] = "PreTrainedTokenizerFast"

    _edit_json(out / "tokenizer_config.json", cfg)


def _spm_model(gguf_path: pathlib.Path, n_pieces: int, *, dummy_prefix: bool, ids: tuple[int, int, int, int]):
    """A sentencepiece ModelProto (BPE, byte fallback) holding the first ``n_pieces`` of a GGUF vocabulary."""
    import gguf
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    r = gguf.GGUFReader(gguf_path)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    scores = r.fields["tokenizer.ggml.scores"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    m = sp_pb2.ModelProto()
    for text, score, ttype in list(zip(tokens, scores, types, strict=True))[:n_pieces]:
        piece = m.pieces.add()
        piece.piece, piece.score = text, score
        piece.type = int(ttype)  # GGUF token types use sentencepiece's numbering (NORMAL=1 ... BYTE=6)
    m.trainer_spec.model_type = sp_pb2.TrainerSpec.BPE
    m.trainer_spec.vocab_size = n_pieces
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id, m.trainer_spec.pad_id = ids
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = dummy_prefix
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    return m.SerializeToString()


def _build_gemma3_tokenizer(out: pathlib.Path) -> None:
    from .gemma3 import gemma3_270m

    src = gemma3_270m()
    # a private copy: transformers' GGUF reader then sees a directory holding only this file
    _gguf_tokenizer(src, out)
    _template_into_config(out, keep=True)
    (out / "tokenizer.model").write_bytes(_spm_model(src, 262144, dummy_prefix=False, ids=(3, 2, 1, 0)))


def _build_phi3_tokenizer(out: pathlib.Path) -> None:
    src = _models_dir() / "ggml-vocab-phi-3.gguf"
    _gguf_tokenizer(src, out)
    _template_into_config(out, keep=False)
    _drop_added(out, lambda i, t: not t.startswith("[PAD"))
    # Phi-3's tokenizer.model holds the 32000 base pieces; the chat tokens are added tokens above them
    (out / "tokenizer.model").write_bytes(_spm_model(src, 32000, dummy_prefix=True, ids=(0, 1, 2, -1)))

    def cfg(tc: dict) -> None:
        tc.update(bos_token="<s>", eos_token="<|endoftext|>", unk_token="<unk>", pad_token="<|endoftext|>")
        tc.update(add_bos_token=False, add_eos_token=False, legacy=False, tokenizer_class="LlamaTokenizer")

    _edit_json(out / "tokenizer_config.json", cfg)


_TOKENIZERS = {
    "qwen2": _build_qwen2_tokenizer,
    "llama-bpe": _build_llama3_tokenizer,
    "gemma3": _build_gemma3_tokenizer,
    "phi-3": _build_phi3_tokenizer,
}
_ARCH_TOKENIZER = {
    "qwen3": "qwen2",
    "gemma3": "gemma3",
    "phi3": "phi-3",
    "smollm3": "llama-bpe",
    "granite": "llama-bpe",
    "llama3": "llama-bpe",
}


def tokenizer_dir(name: str) -> pathlib.Path:
    """The tokenizer files (no weights) of vocabulary ``name``, built once."""

    def build(tmp: pathlib.Path) -> None:
        _TOKENIZERS[name](tmp)
        if name in _EXPECTED_PRE:
            got = _pre_name(tmp)
            if got != _EXPECTED_PRE[name]:
                raise RuntimeError(f"tokenizer {name}: llama.cpp would name its pre-tokenizer {got!r}")

    version = _VERSIONS.get(name, FIXTURE_VERSION)
    return _build_once(_versioned(version) / f"tokenizer-{name}", version, build)


# ---------------------------------------------------------------------------------------- models


def _config(arch: str):
    import transformers as tr

    common = dict(initializer_range=INIT_RANGE)
    if arch == "qwen3":
        return tr.Qwen3Config(
            vocab_size=151936,
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            max_position_embeddings=40960,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=True,
            bos_token_id=151643,
            eos_token_id=151645,
            **common,
        )
    if arch == "gemma3":
        return tr.Gemma3TextConfig(
            vocab_size=262144,
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=6,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=64,
            query_pre_attn_scalar=64,
            sliding_window=16,
            final_logit_softcapping=30.0,
            max_position_embeddings=32768,
            rms_norm_eps=1e-6,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
            },
            tie_word_embeddings=True,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
            architectures=["Gemma3ForCausalLM"],
            **common,
        )
    if arch in ("phi3", "phi3-wide", "phi3-gpt2-tokenizer"):
        wide, bpe = arch == "phi3-wide", arch == "phi3-gpt2-tokenizer"
        n_embd, n_head, rot = (256 if wide else 128), 4, 0.75
        half = int(rot * n_embd) // n_head // 2
        return tr.Phi3Config(
            vocab_size=128256 if bpe else 32064,
            hidden_size=n_embd,
            intermediate_size=512 if wide else 256,
            num_hidden_layers=4 if wide else 2,
            num_attention_heads=n_head,
            num_key_value_heads=2,
            max_position_embeddings=131072,
            original_max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            rope_parameters={
                "rope_type": "longrope",
                "rope_theta": 10000.0,
                "partial_rotary_factor": rot,
                "original_max_position_embeddings": 4096,
                "short_factor": [1.0 + 0.05 * i for i in range(half)],
                "long_factor": [1.0 + 0.5 * i for i in range(half)],
            },
            tie_word_embeddings=bpe,  # Phi-4-mini ties them
            bos_token_id=128000 if bpe else 1,
            eos_token_id=128009 if bpe else 32000,
            pad_token_id=128004 if bpe else 32000,
            **common,
        )
    if arch == "smollm3":
        return tr.SmolLM3Config(
            vocab_size=128256,
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=1,
            max_position_embeddings=65536,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0},
            tie_word_embeddings=True,
            bos_token_id=128000,
            eos_token_id=128009,
            pad_token_id=128004,
            **common,
        )
    if arch == "granite":
        return tr.GraniteConfig(
            vocab_size=128256,
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=131072,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000000.0},
            embedding_multiplier=12.0,
            residual_multiplier=0.22,
            attention_multiplier=0.03125,
            logits_scaling=4.0,
            tie_word_embeddings=True,
            bos_token_id=128000,
            eos_token_id=128009,
            **common,
        )
    if arch == "llama3":
        return tr.LlamaConfig(
            vocab_size=128256,
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=131072,
            rms_norm_eps=1e-5,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 32.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            tie_word_embeddings=True,
            bos_token_id=128000,
            eos_token_id=128009,
            **common,
        )
    if arch == "gemma3-multimodal":
        text = _config("gemma3").to_dict()
        for k in ("architectures", "model_type", "transformers_version", "dtype", "initializer_range"):
            text.pop(k, None)
        text["vocab_size"] = 262208  # Gemma 3 4B's: the image token and padding above the 262144 pieces
        vision = dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=56,
            patch_size=14,
        )
        return tr.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4, **common)
    raise ValueError(f"unknown architecture {arch!r}; one of {ARCHS}")


_OWN_WEIGHTS = (
    "phi3-wide",
    "gemma3-multimodal",
    "phi3-gpt2-tokenizer",
)  # variants made from their own config, not edited copies
_MODEL_CLASS = {
    "qwen3": "Qwen3ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "gemma3-multimodal": "Gemma3ForConditionalGeneration",
    "phi3": "Phi3ForCausalLM",
    "smollm3": "SmolLM3ForCausalLM",
    "granite": "GraniteForCausalLM",
    "llama3": "LlamaForCausalLM",
}


def _build_model(arch: str, out: pathlib.Path) -> None:
    import torch
    import transformers as tr

    cfg = _config(arch)
    torch.manual_seed(SEED)
    base = VARIANTS[arch][0] if arch in VARIANTS else arch
    model = getattr(tr, _MODEL_CLASS.get(arch, _MODEL_CLASS[base]))(cfg).to(torch.float32).eval()
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # gemma3 stores w in (1 + w): both kinds get a spread
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").unlink(missing_ok=True)

    bpe = (
        arch == "phi3-gpt2-tokenizer"
    )  # Phi-4-mini's layout: a GPT2Tokenizer tokenizer.json, no tokenizer.model
    for f in tokenizer_dir("llama-bpe" if bpe else _ARCH_TOKENIZER[base]).iterdir():
        if f.is_file() and not f.name.startswith("."):
            shutil.copy2(f, out / f.name)
    if bpe:
        _edit_json(
            out / "tokenizer_config.json", lambda tc: tc.__setitem__("tokenizer_class", "GPT2Tokenizer")
        )
    tmpl = _template(base)
    if tmpl is not None:

        def put(tc: dict) -> None:
            tc["chat_template"] = tmpl

        _edit_json(out / "tokenizer_config.json", put)


def tiny_checkpoint(arch: str) -> pathlib.Path:
    """Directory of the tiny ``arch`` HF checkpoint (built on first use, then cached); ``arch`` is one of
    :data:`ARCHS` or :data:`VARIANTS`."""
    if arch in VARIANTS:
        version = _VERSIONS.get(VARIANTS[arch][0], FIXTURE_VERSION)
        if arch in _OWN_WEIGHTS:
            return _build_once(
                _versioned(version) / f"tiny-{arch}", version, lambda tmp: _build_model(arch, tmp)
            )
        base = tiny_checkpoint(VARIANTS[arch][0])
        return _build_once(base.parent / f"tiny-{arch}", version, lambda tmp: _build_variant(arch, base, tmp))
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; one of {ARCHS + tuple(VARIANTS)}")
    version = _VERSIONS.get(arch, FIXTURE_VERSION)
    return _build_once(_versioned(version) / f"tiny-{arch}", version, lambda tmp: _build_model(arch, tmp))


# ---------------------------------------------------------------------------------------- variants


def _v4_config(cfg: dict) -> dict:
    """The config.json transformers 4 wrote (what most published checkpoints carry): rope_theta at the top,
    rope_scaling for the scaling, Gemma 3's rope_local_base_freq and sliding_window_pattern."""
    cfg = dict(cfg)
    rp = cfg.pop("rope_parameters")
    if "full_attention" in rp:
        full, local = dict(rp["full_attention"]), rp["sliding_attention"]
        cfg["rope_local_base_freq"] = local["rope_theta"]
        cfg["sliding_window_pattern"] = cfg.pop("_sliding_window_pattern", 6)
        cfg.pop("layer_types", None)
    else:
        full = dict(rp)
    cfg["rope_theta"] = full.pop("rope_theta")
    if "partial_rotary_factor" in full:
        cfg["partial_rotary_factor"] = full.pop("partial_rotary_factor")
    if "original_max_position_embeddings" in cfg:  # Phi-3 keeps it at the top, Llama 3 inside rope_scaling
        full.pop("original_max_position_embeddings", None)
    if full.get("rope_type") == "longrope":
        full["type"] = full.pop("rope_type")
    cfg["rope_scaling"] = None if full.get("rope_type") == "default" else full
    return cfg


def _sparse_config(cfg: dict) -> dict:
    """Only what fixes the tensor shapes: everything else is the config class's default."""
    keep = (
        "architectures",
        "model_type",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "vocab_size",
        "tie_word_embeddings",
    )
    return {k: v for k, v in cfg.items() if k in keep}


#: name -> (base architecture, what is changed): checkpoints that take other paths through the converters
VARIANTS = {
    "gemma3-tokenizer-json": (
        "gemma3",
        "no tokenizer.model: the BPE path, the embedding cut to the tokenizer",
    ),
    "gemma3-v4-config": ("gemma3", "transformers 4's config.json"),
    "gemma3-sparse-config": ("gemma3", "a config.json with only the shapes"),
    "phi3-v4-config": ("phi3", "transformers 4's config.json (rope_scaling type longrope)"),
    "llama3-v4-config": ("llama3", "transformers 4's config.json (rope_scaling rope_type llama3)"),
    "qwen3-sparse-config": ("qwen3", "a config.json with only the shapes"),
    "phi3-wide": (
        "phi3",
        "hidden 256, 4 layers: rows K-quants can take, so llama-quantize's per-tensor rules apply",
    ),
    "granite-gpt2-tokenizer": ("granite", "tokenizer_class GPT2Tokenizer, as Granite 3 declares it"),
    "phi3-gpt2-tokenizer": (
        "phi3",
        "Phi-4-mini's layout: a GPT2Tokenizer tokenizer.json (the Llama 3 vocabulary here), tied embeddings",
    ),
    "gemma3-bf16": ("gemma3", "weights in bf16, as published: llama.cpp widens to f32, then adds gemma's 1"),
    "gemma3-f16": ("gemma3", "weights in f16: llama.cpp adds gemma's 1 in f16"),
    "gemma3-multimodal": (
        "gemma3",
        "Gemma3ForConditionalGeneration (the 4B/12B/27B layout): a tiny SigLIP tower and projector beside the "
        "text model, text_config nested, vocab 262208",
    ),
}


def _cast_safetensors(src: pathlib.Path, dst: pathlib.Path, dtype: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    t = getattr(torch, dtype)
    save_file({k: v.to(t) for k, v in load_file(src).items()}, dst, metadata={"format": "pt"})


def _build_variant(name: str, base: pathlib.Path, out: pathlib.Path) -> None:
    cast = {"gemma3-bf16": "bfloat16", "gemma3-f16": "float16"}.get(name)
    for f in base.iterdir():
        if f.is_file() and not f.name.startswith("."):
            if f.suffix == ".safetensors" and cast:
                _cast_safetensors(f, out / f.name, cast)
                continue
            if f.suffix == ".safetensors":  # never edited: share the bytes where the file system can
                try:
                    os.link(f, out / f.name)
                    continue
                except OSError:
                    pass
            shutil.copy2(f, out / f.name)
    cfg = json.loads((out / "config.json").read_text())
    if name == "gemma3-tokenizer-json":
        (out / "tokenizer.model").unlink()
    elif name.endswith("-v4-config"):
        cfg = _v4_config(cfg)
    elif name.endswith("-sparse-config"):
        cfg = _sparse_config(cfg)
    elif name == "granite-gpt2-tokenizer":
        _edit_json(
            out / "tokenizer_config.json", lambda tc: tc.__setitem__("tokenizer_class", "GPT2Tokenizer")
        )
    if cast:
        cfg["dtype"] = cast
    (out / "config.json").write_text(json.dumps(cfg, indent=2))


def llamacpp_gguf(arch: str, outtype: str = "f32") -> pathlib.Path:
    """``convert_hf_to_gguf.py --outtype OUTTYPE`` of :func:`tiny_checkpoint` (llama.cpp's vendored converter
    and gguf-py), cached beside the checkpoint; ``arch`` may name a variant. Raises RuntimeError with the
    converter's stderr on failure."""
    from .llamacpp import source_tree

    if outtype not in OUTTYPES:
        raise ValueError(f"outtype {outtype!r}: one of {OUTTYPES}")
    hf_dir = tiny_checkpoint(arch)
    root = source_tree()
    dst = hf_dir.parent / f"{hf_dir.name}.llamacpp.{outtype}.gguf"
    if dst.is_file():
        return dst
    with file_lock(hf_dir.parent / f".{dst.name}.lock"):
        if dst.is_file():
            return dst
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        env = dict(os.environ, PYTHONPATH=str(root / "gguf-py"))
        cmd = [sys.executable, str(root / "convert_hf_to_gguf.py"), str(hf_dir), "--outtype", outtype]
        proc = subprocess.run(
            [*cmd, "--outfile", str(tmp)], capture_output=True, text=True, env=env, check=False
        )
        if proc.returncode != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            raise RuntimeError(
                f"convert_hf_to_gguf.py failed on {arch} (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
            )
        os.replace(tmp, dst)
    return dst


if __name__ == "__main__":
    for a in sys.argv[1:] or ARCHS:
        print(a, tiny_checkpoint(a), llamacpp_gguf(a, "f32"), flush=True)
