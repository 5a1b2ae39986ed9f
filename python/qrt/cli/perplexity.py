"""qrt-perplexity: perplexity of a text file under a GGUF model, by llama.cpp's method."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="qrt-perplexity", description=__doc__)
    p.add_argument("-m", "--model", help="GGUF file (default: the demo model)")
    p.add_argument("-f", "--file", required=True, help="UTF-8 text file")
    p.add_argument("-c", "--ctx-size", type=int, default=512, help="chunk size in tokens (default 512)")
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("--chunks", type=int, default=None, help="score only the first N chunks (default: all)")
    args = p.parse_args(argv)
    import qrt
    from qrt.perplexity import perplexity

    try:
        path = args.model
        if path is None:
            from qrt.demo import demo_model_path

            path = demo_model_path()
        with open(args.file, encoding="utf-8") as fh:
            text = fh.read()
        with qrt.load(path, n_ctx=args.ctx_size, n_threads=args.threads) as model:

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


if __name__ == "__main__":
    sys.exit(main())
