"""Dequantization throughput per tensor type: qrt vs gguf-py (numpy), next to the machine's memory bandwidth.

    python bench/dequant.py [--rows 4096] [--cols 4096] [--reps 5]

Throughput is GB/s of float32 output written (into a preallocated array; gguf-py allocates its own). The bandwidth line is a numpy copy of a 512 MiB array
(read + write bytes / s), measured in the same run because the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import qrt

try:
    import gguf
    from gguf.constants import GGMLQuantizationType as GGMLType
except ImportError:  # gguf-py is a test/bench dependency only
    gguf = None


def best_seconds(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def copy_bandwidth(reps: int) -> float:
    src = np.ones(1 << 27, np.float32)  # 512 MiB
    dst = np.empty_like(src)
    return 2 * src.nbytes / best_seconds(lambda: np.copyto(dst, src), reps) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="qrt threads (0 = all cores)")
    args = ap.parse_args()

    x = np.random.default_rng(0).standard_normal((args.rows, args.cols)).astype(np.float32)
    out_gb = x.nbytes / 1e9
    out = np.empty_like(x)  # reused: time the kernels, not the allocator
    info = qrt.build_info()
    print(f"qrt {info['version']} isa={info['isa']}  tensor {args.rows}x{args.cols}  best of {args.reps}")
    print(f"memory bandwidth (numpy copy, read+write): {copy_bandwidth(args.reps):.1f} GB/s")
    print(f"{'type':6} {'qrt GB/s':>9} {'1 thread':>9} {'gguf-py GB/s':>13} {'qrt/gguf-py':>12}")
    for name, t in qrt.types().items():
        if not t.in_files or args.cols % t.block_size:
            continue
        raw = qrt.quantize(x, name)

        def run_qrt(threads: int, raw: np.ndarray = raw, name: str = name) -> None:
            qrt.dequantize(raw, name, x.shape, n_threads=threads, out=out)

        qrt_all = out_gb / best_seconds(lambda: run_qrt(args.threads), args.reps)
        qrt_one = out_gb / best_seconds(lambda: run_qrt(1), args.reps)
        ref = ""
        ratio = ""
        # gguf-py "dequantizes" F32 by returning a view: nothing to compare.
        if gguf is not None and name in GGMLType.__members__ and name != "F32":
            ggml_type = GGMLType[name]

            def run_gguf_py(raw: np.ndarray = raw, ggml_type: GGMLType = ggml_type) -> None:
                gguf.quants.dequantize(raw, ggml_type)

            secs = best_seconds(run_gguf_py, max(1, args.reps // 2))
            ref = f"{out_gb / secs:13.2f}"
            ratio = f"{qrt_all * secs / out_gb:11.1f}x"
        print(f"{name:6} {qrt_all:9.2f} {qrt_one:9.2f} {ref:>13} {ratio:>12}")


if __name__ == "__main__":
    main()
