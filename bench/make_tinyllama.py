"""The 1.1B benchmark file: a TinyLlama-shaped llama with random weights, as Q4_K_M GGUF (cached).

    python bench/make_tinyllama.py [--type Q4_K_M] [--force]     # prints the .gguf path

Shape (TinyLlama-1.1B): hidden 2048, intermediate 5632, 22 layers, 32 heads, 4 KV heads, vocab 32000, as
transformers' LlamaConfig (checked by building one). Weights are N(0, 0.05) in bf16 (the test fixtures'
random_llama), written straight to safetensors with numpy (a torch model of 1.1B float32 parameters would take
4.4 GB for nothing); the tokenizer is llama.cpp's llama-spm vocabulary (32000 pieces, from
llama.cpp's models/ in its sdist, as the qrt-convert test fixture builds it). qrt-convert turns it into the GGUF with
llama-quantize's Q4_K_M mix (byte-identical to llama.cpp's convert + llama-quantize), cached as
``<test cache>/bench/tinyllama-1.1B-random.<TYPE>.gguf``; the checkpoint itself is deleted afterwards.
Only speed is measured with this file: its text is noise.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHAPE = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    vocab_size=32000,
)


def output_path(qtype: str) -> pathlib.Path:
    from tests.support.cache import cache_dir

    return cache_dir() / "bench" / f"tinyllama-1.1B-random.{qtype}.gguf"


def make(qtype: str = "Q4_K_M", force: bool = False) -> pathlib.Path:
    from transformers import LlamaConfig

    from tests.support.hf_fixture import random_llama, spm_llama_hf

    out = output_path(qtype)
    if out.is_file() and not force:
        return out
    cfg = LlamaConfig(**SHAPE)  # what transformers would build; its head_dim is 64
    assert cfg.hidden_size // cfg.num_attention_heads == 64
    from tests.support.llamacpp import vocab_dir

    spm = spm_llama_hf(vocab_dir())  # tokenizer.model with the 32000 llama pieces
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".tinyllama-") as tmp:
        ckpt = pathlib.Path(tmp) / "hf"
        random_llama(
            ckpt,
            vocab_size=cfg.vocab_size,
            n_embd=cfg.hidden_size,
            n_layer=cfg.num_hidden_layers,
            n_head=cfg.num_attention_heads,
            n_head_kv=cfg.num_key_value_heads,
            n_ff=cfg.intermediate_size,
            seed=0,
            extra_config={"max_position_embeddings": 2048},
        )
        for name in ("tokenizer.model", "tokenizer_config.json", "tokenizer.json"):
            shutil.copy(spm / name, ckpt / name)
        part = pathlib.Path(tmp) / out.name
        subprocess.run(
            [
                sys.executable,
                "-m",
                "qrt_convert",
                str(ckpt),
                "-o",
                str(part),
                "--type",
                qtype,
                "--no-progress",
            ],
            check=True,
            cwd=REPO / "tools" / "convert",
        )
        part.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--type", default="Q4_K_M", help="qrt-convert type (default Q4_K_M)")
    ap.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = ap.parse_args(argv)
    print(make(args.type, args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
