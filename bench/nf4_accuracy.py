"""NF4's packed kernels against the exact dequantization, and NF4 / Q4_0 / Q4_K_M against the float32 model.

    python bench/nf4_accuracy.py [--hf DIR] [-f TEXT] [-c 512] [--chunks 6] FILE.gguf ...

Teacher-forced over the first --chunks non-overlapping n_ctx chunks of the text, scoring the second half of each
chunk (as bench/accuracy.py): for every file, mean KL(fp32 || file) against the Hugging Face checkpoint the files
were converted from (transformers, float32, torch CPU; default the SmolLM2-135M-Instruct checkpoint in the test
cache) and top-1 agreement; and mean KL(rows || packed), where "rows" loads the file with QRT_REPACK=0 (for NF4
the tensor-level reference, bitsandbytes' dequantization bit for bit, against the same Q8_0 activations) and
"packed" with the packed kernels (for NF4 the int8 image of the codebook, format/nf4.h kNF4_I8). For the other
types both paths compute the same integer sums, combined in another float order, which (we believe) flips
some int8 roundings of later activations: their KL(rows || packed) is the floor of this measure. This is the
measurement behind kNF4_I8 (README, "NF4 in GGUF files").

With --tables, instead, the study behind the choice of the image's precision, in torch (float32 activations,
so that only the weights differ): every matrix of the checkpoint quantized to NF4 by qrt (bit-identical to
bitsandbytes), then decoded with the exact codebook and with least-squares integer images of it of 7 to 14
bits (all of them, and all but the attention inputs and the output layer, which are then exact), and the mean
KL of each against the exact decoding. The packed kernels' arithmetic is an exact integer dot product, so a
kernel with a given image computes what this decoding does, up to the activations' int8 rounding, which is
the same in the exact and the packed path.
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


# bitsandbytes' NF4 codebook (format/nf4.h kNF4).
NF4 = np.array(
    [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
     -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
     0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023,
     1.0],
    np.float32,
)  # fmt: skip


def least_squares_image(lo: int, hi: int) -> tuple[np.ndarray, float]:
    """The integer table within [lo, hi] and scale s with the least sum (table * s - NF4)^2 (a scan of the
    scales that put 1.0 near the end of the range)."""
    best = None
    for scale in np.arange(0.8 * abs(lo), 1.3 * hi, 0.01 * max(1, hi // 128)):
        t = np.clip(np.round(NF4.astype(np.float64) * scale), lo, hi)
        s = float(t @ NF4) / float(t @ t)
        err = float(((t * s - NF4) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, t, s)
    assert best is not None
    return best[1], best[2]


def table_study(hf_dir: str, chunks: list[np.ndarray], first: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    params = {n: p for n, p in model.named_parameters() if p.ndim == 2}

    def logprobs() -> list[np.ndarray]:
        with torch.no_grad():
            return [log_softmax(model(torch.tensor(c[None])).logits[0].numpy()[first:-1]) for c in chunks]

    ref = logprobs()
    codes, absmax, exact = {}, {}, {}
    for n, p in params.items():  # NF4 codes and decoded block absmax of each matrix, from qrt's quantizer
        w = p.detach().numpy()
        d = qrt.dequantize(qrt.quantize(np.ascontiguousarray(w), "NF4"), "NF4", w.shape).reshape(-1, 64)
        am = np.abs(d).max(1, keepdims=True)  # a block's largest code is +-1, so this is its absmax
        c = np.abs((d / np.where(am > 0, am, 1))[..., None] - NF4).argmin(-1)
        assert np.array_equal(NF4[c] * am, d), n
        codes[n], absmax[n], exact[n] = c, am, d.reshape(w.shape)

    def decode_with(image: np.ndarray | None, skip: tuple[str, ...] = ()) -> list[np.ndarray]:
        """Every matrix decoded with `image` (None: exactly), those whose name holds one of `skip` exactly."""
        for n, p in params.items():
            exactly = image is None or any(k in n for k in skip)
            w = exact[n] if exactly else (image[codes[n]] * absmax[n]).reshape(p.shape)
            p.data.copy_(torch.from_numpy(np.ascontiguousarray(w, np.float32)))
        return logprobs()

    ex = decode_with(None)
    print(
        f"exact NF4 decoding: KL(fp32 || exact) {np.mean([kl(r, e) for r, e in zip(ref, ex, strict=True)]):.5f}"
    )
    # the matrices qrt gives two-pass activations (model/matmul.h); SmolLM2's output is the tied embedding,
    # so the input embedding is decoded with the image too where qrt's row lookup is exact
    precise = ("q_proj", "k_proj", "v_proj", "embed_tokens", "lm_head")
    for bits in (7, 8, 9, 10, 14):
        table, s = least_squares_image(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        image = (table * s).astype(np.float32)
        rms = float(np.sqrt(((image - NF4) ** 2).mean()))
        everywhere = decode_with(image)
        mixed = decode_with(image, precise)
        print(
            f"{bits}-bit image (max {int(table.max())}, rms error {rms:.2e}): KL(exact || image) "
            f"{np.mean([kl(e, v) for e, v in zip(ex, everywhere, strict=True)]):.6f}; exact on attn_q/k/v and output "
            f"{np.mean([kl(e, v) for e, v in zip(ex, mixed, strict=True)]):.6f}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--hf", default=None, help="the HF checkpoint the files come from")
    ap.add_argument("-f", "--file", default=str(REPO / "tests" / "data" / "gpl-3.0.txt"))
    ap.add_argument("-c", "--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=6)
    ap.add_argument("--tables", action="store_true", help="the image-precision study in torch (see above)")
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
    if args.tables:
        table_study(args.hf, chunks, first)
        return
    for path in args.files:
        packed = qrt_logprobs(path, chunks, first, repack=True)
        kl_fp32 = np.mean([kl(r, p) for r, p in zip(ref, packed, strict=True)])
        top1 = np.mean([(r.argmax(-1) == p.argmax(-1)).mean() for r, p in zip(ref, packed, strict=True)])
        line = f"{pathlib.Path(path).name}: KL(fp32 || qrt) {kl_fp32:.5f}, top-1 {top1:.2%}"
        # every file also row-wise (QRT_REPACK=0): for NF4 the exact dequantization; for the others the same
        # arithmetic as the packed kernels in another float order, which gives the floor of this measure
        rows = qrt_logprobs(path, chunks, first, repack=False)
        kl_rows = np.mean([kl(r, p) for r, p in zip(ref, rows, strict=True)])
        kl_fast = np.mean([kl(e, p) for e, p in zip(rows, packed, strict=True)])
        line += f"; row-wise path KL(fp32 || rows) {kl_rows:.5f}; KL(rows || packed) {kl_fast:.6f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
