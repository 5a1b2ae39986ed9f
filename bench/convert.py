"""Conversion speed and peak memory: qrt-convert vs llama.cpp's convert_hf_to_gguf.py (f16) + llama-quantize.

    python bench/convert.py [--hf DIR] [--type Q4_K_M] [--reps 1] [--threads 2]

Default checkpoint: the SmolLM2-135M-Instruct bf16 test fixture (tests/support/hf_fixture.py, built on first
use; needs transformers). Each step runs as its own process and is timed wall-clock; its peak RSS comes from
``wait4`` (the child's ru_maxrss). Outputs go to a temporary directory, nothing is cached between reps, and the
two final files are compared byte for byte. The page cache is warm for both (the checkpoint is read once
before timing).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def run(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of ``cmd``; raises on failure."""
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            log.seek(0)
            err = log.read().decode(errors="replace")
            raise RuntimeError(f"{' '.join(cmd)} failed (rc={p.returncode}):\n{err[-2000:]}")
    return dt, ru.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf", type=pathlib.Path, help="HF checkpoint directory (default: the SmolLM2 fixture)")
    ap.add_argument("--type", default="Q4_K_M")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    from tests.support import hf_fixture, llamacpp

    hf = args.hf or hf_fixture.smollm2_hf()
    lc = llamacpp.ensure_built()
    src_bytes = sum(p.stat().st_size for p in hf.glob("*.safetensors"))
    for p in hf.glob("*.safetensors"):  # warm the page cache for both contenders
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass

    env_lc = dict(os.environ, PYTHONPATH=str(lc.root / "gguf-py"))
    rows = []
    with tempfile.TemporaryDirectory(dir=hf.parent, prefix=".bench-") as tmp:
        t = pathlib.Path(tmp)
        for rep in range(args.reps):
            f16, lq, ours = (
                t / f"lc{rep}.f16.gguf",
                t / f"lc{rep}.{args.type}.gguf",
                t / f"qrt{rep}.{args.type}.gguf",
            )
            c_t, c_m = run(
                [
                    sys.executable,
                    str(lc.root / "convert_hf_to_gguf.py"),
                    str(hf),
                    "--outtype",
                    "f16",
                    "--outfile",
                    str(f16),
                ],
                env_lc,
            )
            q_t, q_m = run([str(lc.quantize), str(f16), str(lq), args.type, str(args.threads)])
            o_t, o_m = run(
                [
                    sys.executable,
                    "-m",
                    "qrt_convert",
                    str(hf),
                    "-o",
                    str(ours),
                    "--type",
                    args.type,
                    "--no-progress",
                    "--threads",
                    str(args.threads),
                ]
            )
            same = lq.read_bytes() == ours.read_bytes()
            rows.append((c_t, c_m, q_t, q_m, o_t, o_m, same))
            for p in (f16, lq, ours):
                p.unlink()

    c_t, c_m, q_t, q_m, o_t, o_m = (min(r[i] for r in rows) for i in range(6))
    same = all(r[6] for r in rows)
    mb = src_bytes / 1e6
    print(
        f"checkpoint: {hf} ({mb:.0f} MB of safetensors), type {args.type}, {args.threads} threads, best of {args.reps}"
    )
    print(f"{'step':<46} {'wall s':>7} {'MB/s':>7} {'peak RSS MB':>12}")
    print(
        f"{'llama.cpp convert_hf_to_gguf.py --outtype f16':<46} {c_t:7.2f} {mb / c_t:7.0f} {c_m / 1e6:12.0f}"
    )
    print(f"{'llama.cpp llama-quantize ' + args.type:<46} {q_t:7.2f} {mb / q_t:7.0f} {q_m / 1e6:12.0f}")
    print(f"{'llama.cpp total':<46} {c_t + q_t:7.2f} {mb / (c_t + q_t):7.0f} {max(c_m, q_m) / 1e6:12.0f}")
    print(f"{'qrt-convert --type ' + args.type:<46} {o_t:7.2f} {mb / o_t:7.0f} {o_m / 1e6:12.0f}")
    print(
        f"speedup {(c_t + q_t) / o_t:.2f}x; qrt peak RSS = {o_m / src_bytes:.0%} of the source weights; "
        f"output byte-identical to llama.cpp's: {same}"
    )


if __name__ == "__main__":
    main()
