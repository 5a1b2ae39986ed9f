"""qrt's packed NF4 GEMV against bitsandbytes' CPU gemv_4bit on the same 8192 x 8192 matrix.

    python bench/nf4_gemv.py --bench-kernels build/rel/bench_kernels [-t 2] [--rounds 3] [-k 8192]

bitsandbytes 0.50.2 (torch CPU, -t threads): W = N(0, 1) float32 of k x k, quantize_4bit(W, blocksize=64,
quant_type="nf4", compress_statistics=True) -- the NF4 that qrt stores bit for bit --, then one float32 token
through bnb.matmul_4bit(x, q.t()) (what Linear4bit runs; in 0.50.2 its gemm_4bit op, checked against W x) and
through F.gemv_4bit (timed only: without the CPU packing format its result is not W x); the best of a few
timed calls each. qrt: the C++
microbenchmark (tests/cpp/bench_kernels.cpp, a Release build with -DQRT_BUILD_TESTS=ON) on the same shape, the
packed kernel over a thread pool of -t threads (`--packed --k K --m K --threads T NF4`), which times the
kernel alone (the token's Q8_0 quantization, done once per token for all the rows, is outside). The two run
alternately, --rounds pairs; the table gives medians of weight GB/s (the file's 4.125 bits per weight for
both, so the figures compare time) and the ratio.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import time
import warnings


def bnb_gemv_s(k: int, threads: int, reps: int = 5) -> tuple[float, float]:
    """Seconds per token of bnb.matmul_4bit (what Linear4bit runs) and of F.gemv_4bit, best of reps."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes as bnb
        import bitsandbytes.functional as F
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(k, k, generator=g)
    q, state = F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    x = torch.randn(1, k, generator=g)
    with torch.no_grad():
        y = bnb.matmul_4bit(x, q.t(), quant_state=state)
        err = float((y[0] - w @ x[0]).abs().max() / (w @ x[0]).abs().max())
        assert err < 0.2, f"matmul_4bit does not compute W x (relative error {err})"
        best = [1e30, 1e30]
        for _ in range(reps):
            for i, fn in enumerate(
                (
                    lambda: bnb.matmul_4bit(x, q.t(), quant_state=state),
                    lambda: F.gemv_4bit(x, q.t(), state=state),
                )
            ):
                t0 = time.perf_counter()
                fn()
                best[i] = min(best[i], time.perf_counter() - t0)
    return best[0], best[1]


def qrt_gemv_gbs(exe: str, k: int, threads: int) -> float:
    out = subprocess.run(
        [exe, "--packed", "--k", str(k), "--m", str(k), "--threads", str(threads), "--l2-kib", "64", "NF4"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    row = next(line for line in out.splitlines() if line.startswith("NF4p"))
    return float(re.split(r"\s+", row.strip())[4])  # DRAM GB/s of the packed bytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-kernels", required=True, help="tests/cpp bench_kernels of a Release build")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-k", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    nf4_bytes = args.k * args.k * 4.125 / 8
    packed_bytes = args.k * args.k * 4.5 / 8  # what bench_kernels counts (cpu/nf4_packed.h)
    bnb, gemv, ours = [], [], []
    for _ in range(args.rounds):
        t_matmul, t_gemv = bnb_gemv_s(args.k, args.threads)
        bnb.append(nf4_bytes / t_matmul / 1e9)
        gemv.append(nf4_bytes / t_gemv / 1e9)
        # bench_kernels' GB/s counts the packed bytes: the same time on the file's bytes
        ours.append(qrt_gemv_gbs(args.bench_kernels, args.k, args.threads) * nf4_bytes / packed_bytes)
    b, gv, q = statistics.median(bnb), statistics.median(gemv), statistics.median(ours)
    print(f"NF4 GEMV {args.k} x {args.k}, {args.threads} threads, {args.rounds} alternating rounds (medians)")
    print("| | GB/s of NF4 weights | ms per GEMV |")
    print("|---|---|---|")
    print(f"| bitsandbytes matmul_4bit (one token) | {b:.3f} | {nf4_bytes / b / 1e6:.2f} |")
    print(f"| bitsandbytes F.gemv_4bit | {gv:.3f} | {nf4_bytes / gv / 1e6:.2f} |")
    print(f"| qrt packed NF4 | {q:.2f} | {nf4_bytes / q / 1e6:.2f} |")
    print(f"qrt / bitsandbytes: {q / b:.0f}x matmul_4bit, {q / gv:.0f}x gemv_4bit")


if __name__ == "__main__":
    main()
