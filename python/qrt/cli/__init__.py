"""Command-line tools: qrt-gguf, qrt-run, qrt-perplexity, qrt-bench, qrt-imatrix (and qrt-serve in serve/)."""

from __future__ import annotations

import argparse

#: The KV cache types the CLIs accept for -ctk / -ctv (qrt.model.KV_TYPES; listed here so that --help
#: needs no import of the engine).
CACHE_TYPES = ("f16", "q8_0", "q4_0")


def add_cache_type_args(p: argparse.ArgumentParser, short: bool = True) -> None:
    """``-ctk/--cache-type-k`` and ``-ctv/--cache-type-v`` as llama.cpp spells them (f16, q8_0, q4_0)."""
    for part, what in (("k", "keys"), ("v", "values")):
        flags = ([f"-ct{part}"] if short else []) + [f"--cache-type-{part}"]
        p.add_argument(
            *flags,
            dest=f"cache_type_{part}",
            choices=CACHE_TYPES,
            default="f16",
            help=f"KV cache type for {what}: f16, q8_0 (0.53x the bytes) or q4_0 (0.28x) (default f16)",
        )
