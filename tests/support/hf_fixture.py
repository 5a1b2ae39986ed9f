"""Hugging Face checkpoints for the converter tests, built once into the test cache.

``smollm2_hf()``: SmolLM2-135M-Instruct as a plain ``LlamaForCausalLM`` checkpoint (bf16 safetensors,
config.json, tokenizer.json, tokenizer_config.json with the chat template), made from the Q4_1 GGUF with
transformers (``from_pretrained(dir, gguf_file=...)``). transformers' GGUF tokenizer conversion drops
SmolLM2's digit split, so the saved tokenizer.json gets SmolLM2's real pre-tokenizer back:
Sequence[Digits(individual_digits=true), ByteLevel(add_prefix_space=false, trim_offsets=true,
use_regex=true)].

``spm_llama_hf()``: a small random-weight llama (2 layers, hidden 64) whose tokenizer.model is assembled with
sentencepiece's model proto from llama.cpp's models/ggml-vocab-llama-spm.gguf (the sdist) (pieces, scores, types),
with Llama-2's tokenizer_config.json settings: converting it must give that vocabulary file's tokenizer.

``write_safetensors(path, tensors)``: a plain safetensors writer (name -> (dtype, shape, raw bytes)), for the
fixtures and for hand-made bad files.

``llamacpp_f16(hf_dir)``: llama.cpp's own ``convert_hf_to_gguf.py --outtype f16`` of a checkpoint (the
reference the converter is compared with), cached beside it.

Both need torch + transformers (and llama.cpp's source tree for the second); callers skip when missing.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from .cache import cache_dir, file_lock

SMOLLM2_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    ],
}

FIXTURE_VERSION = "1"


def _hf_root() -> pathlib.Path:
    d = cache_dir() / "hf"
    d.mkdir(parents=True, exist_ok=True)
    return d


def smollm2_hf() -> pathlib.Path:
    """Directory of the SmolLM2 bf16 HF checkpoint (built on first use, then cached)."""
    from .smollm2 import smollm2_q4_1

    dst = _hf_root() / "SmolLM2-135M-Instruct"
    marker = dst / ".qrt-fixture"
    if marker.is_file() and marker.read_text() == FIXTURE_VERSION:
        return dst
    gguf_path = smollm2_q4_1()
    with file_lock(_hf_root() / ".smollm2.lock"):
        if marker.is_file() and marker.read_text() == FIXTURE_VERSION:
            return dst
        tmp = pathlib.Path(tempfile.mkdtemp(dir=_hf_root(), prefix=".smollm2-"))
        try:
            _build_smollm2(gguf_path, tmp)
            (tmp / ".qrt-fixture").write_text(FIXTURE_VERSION)
            if dst.exists():
                shutil.rmtree(dst)
            os.replace(tmp, dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _build_smollm2(gguf_path: pathlib.Path, out: pathlib.Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src_dir, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    cfg = LlamaConfig(
        **{
            k: v
            for k, v in loaded.config.to_dict().items()
            if k not in ("architectures", "quantization_config", "_name_or_path")
        }
    )
    cfg.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [m for m in missing if m != "lm_head.weight"]:
        raise RuntimeError(f"SmolLM2 fixture: state dict mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model = model.to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)

    tj = out / "tokenizer.json"
    data = json.loads(tj.read_text(encoding="utf-8"))
    data["pre_tokenizer"] = SMOLLM2_PRE_TOKENIZER
    tj.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def llamacpp_f16(hf_dir: pathlib.Path, llama_root: pathlib.Path) -> pathlib.Path:
    """``convert_hf_to_gguf.py --outtype f16`` of ``hf_dir`` with llama.cpp's vendored converter (cached)."""
    marker = hf_dir / ".qrt-fixture"
    version = f".v{marker.read_text().strip()}" if marker.is_file() else ""
    dst = hf_dir.parent / f"{hf_dir.name}{version}.llamacpp.f16.gguf"
    if dst.is_file():
        return dst
    with file_lock(hf_dir.parent / f".{dst.name}.lock"):
        if dst.is_file():
            return dst
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        env = dict(os.environ, PYTHONPATH=str(llama_root / "gguf-py"))
        cmd = [
            sys.executable,
            str(llama_root / "convert_hf_to_gguf.py"),
            str(hf_dir),
            "--outtype",
            "f16",
            "--outfile",
            str(tmp),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"convert_hf_to_gguf.py failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
        os.replace(tmp, dst)
    return dst


# ---------------------------------------------------------------------------------------- safetensors


def write_safetensors(
    path: pathlib.Path, tensors: dict[str, tuple[str, list[int], bytes]], metadata: dict | None = None
) -> None:
    """Write ``tensors`` (name -> (safetensors dtype, shape, bytes)) in safetensors layout, in name order."""
    header: dict = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    pos = 0
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, pos + len(data)]}
        pos += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for name in sorted(tensors):
            f.write(tensors[name][2])


def bf16_bytes(a) -> bytes:
    """float32 array -> bf16 bytes (round to nearest even), as torch's .to(torch.bfloat16) rounds."""
    import numpy as np

    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r.tobytes()


