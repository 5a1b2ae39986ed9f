"""qrt-bench: prompt-processing and generation speed of a GGUF model, measured the way llama-bench does.

pp<P>: a fresh context processes a P-token prompt in batches of ``--batch-size`` (only the last position's
logits are computed, as llama-bench's pp); tg<N>: a fresh context generates N tokens one at a time, each a
full decode step with logits, ignoring what the model would say (no sampling, no EOS). Token ids are
random, as llama-bench's. ``-d`` D runs each test after D tokens of context (llama-bench's depth: evaluated
before the timer starts, every repetition). Every test is run once to warm up, then ``-r`` times; tokens/s is the mean over
the repetitions of tokens / seconds (llama-bench's ``avg_ts``), with its standard deviation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from qrt.cli import CACHE_TYPES


def _physical_cores() -> int:
    """Cores, not hardware threads (llama-bench's default thread count); falls back to os.cpu_count()."""
    try:
        seen = set()
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            phys = core = None
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    phys = value.strip()
                elif key == "core id":
                    core = value.strip()
                elif not line.strip():
                    if core is not None:
                        seen.add((phys, core))
                    phys = core = None
            if core is not None:
                seen.add((phys, core))
        if seen:
            return len(seen)
    except OSError:
        pass
    return os.cpu_count() or 1


def _fill(native, depth_ids, n_batch: int) -> None:
    """A fresh context holding depth_ids (not timed)."""
    native.clear(0)
    for b in range(0, len(depth_ids), n_batch):
        native.eval(depth_ids[b : b + n_batch])


def _time_pp(native, ids, n_batch: int, depth_ids=()) -> float:
    _fill(native, depth_ids, n_batch)
    t0 = time.perf_counter()
    for b in range(0, len(ids), n_batch):
        native.eval(ids[b : b + n_batch])  # the last token's logits only
    dt = time.perf_counter() - t0
    native.clear(0)
    return dt


def _time_tg(native, ids, n_batch: int = 512, depth_ids=()) -> float:
    _fill(native, depth_ids, n_batch)
    t0 = time.perf_counter()
    for i in range(len(ids)):
        native.eval(ids[i : i + 1])
    dt = time.perf_counter() - t0
    native.clear(0)
    return dt


def run_test(native, kind: str, n: int, reps: int, n_batch: int, seed: int, depth: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(0, native.n_vocab, n, dtype=np.int32)
    deep = rng.integers(0, native.n_vocab, depth, dtype=np.int32)
    if kind == "pp":
        timer = lambda: _time_pp(native, ids, n_batch, deep)  # noqa: E731
    else:
        timer = lambda: _time_tg(native, ids, n_batch, deep)  # noqa: E731
    # warm-up: one batch of the prompt / one token (llama-bench's)
    (_time_pp(native, ids[: min(n, n_batch)], n_batch) if kind == "pp" else _time_tg(native, ids[:1]))
    times = [timer() for _ in range(reps)]
    rates = [n / t for t in times]
    return {
        "test": f"{kind}{n}" + (f" @ d{depth}" if depth else ""),
        "n_depth": depth,
        "n_prompt": n if kind == "pp" else 0,
        "n_gen": n if kind == "tg" else 0,
        "tokens_per_s": statistics.fmean(rates),
        "stddev_tokens_per_s": statistics.stdev(rates) if len(rates) > 1 else 0.0,
        "samples_tokens_per_s": rates,
        "avg_ns": int(statistics.fmean(times) * 1e9),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="qrt-bench", description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", required=True, action="append", help="GGUF file (repeat for several)")
    p.add_argument(
        "-p", "--n-prompt", type=int, default=512, help="prompt tokens for pp (0: skip; default 512)"
    )
    p.add_argument(
        "-n", "--n-gen", type=int, default=128, help="tokens to generate for tg (0: skip; default 128)"
    )
    p.add_argument("-t", "--threads", type=int, default=None, help="threads (default: physical cores)")
    p.add_argument("-r", "--repetitions", type=int, default=5, help="repetitions of each test (default 5)")
    p.add_argument(
        "-b", "--batch-size", type=int, default=512, help="tokens per forward call in pp (default 512)"
    )
    p.add_argument(
        "-ngl",
        "--n-gpu-layers",
        default="0",
        help="layers on the GPU: comma-separated N, 'all' or 'auto', each a run (llama-bench's -ngl); any "
        "value but 0 needs a usable GPU (default 0)",
    )
    p.add_argument(
        "-d", "--n-depth", default="0", help="comma-separated tokens of context before each test (default 0)"
    )
    for part, what in (("k", "keys"), ("v", "values")):
        p.add_argument(
            f"-ct{part}",
            f"--cache-type-{part}",
            dest=f"cache_type_{part}",
            default="f16",
            help=f"comma-separated KV cache types for {what}, each a run: {', '.join(CACHE_TYPES)} "
            "(default f16)",
        )
    p.add_argument("--seed", type=int, default=0, help="seed of the random token ids")
    p.add_argument("--json", action="store_true", help="print a JSON list of results instead of a table")
    args = p.parse_args(argv)
    for name in ("n_prompt", "n_gen"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.repetitions < 1 or args.batch_size < 1 or (args.threads is not None and args.threads < 1):
        p.error("--repetitions, --batch-size and --threads must be >= 1")
    try:
        depths = [int(v) for v in args.n_depth.split(",")]
    except ValueError:
        p.error(f"--n-depth: expected comma-separated ints, got {args.n_depth!r}")
    if min(depths) < 0:
        p.error("--n-depth must be >= 0")
    cache_types = {}
    for part in ("k", "v"):
        cache_types[part] = getattr(args, f"cache_type_{part}").split(",")
        for v in cache_types[part]:
            if v not in CACHE_TYPES:
                p.error(f"--cache-type-{part}: {v!r} is not one of {', '.join(CACHE_TYPES)}")
    threads = args.threads or _physical_cores()
    ngls: list[int | str] = []
    for v in args.n_gpu_layers.split(","):
        try:
            ngls.append(v if v in ("all", "auto") else int(v))
        except ValueError:
            p.error(f"--n-gpu-layers: expected ints, 'all' or 'auto', got {v!r}")

    import qrt
    from qrt import _C
    from qrt.model import _offload_plan

    results = []
    try:
        runs = [
            (path, ngl, ctk, ctv)
            for path in args.model
            for ngl in ngls
            for ctk in cache_types["k"]
            for ctv in cache_types["v"]
        ]
        for path, ngl, ctk, ctv in runs:
            n_ctx = max(depths) + max(args.n_prompt, args.n_gen, 1)
            n_gpu, device, free = _offload_plan(ngl, require_gpu=True)
            native = _C.Model(
                path,
                n_ctx,
                threads,
                1,
                min(args.batch_size, n_ctx),
                gpu_layers=n_gpu,
                device=device,
                device_free_bytes=free,
                kv_type_k=ctk,
                kv_type_v=ctv,
            )
            offload = native.offload
            on_gpu = offload["gpu_layers"] if offload else 0
            size = os.path.getsize(path)
            tests = [(k, n, d) for d in depths for k, n in (("pp", args.n_prompt), ("tg", args.n_gen))]
            for kind, n, depth in tests:
                if n == 0:
                    continue
                r = run_test(native, kind, n, args.repetitions, args.batch_size, args.seed, depth)
                r = {
                    "model": os.path.basename(path),
                    "model_size": size,
                    "n_threads": threads,
                    "n_gpu_layers": on_gpu,
                    "backend": offload["backend"] if offload else "cpu",
                    "type_k": ctk,
                    "type_v": ctv,
                    **r,
                }
                results.append(r)
                if not args.json:
                    if len(results) == 1:
                        print("| model | size | backend | threads | ngl | type_k | type_v | test | t/s |")
                        print("| --- | ---: | --- | ---: | ---: | --- | --- | ---: | ---: |")
                    print(
                        f"| {r['model']} | {size / 2**20:.2f} MiB | {r['backend']} | {threads} | {on_gpu} | "
                        f"{ctk} | {ctv} | "
                        f"{r['test']} | {r['tokens_per_s']:.2f} ± {r['stddev_tokens_per_s']:.2f} |",
                        flush=True,
                    )
            del native
    except KeyboardInterrupt:
        print("\nqrt-bench: interrupted", file=sys.stderr)
        return 130
    except (qrt.FormatError, qrt.UnsupportedError, ValueError, OSError, RuntimeError, MemoryError) as e:
        print(f"qrt-bench: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
