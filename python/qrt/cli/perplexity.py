"""qrt-perplexity: perplexity of a text file under a GGUF model, by llama.cpp's method."""

from __future__ import annotations

import argparse
import sys

from qrt.cli import add_cache_type_args


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="qrt-perplexity", description=__doc__)
    p.add_argument("-m", "--model", help="GGUF file (default: the demo model)")
    p.add_argument("-f", "--file", help="UTF-8 text file (not needed with --kl-divergence)")
    p.add_argument("-c", "--ctx-size", type=int, default=512, help="chunk size in tokens (default 512)")
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("--chunks", type=int, default=None, help="score only the first N chunks (default: all)")
    p.add_argument(
        "--kl-divergence-base",
        metavar="FILE",
        help="save the model's log-probabilities over the text to FILE (llama-perplexity's format); with "
        "--kl-divergence, read them and compare this model with that base instead",
    )
    p.add_argument("--kl-divergence", action="store_true", help="compare with --kl-divergence-base FILE")
    add_cache_type_args(p)
    args = p.parse_args(argv)
    if args.kl_divergence and not args.kl_divergence_base:
        p.error("--kl-divergence needs --kl-divergence-base FILE")
    if not args.kl_divergence and not args.file:
        p.error("-f/--file is required")
    import qrt
    from qrt.perplexity import perplexity

    try:
        path = args.model
        if path is None:
            from qrt.demo import demo_model_path

            path = demo_model_path()
        if args.kl_divergence:
            return _kl_divergence(path, args)
        with open(args.file, encoding="utf-8") as fh:
            text = fh.read()
        with qrt.load(path, n_ctx=args.ctx_size, n_threads=args.threads, **_kv_types(args)) as model:
            if args.kl_divergence_base:
                from qrt.kl_divergence import save_base

                n = save_base(model, text, args.kl_divergence_base, args.ctx_size, max_chunks=args.chunks)
                print(
                    f"saved the log-probabilities of {n} chunks to {args.kl_divergence_base}", file=sys.stderr
                )

            def progress(i: int, ppl: float) -> None:
                print(f"[{i + 1}]{ppl:.4f},", end="" if (i + 1) % 8 else "\n", file=sys.stderr, flush=True)

            result = perplexity(model, text, args.ctx_size, on_chunk=progress, max_chunks=args.chunks)
    except KeyboardInterrupt:
        print("\nqrt-perplexity: interrupted", file=sys.stderr)
        return 130
    except (qrt.FormatError, qrt.UnsupportedError, ValueError, OSError, RuntimeError, MemoryError) as e:
        print(f"qrt-perplexity: error: {e}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    print(
        f"Final estimate: PPL = {result.ppl:.4f} +/- {result.error:.5f} "
        f"({result.chunks} chunks of {args.ctx_size}, {result.scored_tokens} tokens scored)"
    )
    return 0


def _kv_types(args: argparse.Namespace) -> dict[str, str]:
    return {"kv_type_k": args.cache_type_k, "kv_type_v": args.cache_type_v}


def _kl_divergence(path: str, args: argparse.Namespace) -> int:
    import qrt
    from qrt.kl_divergence import compare

    with qrt.load(path, n_ctx=max(args.ctx_size, 8), n_threads=args.threads, **_kv_types(args)) as model:
        r = compare(model, args.kl_divergence_base)
    print(f"Mean PPL(Q)    : {r.ppl:10.6f}")
    print(f"Mean PPL(base) : {r.ppl_base:10.6f}")
    print(f"Mean    KLD    : {r.mean_kld:10.6f}")
    print(f"99.0%   KLD    : {r.kld_99:10.6f}")
    print(f"Same top p     : {100 * r.same_top:6.3f} %")
    print(f"RMS Δp         : {100 * r.rms_dp:6.3f} %")
    print(f"({r.tokens} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