def random_llama(
    out: pathlib.Path,
    *,
    vocab_size: int,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    seed: int = 0,
    tie: bool = False,
    arch: str = "LlamaForCausalLM",
    extra_config: dict | None = None,
) -> None:
    """A small llama-shaped checkpoint with random bf16 weights (config.json + model.safetensors)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    hd = n_embd // n_head

    def w(*shape: int) -> tuple[str, list[int], bytes]:
        return ("BF16", list(shape), bf16_bytes(rng.standard_normal(shape, dtype=np.float32) * 0.05))

    def ones(n: int) -> tuple[str, list[int], bytes]:
        return ("BF16", [n], bf16_bytes(1.0 + 0.1 * rng.standard_normal(n, dtype=np.float32)))

    t = {"model.embed_tokens.weight": w(vocab_size, n_embd), "model.norm.weight": ones(n_embd)}
    if not tie:
        t["lm_head.weight"] = w(vocab_size, n_embd)
    for i in range(n_layer):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = ones(n_embd)
        t[p + "post_attention_layernorm.weight"] = ones(n_embd)
        t[p + "self_attn.q_proj.weight"] = w(n_head * hd, n_embd)
        t[p + "self_attn.k_proj.weight"] = w(n_head_kv * hd, n_embd)
        t[p + "self_attn.v_proj.weight"] = w(n_head_kv * hd, n_embd)
        t[p + "self_attn.o_proj.weight"] = w(n_embd, n_head * hd)
        t[p + "mlp.gate_proj.weight"] = w(n_ff, n_embd)
        t[p + "mlp.up_proj.weight"] = w(n_ff, n_embd)
        t[p + "mlp.down_proj.weight"] = w(n_embd, n_ff)
        if arch == "Qwen2ForCausalLM":
            for x, n in (("q", n_head), ("k", n_head_kv), ("v", n_head_kv)):
                t[p + f"self_attn.{x}_proj.bias"] = (
                    "BF16",
                    [n * hd],
                    bf16_bytes(rng.standard_normal(n * hd, dtype=np.float32) * 0.05),
                )
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "model.safetensors", t, {"format": "pt"})
    config = {
        "architectures": [arch],
        "model_type": "qwen2" if arch == "Qwen2ForCausalLM" else "llama",
        "hidden_size": n_embd,
        "intermediate_size": n_ff,
        "num_hidden_layers": n_layer,
        "num_attention_heads": n_head,
        "num_key_value_heads": n_head_kv,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "vocab_size": vocab_size,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": tie,
        "torch_dtype": "bfloat16",
    }
    config.update(extra_config or {})
    (out / "config.json").write_text(json.dumps(config, indent=2))


# ---------------------------------------------------------------------------------------- SentencePiece llama

SPM_VOCAB = "ggml-vocab-llama-spm.gguf"
SPM_FIXTURE_VERSION = "1"


def spm_llama_hf(vocab_dir: pathlib.Path) -> pathlib.Path:
    """Directory of the sentencepiece llama fixture (built on first use, then cached)."""
    dst = _hf_root() / "llama-spm-tiny"
    marker = dst / ".qrt-fixture"
    if marker.is_file() and marker.read_text() == SPM_FIXTURE_VERSION:
        return dst
    with file_lock(_hf_root() / ".llama-spm.lock"):
        if marker.is_file() and marker.read_text() == SPM_FIXTURE_VERSION:
            return dst
        tmp = pathlib.Path(tempfile.mkdtemp(dir=_hf_root(), prefix=".llama-spm-"))
        try:
            _build_spm(vocab_dir / SPM_VOCAB, tmp)
            (tmp / ".qrt-fixture").write_text(SPM_FIXTURE_VERSION)
            if dst.exists():
                shutil.rmtree(dst)
            os.replace(tmp, dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _build_spm(vocab_gguf: pathlib.Path, out: pathlib.Path) -> None:
    import gguf
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    r = gguf.GGUFReader(vocab_gguf)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    scores = r.fields["tokenizer.ggml.scores"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    m = sp_pb2.ModelProto()
    for text, score, ttype in zip(tokens, scores, types, strict=True):
        piece = m.pieces.add()
        piece.piece = text
        piece.score = score
        piece.type = int(ttype)  # GGUF token types use sentencepiece's numbering (NORMAL=1 ... BYTE=6)
    m.trainer_spec.model_type = sp_pb2.TrainerSpec.BPE
    m.trainer_spec.vocab_size = len(tokens)
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id, m.trainer_spec.pad_id = 0, 1, 2, -1
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = True
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.model").write_bytes(m.SerializeToString())

    random_llama(out, vocab_size=len(tokens), n_embd=64, n_layer=2, n_head=4, n_head_kv=4, n_ff=128)
    # Llama-2's tokenizer_config.json settings, and the added_tokens of its tokenizer.json (what names the
    # special tokens for gguf-py's SpecialVocab)
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "add_bos_token": True,
                "add_eos_token": False,
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": None,
                "legacy": False,
                "tokenizer_class": "LlamaTokenizer",
            },
            indent=2,
        )
    )
    added = [
        {
            "id": i,
            "content": c,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, c in enumerate(("<unk>", "<s>", "</s>"))
    ]
    (out / "tokenizer.json").write_text(json.dumps({"version": "1.0", "added_tokens": added}, indent=2))
