"""qrt-imatrix: an importance matrix of a GGUF model over a calibration text, in llama.cpp's GGUF format
(what llama-imatrix writes; give it to ``qrt-convert --imatrix`` or ``llama-quantize --imatrix``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="qrt-imatrix", description=__doc__)
    p.add_argument(
        "-m", "--model", required=True, help="GGUF file (best: the unquantized F16/BF16/F32 model)"
    )
    p.add_argument("-f", "--file", required=True, help="UTF-8 calibration text")
    p.add_argument("-o", "--output", default="imatrix.gguf", help="output file (default imatrix.gguf)")
    p.add_argument("-c", "--ctx-size", type=int, default=512, help="tokens per chunk (default 512)")
    p.add_argument("--chunks", type=int, default=None, help="process at most N chunks (default: all)")
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("--process-output", action="store_true", help="collect output.weight too")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    import qrt
    from qrt.imatrix_file import write_gguf
    from qrt.importance import imatrix

    bar = None
    try:
        with open(args.file, encoding="utf-8") as fh:
            text = fh.read()

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if args.no_progress:
                return
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="chunk", desc="imatrix", file=sys.stderr, dynamic_ncols=True)
            bar.update(done - bar.n)

        m = imatrix(
            args.model,
            text,
            n_ctx=args.ctx_size,
            chunks=args.chunks,
            n_threads=args.threads,
            process_output=args.process_output,
            dataset=args.file,
            progress=progress,
        )
        write_gguf(args.output, m)
    except KeyboardInterrupt:
        print("\nqrt-imatrix: interrupted; nothing written", file=sys.stderr)
        return 130
    except (qrt.FormatError, qrt.UnsupportedError, ValueError, OSError, RuntimeError, MemoryError) as e:
        print(f"qrt-imatrix: error: {e}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    if not args.no_progress:
        print(
            f"wrote {args.output}: {len(m.entries)} matrices, {m.chunk_count} chunks of {m.chunk_size} tokens",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
