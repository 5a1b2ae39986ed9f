"""qrt against llama.cpp on the same GGUF files and threads: prompt processing and generation tokens/s, time
to first token and peak RSS.

    python bench/compare.py [-m FILE ...] [--tinyllama] [--nf4] [-t 1,2] [-p 512] [-n 128] [-r 3] [--rounds 2]
                            [--no-ttft | --ttft-only] [-c 4096] [--prompt-chars 600] [-o bench/RESULTS.md]

llama.cpp (llama-bench) is built once from the llama-cpp-python 0.3.36 sdist into the test cache by
tests/support/llamacpp.py (benchmark only: never in CI, never committed). Without -m the files are SmolLM2-135M
Q4_1 and its llama-quantize'd Q8_0, Q4_K_M and Q4_0 (made once, cached); --tinyllama adds the 1.1B TinyLlama-shaped
random-weight Q4_K_M file of bench/make_tinyllama.py (made once, cached); --nf4 benchmarks the SmolLM2 checkpoint
converted by qrt-convert to Q4_0, Q4_K_M and NF4 instead (made once, cached; with -m, besides those files).
llama.cpp cannot run NF4 (qrt's own GGUF type): an NF4 file's row alternates qrt-bench on it with qrt-bench on its
Q4_0 sibling and gives that ratio instead. For every file and thread count qrt-bench and llama-bench run
alternately, A B A B (--rounds pairs), so both see the same machine load; each run does -r repetitions. The table
shows each program's median over the rounds of its mean tokens/s, the ratio qrt/llama.cpp,
and for generation the weight bytes read per second (file size x tokens/s: every weight is read once per token)
and their fraction of the machine's read bandwidth, measured at the start with the same thread counts.

Time to first token (TTFT) and peak RSS: for every file and thread count, `qrt-run -n 1 --temp 0` (as
`python -m qrt.cli.run`, so Python start-up and imports count: that is what a user waits for) and llama.cpp's
`llama-completion -n 1 --temp 0 -no-cnv` (built once into the same cache), alternately, --rounds pairs, on the
same prompt (the first --prompt-chars characters of gpl-3.0.txt) and context size (-c, both sides). TTFT is the
wall time of the whole process, launch to exit, generating that one token; peak RSS is the child's ru_maxrss
(os.wait4, the child forked from a bare interpreter, see LAUNCHER), which counts the mmap'd weight pages it
touched. Medians over the rounds; the load time each program reports on stderr is shown too. The model file is
read once beforehand so that both find it in the page cache.
The tables and the conditions go to bench/RESULTS.md (-o; --no-write to skip).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile

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


def llama_env(exe: pathlib.Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(exe.parent), env.get("LD_LIBRARY_PATH")]))
    return env


def llama_bench(
    exe: pathlib.Path, model: pathlib.Path, threads: int, p: int, n: int, reps: int
) -> dict[str, float]:
    env = llama_env(exe)
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


# Runs argv[1:] with stdout to /dev/null and prints "wall_seconds maxrss_kib exit_code". A child's ru_maxrss starts
# from the RSS of the process it was forked from (Linux keeps the high-water mark across exec), so the child is
# forked here, from a bare interpreter (under 10 MiB), and not from this process (numpy, transformers: hundreds).
LAUNCHER = """
import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - t0, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def first_token(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run cmd (which generates one token) to completion: wall seconds, peak RSS in MiB, stderr."""
    with tempfile.TemporaryFile() as err:
        out = subprocess.run(
            [sys.executable, "-I", "-S", "-c", LAUNCHER, *cmd],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            check=False,
        ).stdout.split()
        err.seek(0)
        text = err.read().decode(errors="replace")
    if len(out) != 3 or out[2] != "0":
        raise RuntimeError(f"{' '.join(cmd)} failed ({out}):\n{text[-3000:]}")
    return float(out[0]), int(out[1]) / 1024, text


def found(pattern: str, texts: list[str], scale: float = 1.0) -> float:
    """The median of the number that pattern's group 1 matches in each text, times scale (nan if none)."""
    vals = [float(m.group(1)) * scale for m in (re.search(pattern, t) for t in texts) if m]
    return statistics.median(vals) if vals else float("nan")


QRT_TOKENS, QRT_LOAD = r"prompt (\d+) tokens", r"qrt-run: load ([0-9.]+) s"
LLAMA_LOAD = r"load time =\s*([0-9.]+) ms"


def ttft_table(models: list[pathlib.Path], threads: list[int], completion: pathlib.Path, args) -> list[str]:
    prompt = (REPO / "tests" / "data" / "gpl-3.0.txt").read_text()[: args.prompt_chars]
    lines = [
        "| model | threads | prompt tokens | qrt TTFT s | llama.cpp TTFT s | qrt / llama.cpp | qrt peak RSS MiB "
        "| llama.cpp peak RSS MiB | qrt / llama.cpp | qrt load s | llama.cpp load s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    print("\n".join(lines), flush=True)
    env = llama_env(completion)
    for model in models:
        with open(model, "rb") as f:  # into the page cache, so that the first round does not pay for the disk
            while f.read(1 << 24):
                pass
        if is_nf4(model):  # llama.cpp cannot run it
            continue
        for t in threads:
            flags = ["-m", str(model), "-p", prompt, *f"-n 1 --temp 0 -c {args.ctx_size} -t {t}".split()]
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(first_token([sys.executable, "-m", "qrt.cli.run", *flags]))
                theirs.append(first_token([str(completion), *flags, "-no-cnv"], env))
            a, b = (statistics.median(r[0] for r in runs) for runs in (ours, theirs))
            ra, rb = (statistics.median(r[1] for r in runs) for runs in (ours, theirs))
            q_err, l_err = [r[2] for r in ours], [r[2] for r in theirs]
            line = (
                f"| {model.name} | {t} | {found(QRT_TOKENS, q_err):.0f} | {a:.2f} | {b:.2f} | {a / b:.2f} | {ra:.0f} "
                f"| {rb:.0f} | {ra / rb:.2f} | {found(QRT_LOAD, q_err):.2f} | {found(LLAMA_LOAD, l_err, 1e-3):.2f} |"
            )
            lines.append(line)
            print(line, flush=True)
    return lines


def read_bandwidth(threads: int, gib: int = 1, reps: int = 5) -> float:
    """GB/s the machine reads with `threads` threads: the best of `reps` float32 sums of a `gib` GiB array split
    between them (numpy releases the GIL in the reduction). Decode reads every weight once per token, so this
    is its ceiling."""
    import threading
    import time

    import numpy as np

    a = np.ones(gib << 28, np.float32)
    parts = np.array_split(a, threads)
    best = 0.0
    for _ in range(reps):
        workers = [threading.Thread(target=np.sum, args=(part,)) for part in parts]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, a.nbytes / (time.perf_counter() - t0) / 1e9)
    return best


def is_nf4(model: pathlib.Path) -> bool:
    import qrt.gguf

    with qrt.gguf.open(model) as f:
        return any(t.type == "NF4" for t in f.tensors.values())


def q4_0_sibling(model: pathlib.Path, models: list[pathlib.Path]) -> pathlib.Path | None:
    """The Q4_0 file of the same checkpoint as an NF4 one (x.NF4.gguf -> x.Q4_0.gguf), if it is benchmarked."""
    want = model.name.replace("NF4", "Q4_0")
    return next((m for m in models if m.name == want and m != model), None)


def nf4_models() -> list[pathlib.Path]:
    """SmolLM2-135M-Instruct (the test cache's HF checkpoint) converted by qrt-convert to Q4_0, Q4_K_M and NF4
    (made once, cached): NF4 next to its 4-bit siblings of the same weights."""
    from qrt_convert import cli
    from tests.support.cache import cache_dir
    from tests.support.hf_fixture import smollm2_hf

    src = smollm2_hf()
    out = []
    for t in ("Q4_0", "Q4_K_M", "NF4"):
        path = cache_dir() / "bench" / f"SmolLM2-135M-Instruct.qrt.{t}.gguf"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            if cli.main([str(src), "-o", str(path), "--type", t]) != 0:
                raise RuntimeError(f"qrt-convert --type {t} failed")
        out.append(path)
    return out


def tps_table(
    models: list[pathlib.Path], threads: list[int], llama_bench_exe: pathlib.Path, args
) -> list[str]:
    tests = [
        t
        for t in (f"pp{args.n_prompt}" if args.n_prompt else "", f"tg{args.n_gen}" if args.n_gen else "")
        if t
    ]
    bandwidth = {t: read_bandwidth(t) for t in threads}
    lines = [
        "Memory read bandwidth (bench/compare.py read_bandwidth): "
        + ", ".join(f"{bandwidth[t]:.1f} GB/s with {t} thread{'s' if t > 1 else ''}" for t in threads)
        + ".",
        "",
        "| model | size | threads | test | qrt t/s | llama.cpp t/s | qrt / llama.cpp | qrt weight GB/s | of bandwidth |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    print("\n".join(lines), flush=True)
    for model in models:
        size = model.stat().st_size
        for t in threads:
            ours: dict[str, list[float]] = {k: [] for k in tests}
            theirs: dict[str, list[float]] = {k: [] for k in tests}
            # llama.cpp cannot run NF4 (qrt's own GGUF type): its Q4_0 sibling on qrt alternates with it instead
            nf4 = is_nf4(model)
            sibling = q4_0_sibling(model, models) if nf4 else None
            for _ in range(args.rounds):
                for k, v in qrt_bench(model, t, args.n_prompt, args.n_gen, args.repetitions).items():
                    ours.setdefault(k, []).append(v)
                if nf4:
                    if sibling is not None:
                        for k, v in qrt_bench(
                            sibling, t, args.n_prompt, args.n_gen, args.repetitions
                        ).items():
                            theirs.setdefault(k, []).append(v)
                    continue
                for k, v in llama_bench(
                    llama_bench_exe, model, t, args.n_prompt, args.n_gen, args.repetitions
                ).items():
                    theirs.setdefault(k, []).append(v)
            for k in tests:
                a = statistics.median(ours[k])
                tg = k.startswith("tg")
                gbs = f"{size * a / 1e9:.1f}" if tg else ""
                frac = f"{size * a / 1e9 / bandwidth[t]:.0%}" if tg else ""
                if nf4:
                    vs = (
                        f"qrt {sibling.name}: {statistics.median(theirs[k]):.1f}, NF4 / Q4_0 {a / statistics.median(theirs[k]):.2f}"
                        if sibling
                        else ""
                    )
                    line = f"| {model.name} | {size / 2**20:.1f} MiB | {t} | {k} | {a:.1f} | cannot run NF4 | {vs} | {gbs} | {frac} |"
                else:
                    b = statistics.median(theirs[k])
                    line = (
                        f"| {model.name} | {size / 2**20:.1f} MiB | {t} | {k} | {a:.1f} | {b:.1f} | {a / b:.2f} | {gbs} "
                        f"| {frac} |"
                    )
                lines.append(line)
                print(line, flush=True)
    return lines


def default_models() -> list[pathlib.Path]:
    from tests.support.llamacpp import requantize
    from tests.support.smollm2 import smollm2_q4_1

    src = smollm2_q4_1()
    return [src, *(requantize(src, None, t) for t in ("Q8_0", "Q4_K_M", "Q4_0"))]


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
    ap.add_argument(
        "--nf4",
        action="store_true",
        help="SmolLM2 converted by qrt-convert to Q4_0, Q4_K_M and NF4 (instead of the default files)",
    )
    ttft = ap.add_mutually_exclusive_group()
    ttft.add_argument("--no-ttft", action="store_true", help="tokens/s only")
    ttft.add_argument("--ttft-only", action="store_true", help="time to first token and peak RSS only")
    ap.add_argument("-c", "--ctx-size", type=int, default=4096, help="TTFT runs' context, both sides (4096)")
    ap.add_argument("--prompt-chars", type=int, default=600, help="TTFT prompt: gpl-3.0.txt's first N chars")
    args = ap.parse_args(argv)

    from tests.support.llamacpp import VERSION, ensure_built, ensure_tool

    llama = ensure_built(verbose=True)
    completion = None if args.no_ttft else ensure_tool("llama-completion", llama)
    models = args.model or ([] if args.nf4 else default_models())
    if args.tinyllama:
        sys.path.insert(0, str(REPO / "bench"))
        from make_tinyllama import make

        models = [*models, make()]
    if args.nf4:
        models = [*models, *nf4_models()]
    threads = [int(t) for t in args.threads.split(",")]
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    when = f"Measured {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {cpu_name()} ({os.cpu_count()} CPUs)"
    cmd = f"`python bench/compare.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
    text = []
    if not args.ttft_only:
        text += [
            "# qrt vs llama.cpp: tokens per second",
            "",
            f"{when}, qrt {commit or '?'}, llama.cpp from llama-cpp-python {VERSION} (llama-bench).",
            f"{cmd}: pp{args.n_prompt} / tg{args.n_gen}, {args.repetitions} repetitions per run, "
            f"{args.rounds} alternating rounds, medians.",
            "The machine may be shared: compare ratios within one table, not numbers across runs.",
            "",
            *tps_table(models, threads, llama.bench, args),
            "",
        ]
    if completion is not None:
        text += [
            "## Time to first token and peak RSS",
            "",
            f"{when}, qrt {commit or '?'}, llama.cpp from llama-cpp-python {VERSION} (llama-completion).",
            f"{cmd}: `qrt-run` (`python -m qrt.cli.run`, Python start-up included) and `llama-completion -no-cnv`, "
            f"both `-n 1 --temp 0 -c {args.ctx_size}`, prompt: the first {args.prompt_chars} characters of "
            f"gpl-3.0.txt; TTFT = wall time of the whole process (launch to exit) generating that one token; peak "
            f"RSS = the process's ru_maxrss (mmap'd weight pages it touched included); load = what each program "
            f"reports on stderr; {args.rounds} alternating rounds, medians.",
            "",
            *ttft_table(models, threads, completion, args),
            "",
        ]
    if not args.no_write:
        args.output.write_text("\n".join(text))
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
