"""The quantized KV cache against the f16 cache, qrt next to llama.cpp with the same -ctk/-ctv.

    python bench/kv_cache.py [--ctx 512,2048] [--chunks 8] [--depths 512,2048,8192] [-n 16] [--rounds 1]

The file: SmolLM2-135M-Instruct Q8_0 (llama.cpp's convert_hf_to_gguf.py --outtype f16 of the tests' bf16
checkpoint, then llama-quantize Q8_0: tests/support). Per KV type (f16, q8_0, q4_0, K and V alike):

- quality on tests/data/gpl-3.0.txt at each --ctx: perplexity and KL divergence against the same engine's
  f16-cache run (qrt: qrt.kl_divergence save_base / compare; llama.cpp: llama-perplexity
  --kl-divergence-base, then --kl-divergence), first --chunks chunks; llama.cpp always with -fa on (its
  quantized V cache needs flash attention);
- decode speed: tokens/s generating -n tokens after each --depths tokens of context (qrt-bench -d, llama-bench
  -d -fa 1), one repetition each, qrt and llama.cpp alternated --rounds times, medians.

Prints markdown tables; the memory column is the cache's bytes relative to f16 (qrt's Model.kv_bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile

import qrt
from qrt.kl_divergence import compare, save_base

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import hf_fixture, llamacpp  # noqa: E402

TEXT = REPO / "tests" / "data" / "gpl-3.0.txt"
TYPES = ["f16", "q8_0", "q4_0"]


def model_file() -> pathlib.Path:
    llama = llamacpp.ensure_built()
    f16 = hf_fixture.llamacpp_f16(hf_fixture.smollm2_hf(), llama.root)
    return llamacpp.requantize(f16, None, "Q8_0", llama=llama)


def llama_env(llama: llamacpp.LlamaCpp) -> dict:
    return {**os.environ, "LD_LIBRARY_PATH": str(llama.bin_dir)}


def quality(path: pathlib.Path, ctx: int, chunks: int, threads: int, work: pathlib.Path) -> dict:
    llama = llamacpp.ensure_built()
    text = TEXT.read_text(encoding="utf-8")
    out: dict = {}
    qbase, lbase = work / f"qrt.{ctx}.kld", work / f"llama.{ctx}.kld"
    with qrt.load(path, n_ctx=ctx, n_threads=threads, n_seq_max=1) as m:
        save_base(m, text, qbase, ctx, max_chunks=chunks)
    common = ["-m", str(path), "-c", str(ctx), "--chunks", str(chunks), "-t", str(threads), "-fa", "on"]
    subprocess.run(
        [str(llama.perplexity), *common, "-f", str(TEXT), "--kl-divergence-base", str(lbase)],
        env=llama_env(llama),
        capture_output=True,
        check=True,
    )
    for kv in TYPES:
        kv_args = ["-ctk", kv, "-ctv", kv]
        with qrt.load(path, n_ctx=ctx, n_threads=threads, n_seq_max=1, kv_type=kv) as m:
            r = compare(m, qbase)
            out["qrt", kv] = (r.ppl, r.mean_kld)
        p = subprocess.run(
            [str(llama.perplexity), *common, "--kl-divergence-base", str(lbase), "--kl-divergence", *kv_args],
            env=llama_env(llama),
            capture_output=True,
            text=True,
            check=True,
        )
        log = p.stdout + p.stderr
        ppl = float(re.search(r"Mean PPL\(Q\)\s*:\s*(-?[0-9.]+)", log).group(1))
        kld = float(re.search(r"Mean\s+KLD:\s*(-?[0-9.]+)", log).group(1))
        out["llama", kv] = (ppl, kld)
        print(f"  ctx {ctx} {kv}: qrt {out['qrt', kv]}, llama.cpp {out['llama', kv]}", file=sys.stderr)
    return out


def decode_qrt(path: pathlib.Path, kv: str, depth: int, n: int, threads: int) -> float:
    cmd = [sys.executable, "-m", "qrt.cli.bench", "-m", str(path), "-p", "0", "-n", str(n), "-r", "1"]
    cmd += ["-d", str(depth), "-ctk", kv, "-ctv", kv, "-t", str(threads), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(json.loads(r.stdout)[0]["tokens_per_s"])


def decode_llama(path: pathlib.Path, kv: str, depth: int, n: int, threads: int) -> float:
    llama = llamacpp.ensure_built()
    cmd = [str(llama.bench), "-m", str(path), "-p", "0", "-n", str(n), "-r", "1", "-d", str(depth)]
    cmd += ["-ctk", kv, "-ctv", kv, "-fa", "1", "-t", str(threads), "-o", "json"]
    r = subprocess.run(cmd, env=llama_env(llama), capture_output=True, text=True, check=True)
    return float(json.loads(r.stdout)[0]["avg_ts"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ctx", default="512,2048", help="perplexity contexts")
    ap.add_argument("--chunks", type=int, default=8, help="perplexity chunks per context")
    ap.add_argument("--depths", default="512,2048,8192", help="decode after this many tokens of context")
    ap.add_argument("-n", type=int, default=16, help="tokens generated per decode test")
    ap.add_argument("--rounds", type=int, default=1, help="alternating qrt / llama.cpp rounds (medians)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    path = model_file()
    print(f"model: {path}", file=sys.stderr)

    sizes = {}
    for kv in TYPES:
        with qrt.load(path, n_ctx=4096, n_seq_max=1, kv_type=kv) as m:
            sizes[kv] = m.kv_bytes
    if not args.skip_quality:
        with tempfile.TemporaryDirectory() as tmp:
            for ctx in (int(c) for c in args.ctx.split(",")):
                q = quality(path, ctx, args.chunks, args.threads, pathlib.Path(tmp))
                print(f"\nPerplexity of gpl-3.0.txt, ctx {ctx}, first {args.chunks} chunks; KL against the")
                print("same engine's f16-cache run; memory: the cache's bytes relative to f16\n")
                print(
                    "| KV type | memory | qrt PPL | qrt ΔPPL | qrt KL | llama.cpp PPL | llama.cpp ΔPPL | llama.cpp KL |"
                )
                print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
                for kv in TYPES:
                    (qp, qk), (lp, lk) = q["qrt", kv], q["llama", kv]
                    qd = 100 * (qp / q["qrt", "f16"][0] - 1)
                    ld = 100 * (lp / q["llama", "f16"][0] - 1)
                    print(
                        f"| {kv} | {sizes[kv] / sizes['f16']:.3f}x | {qp:.4f} | {qd:+.2f}% | {qk:.5f} | "
                        f"{lp:.4f} | {ld:+.2f}% | {lk:.5f} |",
                        flush=True,
                    )
    if not args.skip_speed:
        depths = [int(d) for d in args.depths.split(",")]
        speed: dict = {}
        for _ in range(args.rounds):
            for depth in depths:
                for kv in TYPES:
                    speed.setdefault(("qrt", kv, depth), []).append(
                        decode_qrt(path, kv, depth, args.n, args.threads)
                    )
                    speed.setdefault(("llama", kv, depth), []).append(
                        decode_llama(path, kv, depth, args.n, args.threads)
                    )
                    print(
                        f"  d{depth} {kv}: {speed['qrt', kv, depth][-1]:.2f} / "
                        f"{speed['llama', kv, depth][-1]:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
        print(
            f"\nDecode tokens/s (tg{args.n} after d tokens of context), {args.threads} threads, medians of "
            f"{args.rounds} alternating rounds\n"
        )
        print("| KV type | d | qrt | llama.cpp | qrt / llama.cpp | qrt vs its f16 cache |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for depth in depths:
            for kv in TYPES:
                q = statistics.median(speed["qrt", kv, depth])
                lc = statistics.median(speed["llama", kv, depth])
                f = statistics.median(speed["qrt", "f16", depth])
                print(f"| {kv} | {depth} | {q:.2f} | {lc:.2f} | {q / lc:.2f} | {q / f:.2f} |", flush=True)


if __name__ == "__main__":
    main()
