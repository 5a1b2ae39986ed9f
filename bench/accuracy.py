"""How close qrt's logits are to Hugging Face transformers (float32, torch CPU) on the same GGUF file.

    python bench/accuracy.py [-m MODEL.gguf] [-f TEXT] [-c 512]

Teacher-forced over the non-overlapping n_ctx chunks of the text (llama.cpp's perplexity chunking), scoring
the second half of each chunk: mean KL(HF || qrt), top-1 agreement, and both perplexities. transformers
dequantizes the GGUF itself (``from_pretrained(dir, gguf_file=...)``); both sides get the same token ids,
from qrt's tokenizer (= llama.cpp's).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

import qrt

REPO = pathlib.Path(__file__).resolve().parent.parent


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=None, help="GGUF file (default: the SmolLM2 test fixture)")
    ap.add_argument("-f", "--file", default=str(REPO / "tests" / "data" / "gpl-3.0.txt"))
    ap.add_argument("-c", "--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=0, help="limit the number of chunks (0 = all)")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    if args.model is None:
        sys.path.insert(0, str(REPO))
        from tests.support.smollm2 import smollm2_q4_1

        args.model = str(smollm2_q4_1())
    path = pathlib.Path(args.model)
    model = qrt.load(path, n_ctx=args.ctx)
    hf = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    tokens = np.asarray(model.tokenize(pathlib.Path(args.file).read_text(), add_bos=None), np.int64)
    n_chunks = len(tokens) // args.ctx
    if args.chunks:
        n_chunks = min(n_chunks, args.chunks)
    first = args.ctx // 2
    kl_sum = agree = count = 0
    nll_hf = nll_qrt = 0.0
    t_qrt = t_hf = 0.0
    for i in range(n_chunks):
        chunk = tokens[i * args.ctx : (i + 1) * args.ctx].copy()
        if model.tokenizer.add_bos:
            chunk[0] = model.tokenizer.bos_id
        t0 = time.perf_counter()
        ours = log_softmax(model.logits(chunk)[first : args.ctx - 1])
        t1 = time.perf_counter()
        with torch.no_grad():
            theirs = hf(torch.tensor(chunk[None])).logits[0].float().numpy()
        t_hf += time.perf_counter() - t1
        t_qrt += t1 - t0
        theirs = log_softmax(theirs[first : args.ctx - 1])
        targets = chunk[first + 1 :]
        rows = np.arange(len(targets))
        kl_sum += float((np.exp(theirs) * (theirs - ours)).sum())
        agree += int((theirs.argmax(-1) == ours.argmax(-1)).sum())
        nll_hf -= float(theirs[rows, targets].sum())
        nll_qrt -= float(ours[rows, targets].sum())
        count += len(targets)
        print(f"chunk {i + 1}/{n_chunks}: mean KL so far {kl_sum / count:.3g}", file=sys.stderr)
    print(f"model {path.name}, {n_chunks} chunks of {args.ctx}, {count} scored positions")
    print(f"mean KL(HF || qrt)   {kl_sum / count:.3g}")
    print(f"top-1 agreement      {agree / count:.2%}")
    print(f"perplexity HF / qrt  {np.exp(nll_hf / count):.4f} / {np.exp(nll_qrt / count):.4f}")
    print(f"seconds HF / qrt     {t_hf:.1f} / {t_qrt:.1f}")


if __name__ == "__main__":
    main()
