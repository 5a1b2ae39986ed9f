"""qrt-run: generate text from a GGUF model, streaming tokens as they come.

Without -m it runs the demo model (SmolLM2-135M-Instruct Q4_1, fetched once into the user cache).
Timings go to stderr: load time, prompt tokens/s, generation tokens/s.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

from qrt.cli import add_cache_type_args


def _reported_errors() -> tuple[type[Exception], ...]:
    """What qrt-run reports as a one-line error instead of a traceback."""
    import qrt

    errors = (
        qrt.FormatError,
        qrt.UnsupportedError,
        ValueError,
        TypeError,
        OSError,
        RuntimeError,
        MemoryError,
    )
    # jinja2 can only raise once --chat has imported it; importing it just for this except clause would add
    # ~25 ms to every run.
    jinja2 = sys.modules.get("jinja2")
    return (*errors, jinja2.TemplateError) if jinja2 is not None else errors


def _gpu_layers(value: str) -> int | str:
    if value in ("all", "auto"):
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, 'all' or 'auto', got {value!r}") from None


def offload_summary(o: dict, n_layer: int) -> str:
    """One line: what runs on the device and its memory by part."""

    def mib(n: int) -> str:
        return f"{n / (1 << 20):.1f} MiB"

    head = " + output head" if o["head"] else ""
    return (
        f"{o['n_layer_device']}/{n_layer} layers{head} on {o['backend']} "
        f"(layers {o['first_layer']}..{n_layer - 1}): weights {mib(o['weights_bytes'])}, "
        f"KV cache {mib(o['kv_bytes'])}, work buffers {mib(o['work_bytes'])}, "
        f"total {mib(o['total_bytes'])} of {mib(o['free_bytes'])} free"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qrt-run", description="Generate text with a GGUF model.")
    p.add_argument("-m", "--model", help="GGUF file (default: the demo model)")
    p.add_argument("-p", "--prompt", default="The capital of France is", help="prompt text")
    p.add_argument("-n", "--n-predict", type=int, default=128, help="tokens to generate (default 128)")
    p.add_argument("--temp", type=float, default=0.8, help="temperature; 0 is greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--repeat-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None, help="RNG seed (default: random)")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--ignore-eos", action="store_true", help="keep generating past end-of-generation tokens")
    p.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("-c", "--ctx-size", type=int, default=4096, help="context size (default 4096)")
    p.add_argument(
        "--gpu-layers",
        type=_gpu_layers,
        default=0,
        help="the last N layers on the GPU (N > layer count: the output head too), 'all', or 'auto': "
        "as many as fit in free VRAM (default 0)",
    )
    p.add_argument("--require-gpu", action="store_true", help="fail instead of falling back to the CPU")
    add_cache_type_args(p)
    p.add_argument(
        "--chat", action="store_true", help="wrap the prompt as a user message in the chat template"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import qrt  # after argument parsing, so --help is instant

    try:
        path = args.model
        if path is None:
            from qrt.demo import demo_model_path

            path = demo_model_path()
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = qrt.load(
                path,
                n_ctx=args.ctx_size,
                n_threads=args.threads,
                gpu_layers=args.gpu_layers,
                require_gpu=args.require_gpu,
                kv_type_k=args.cache_type_k,
                kv_type_v=args.cache_type_v,
            )
        for w in caught:
            print(f"qrt-run: warning: {w.message}", file=sys.stderr)
        if model.offload:
            print(f"qrt-run: {offload_summary(model.offload, model.n_layer)}", file=sys.stderr)
        load_s = time.perf_counter() - t0
        kv_mib = model.kv_bytes / (1 << 20)
        kwargs = dict(
            max_tokens=args.n_predict,
            temperature=args.temp,
            top_k=args.top_k,
            top_p=args.top_p,
            min_p=args.min_p,
            repeat_penalty=args.repeat_penalty,
            seed=args.seed,
            stop=args.stop,
            ignore_eos=args.ignore_eos,
            stream=True,
        )
        with model:
            if args.chat:
                pieces = model.chat([{"role": "user", "content": args.prompt}], **kwargs)
            else:
                print(args.prompt, end="", flush=True)
                pieces = model.generate(args.prompt, **kwargs)
            for piece in pieces:
                print(piece, end="", flush=True)
            print()
            s = model.last_stats
    except KeyboardInterrupt:
        print("\nqrt-run: interrupted", file=sys.stderr)
        return 130
    except _reported_errors() as e:
        print(f"qrt-run: error: {e}", file=sys.stderr)
        return 1

    def rate(n: float, secs: float) -> str:
        return f"{n / secs:.1f} tok/s" if secs > 0 else "n/a"

    print(
        f"qrt-run: load {load_s:.2f} s, KV cache {kv_mib:.1f} MiB "
        f"({args.cache_type_k}/{args.cache_type_v}) | "
        f"prompt {s.get('prompt_tokens', 0)} tokens, "
        f"{rate(s.get('prompt_tokens', 0), s.get('prompt_seconds', 0))} | "
        f"generated {s.get('generated_tokens', 0)} tokens, "
        f"{rate(s.get('generated_tokens', 0), s.get('generate_seconds', 0))}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
