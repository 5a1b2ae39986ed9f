"""Random-weight GGUF files of the architectures beyond llama, at the widths of real small models, for
bench/compare.py: llama.cpp's convert_hf_to_gguf.py (f16) then llama-quantize Q4_K_M, cached in the test cache.

    python bench/make_arch.py [qwen3 phi3 smollm3 granite llama3] [--layers 8]   # prints the paths

Each is its tests/support/hf_arch.py checkpoint (the architecture's own transformers config class, its real
tokenizer) widened to a real model's hidden size, FFN, heads and vocabulary, with fewer layers (--layers) so
that a file takes a minute to make; per-layer work, which is what the speed ratio measures, is the real model's:

    qwen3    Qwen3-0.6B       hidden 1024, FFN 3072, 16 heads / 8 KV, head_dim 128, vocab 151936
    phi3     Phi-4-mini       hidden 3072, FFN 8192, 24 heads / 8 KV, partial rotary 0.75, vocab 32064
    smollm3  SmolLM3-3B       hidden 2048, FFN 11008, 16 heads / 4 KV, vocab 128256
    granite  Granite-3.3-2B   hidden 2048, FFN 8192, 32 heads / 8 KV, vocab 128256
    llama3   Llama-3.2-1B     hidden 2048, FFN 8192, 32 heads / 8 KV, vocab 128256

(phi3 keeps the Phi-3 SentencePiece vocabulary of its fixture, 32064 tokens; gemma3 is benchmarked on the real
gemma-3-270m file.)
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WIDTHS = {
    "qwen3": dict(hidden_size=1024, intermediate_size=3072, num_attention_heads=16, num_key_value_heads=8, head_dim=128),
    "phi3": dict(hidden_size=3072, intermediate_size=8192, num_attention_heads=24, num_key_value_heads=8),
    "smollm3": dict(hidden_size=2048, intermediate_size=11008, num_attention_heads=16, num_key_value_heads=4),
    "granite": dict(hidden_size=2048, intermediate_size=8192, num_attention_heads=32, num_key_value_heads=8),
    "llama3": dict(hidden_size=2048, intermediate_size=8192, num_attention_heads=32, num_key_value_heads=8, head_dim=64),
}  # fmt: skip
FORMAT_VERSION = "1"


def output_path(arch: str, layers: int) -> pathlib.Path:
    from tests.support.cache import cache_dir

    return cache_dir() / "bench" / f"{arch}-bench-L{layers}.v{FORMAT_VERSION}.Q4_K_M.gguf"


def _checkpoint(arch: str, layers: int, out: pathlib.Path) -> None:
    import torch
    import transformers as tr

    from tests.support import hf_arch

    cfg = hf_arch._config(arch)
    fields = {**cfg.to_dict(), **WIDTHS[arch], "num_hidden_layers": layers, "initializer_range": 0.02}
    for per_layer in ("layer_types", "no_rope_layers"):  # the class derives them for the new depth
        fields.pop(per_layer, None)
    if arch == "phi3":  # LongRoPE factors: one per rotated pair of the wider head
        rope = dict(fields["rope_parameters"])
        half = (
            int(rope["partial_rotary_factor"] * fields["hidden_size"]) // fields["num_attention_heads"] // 2
        )
        rope["short_factor"] = [1.0 + 0.05 * i for i in range(half)]
        rope["long_factor"] = [1.0 + 0.5 * i for i in range(half)]
        fields["rope_parameters"] = rope
    cfg = type(cfg)(**fields)
    torch.manual_seed(hf_arch.SEED)
    model = getattr(tr, hf_arch._MODEL_CLASS[arch])(cfg).to(torch.bfloat16).eval()
    model.save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").unlink(missing_ok=True)
    for f in hf_arch.tokenizer_dir(hf_arch._ARCH_TOKENIZER[arch]).iterdir():
        if f.is_file() and not f.name.startswith("."):
            shutil.copy2(f, out / f.name)


def make(arch: str, layers: int = 8) -> pathlib.Path:
    """The cached Q4_K_M bench file of ``arch`` (made on first use)."""
    from tests.support import llamacpp

    out = output_path(arch, layers)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    root = llamacpp.source_tree()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{arch}-") as tmp:
        hf, f16 = pathlib.Path(tmp) / "hf", pathlib.Path(tmp) / "f16.gguf"
        _checkpoint(arch, layers, hf)
        env = dict(os.environ, PYTHONPATH=str(root / "gguf-py"))
        cmd = [sys.executable, str(root / "convert_hf_to_gguf.py"), str(hf), "--outtype", "f16"]
        subprocess.run([*cmd, "--outfile", str(f16)], check=True, env=env, capture_output=True)
        llamacpp.requantize(f16, out, "Q4_K_M")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("archs", nargs="*", default=list(WIDTHS), help=f"default: {' '.join(WIDTHS)}")
    ap.add_argument("--layers", type=int, default=8)
    args = ap.parse_args()
    for arch in args.archs:
        print(make(arch, args.layers), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
