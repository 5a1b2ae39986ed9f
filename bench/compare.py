"""qrt against llama.cpp on the same GGUF files and threads: prompt processing and generation tokens/s.

    python bench/compare.py [-m FILE ...] [--tinyllama] [-t 1,2] [-p 512] [-n 128] [-r 3] [--rounds 2]
                            [-o bench/RESULTS.md]

llama.cpp (llama-bench) is built once from the llama-cpp-python 0.3.36 sdist into the test cache by
tests/support/llamacpp.py (benchmark only: never in CI, never committed). Without -m the files are SmolLM2-135M
Q4_1 and its llama-quantize'd Q8_0 and Q4_K_M (made once, cached); --tinyllama adds the 1.1B TinyLlama-shaped
random-weight Q4_K_M file of bench/make_tinyllama.py (made once, cached). For every file and thread count qrt-bench and
llama-bench run alternately, A B A B (--rounds pairs), so both see the same machine load; each run does -r
repetitions. The table shows each program's median over the rounds of its mean tokens/s, the ratio qrt/llama.cpp,
and for generation the weight bytes read per second (file size x tokens/s: every weight is read once per token).
The table and the conditions go to bench/RESULTS.md (-o; --no-write to skip).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_json(cmd: list[str], env: dict[str, str] | None = None) -> list[dict]:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    out = done.stdout
    return json.loads(out[out.index("[") :])


def qrt_bench(model: pathlib.Path, threads: int, p: int, n: int, reps: int) -> dict[str, float]:
    cmd = [
        sys.executable,
        "-m",
        "qrt.cli.bench",
        "-m",
        str(model),
        "-t",
        str(threads),
        "-p",
        str(p),
        "-n",
        str(n),
    ]
    rows = run_json([*cmd, "-r", str(reps), "--json"])
    return {r["test"]: float(r["tokens_per_s"]) for r in rows}


def llama_bench(
    exe: pathlib.Path, model: pathlib.Path, threads: int, p: int, n: int, reps: int
) -> dict[str, float]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(exe.parent), env.get("LD_LIBRARY_PATH")]))
    cmd = [
        str(exe),
        "-m",
        str(model),
        "-t",
        str(threads),
        "-p",
        str(p),
        "-n",
        str(n),
        "-r",
        str(reps),
        "-o",
        "json",
    ]
    rows = run_json(cmd, env)
    out = {}
    for r in rows:
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        out[test] = float(r["avg_ts"])
    return out


def default_models() -> list[pathlib.Path]:
    from tests.support.llamacpp import requantize
    from tests.support.smollm2 import smollm2_q4_1

    src = smollm2_q4_1()
    return [src, requantize(src, None, "Q8_0"), requantize(src, None, "Q4_K_M")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append", type=pathlib.Path, help="GGUF file (repeatable)")
    ap.add_argument("-t", "--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--repetitions", type=int, default=3, help="repetitions per run (default 3)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating qrt/llama.cpp pairs (default 2)")
    ap.add_argument("-o", "--output", type=pathlib.Path, default=REPO / "bench" / "RESULTS.md")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--tinyllama", action="store_true", help="also the 1.1B file of bench/make_tinyllama.py")
    args = ap.parse_args(argv)

    from tests.support.llamacpp import VERSION, ensure_built

    llama = ensure_built(verbose=True)
    models = args.model or default_models()
    if args.tinyllama:
        sys.path.insert(0, str(REPO / "bench"))
        from make_tinyllama import make

        models = [*models, make()]
    threads = [int(t) for t in args.threads.split(",")]
    tests = [
        t
        for t in (f"pp{args.n_prompt}" if args.n_prompt else "", f"tg{args.n_gen}" if args.n_gen else "")
        if t
    ]

    header = "| model | size | threads | test | qrt t/s | llama.cpp t/s | qrt / llama.cpp | qrt weight GB/s |"
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    print("\n".join(lines), flush=True)
    for model in models:
        size = model.stat().st_size
        for t in threads:
            ours: dict[str, list[float]] = {k: [] for k in tests}
            theirs: dict[str, list[float]] = {k: [] for k in tests}
            for _ in range(args.rounds):
                for k, v in qrt_bench(model, t, args.n_prompt, args.n_gen, args.repetitions).items():
                    ours.setdefault(k, []).append(v)
                for k, v in llama_bench(
                    llama.bench, model, t, args.n_prompt, args.n_gen, args.repetitions
                ).items():
                    theirs.setdefault(k, []).append(v)
            for k in tests:
                a, b = statistics.median(ours[k]), statistics.median(theirs[k])
                gbs = f"{size * a / 1e9:.1f}" if k.startswith("tg") else ""
                line = f"| {model.name} | {size / 2**20:.1f} MiB | {t} | {k} | {a:.1f} | {b:.1f} | {a / b:.2f} | {gbs} |"
                lines.append(line)
                print(line, flush=True)

    if not args.no_write:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
        )
        text = [
            "# qrt vs llama.cpp: tokens per second",
            "",
            f"Measured {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {cpu_name()} ({os.cpu_count()} CPUs), "
            f"qrt {commit.stdout.strip() or '?'}, llama.cpp from llama-cpp-python {VERSION} (llama-bench).",
            f"`python bench/compare.py {' '.join(argv if argv is not None else sys.argv[1:])}`: pp{args.n_prompt} / "
            f"tg{args.n_gen}, {args.repetitions} repetitions per run, {args.rounds} alternating rounds, medians.",
            "The machine may be shared: compare ratios within one table, not numbers across runs.",
            "",
            *lines,
            "",
        ]
        args.output.write_text("\n".join(text))
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
