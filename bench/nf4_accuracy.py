"""NF4's packed kernels against the exact dequantization, and NF4 / Q4_0 / Q4_K_M against the float32 model.

    python bench/nf4_accuracy.py [--hf DIR] [-f TEXT] [-c 512] [--chunks 6] FILE.gguf ...

Teacher-forced over the first --chunks non-overlapping n_ctx chunks of the text, scoring the second half of each
chunk (as bench/accuracy.py): for every file, mean KL(fp32 || file) against the Hugging Face checkpoint the files
were converted from (transformers, float32, torch CPU; default the SmolLM2-135M-Instruct checkpoint in the test
cache) and top-1 agreement; for NF4 files also mean KL(exact || packed), where "exact" loads the file with
QRT_REPACK=0 (the tensor-level reference, bitsandbytes' dequantization bit for bit, against the same Q8_0
activations) and "packed" with the packed kernels (the int8 image of the codebook, format/nf4.h kNF4_I8). This
is the measurement behind kNF4_I8 (README, "NF4 in GGUF files").
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

import numpy as np

import qrt

REPO = pathlib.Path(__file__).resolve().parent.parent


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def kl(p_log: np.ndarray, q_log: np.ndarray) -> float:
    return float((np.exp(p_log) * (p_log - q_log)).sum(-1).mean())


def qrt_logprobs(path: str, chunks: list[np.ndarray], first: int, repack: bool) -> list[np.ndarray]:
    old = os.environ.get("QRT_REPACK")
    os.environ["QRT_REPACK"] = "1" if repack else "0"
    try:
        model = qrt.load(path, n_ctx=len(chunks[0]), n_threads=2)
    finally:
        if old is None:
            del os.environ["QRT_REPACK"]
        else:
            os.environ["QRT_REPACK"] = old
    return [log_softmax(model.logits(c)[first:-1]) for c in chunks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--hf", default=None, help="the HF checkpoint the files come from")
    ap.add_argument("-f", "--file", default=str(REPO / "tests" / "data" / "gpl-3.0.txt"))
    ap.add_argument("-c", "--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=6)
    args = ap.parse_args()
    if args.hf is None:
        sys.path.insert(0, str(REPO))
        from tests.support.cache import cache_dir

        args.hf = str(cache_dir() / "hf" / "SmolLM2-135M-Instruct")

    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    tok = qrt.load(args.files[0], n_ctx=args.ctx, n_threads=2)
    tokens = np.asarray(tok.tokenize(pathlib.Path(args.file).read_text(), add_bos=None), np.int64)
    n = min(len(tokens) // args.ctx, args.chunks)
    chunks = []
    for i in range(n):
        c = tokens[i * args.ctx : (i + 1) * args.ctx].copy()
        if tok.tokenizer.add_bos:
            c[0] = tok.tokenizer.bos_id
        chunks.append(c)
    first = args.ctx // 2
    hf = AutoModelForCausalLM.from_pretrained(args.hf, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = [log_softmax(hf(torch.tensor(c[None])).logits[0].float().numpy()[first:-1]) for c in chunks]
    print(
        f"{n} chunks of {args.ctx} of {pathlib.Path(args.file).name}, {n * (args.ctx - first - 1)} scored positions"
    )
    for path in args.files:
        packed = qrt_logprobs(path, chunks, first, repack=True)
        kl_fp32 = np.mean([kl(r, p) for r, p in zip(ref, packed, strict=True)])
        top1 = np.mean([(r.argmax(-1) == p.argmax(-1)).mean() for r, p in zip(ref, packed, strict=True)])
        line = f"{pathlib.Path(path).name}: KL(fp32 || qrt) {kl_fp32:.5f}, top-1 {top1:.2%}"
        with qrt.gguf.open(path) as f:
            is_nf4 = any(t.type == "NF4" for t in f.tensors.values())
        if is_nf4:
            exact = qrt_logprobs(path, chunks, first, repack=False)
            kl_exact = np.mean([kl(r, p) for r, p in zip(ref, exact, strict=True)])
            kl_fast = np.mean([kl(e, p) for e, p in zip(exact, packed, strict=True)])
            line += f"; exact path KL(fp32 || exact) {kl_exact:.5f}; KL(exact || packed) {kl_fast:.6f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
