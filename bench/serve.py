"""Serving benchmark: qrt-serve against llama-server on the same file, and issue 13's serving checks.

    python bench/serve.py [-m model.gguf] [--tinyllama] [-c 1,2,4,8,16] [-n 128] [-p 128] [-t 2]
                          [--rounds 1] [--no-llama] [-o bench/RESULTS.md | --no-write]

Concurrency sweep: for each client count N, qrt-serve (one server, --parallel = the largest N) and
llama-server -np N (built from the llama-cpp-python 0.3.36 sdist, one server per N with 1,024 tokens of
context per slot), alternating, each with N clients streaming one /v1/completions request at once (a
prompt of about -p tokens, different for every client from its first word so that no prefix is shared,
-n generated tokens, ignore_eos, seed 1). Reported: aggregate tok/s (generated tokens / wall time), its
multiple of the same server's single stream, TTFT p50 and inter-token latency p50/p99 over all streams.

Then, on qrt only: qrt-bench pp128 in the same run (the ceiling of batched decode on a CPU); the same sweep
driving Model.generate from Python threads (the HTTP path's cost); 8 streams with a 512-token prompt
arriving among them (the largest inter-token gap of the 8, chunked prefill); and a 1,000-token shared prefix,
TTFT warm against cold (prefix cache). The tables go into bench/RESULTS.md's "Continuous batching" section.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import itertools
import json
import os
import pathlib
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from compare import cpu_name, llama_env, qrt_bench  # noqa: E402

WORDS = (
    "the quick brown fox jumps over the lazy dog while a cat watches from the old stone wall and the river "
    "runs past green fields toward a small town where people sell bread fish apples and warm wool coats"
).split()
SLOT_CTX = 1024


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def prompt_of(n_words: int, client: int = 0, seed: int | None = None) -> str:
    """About n_words tokens; clients differ from the first word on (no shared prefix)."""
    if seed is not None:
        rng = random.Random(seed)
        return " ".join(rng.choice(WORDS) for _ in range(n_words))
    return " ".join(WORDS[(i + 7 * client) % len(WORDS)] for i in range(n_words))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the two servers ---------------------------------------------------------------------------------------


class Server:
    def __init__(self, cmd: list[str], port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with {self.proc.returncode}: {' '.join(cmd)}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{cmd[0]} did not become healthy")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_qrt(model: pathlib.Path, threads: int, parallel: int) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "qrt.serve", "-m", str(model), "--port", str(port), "-c", str(SLOT_CTX)]
    cmd += ["-t", str(threads), "--parallel", str(parallel)]
    return Server(cmd, port, dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))


def start_llama(exe: pathlib.Path, model: pathlib.Path, threads: int, parallel: int) -> Server:
    port = free_port()
    cmd = [str(exe), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-t", str(threads)]
    cmd += ["-c", str(SLOT_CTX * parallel), "-np", str(parallel), "--no-webui"]
    return Server(cmd, port, llama_env(exe))


def stream(port: int, prompt: str, n: int, seed: int = 1) -> list[float]:
    """One streamed completion: [start, time of each token's chunk...]."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": prompt, "max_tokens": n, "ignore_eos": True, "seed": seed, "stream": True}
    times = [time.perf_counter()]
    conn.request(
        "POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
    for line in r:
        if line.startswith(b"data: {"):
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                times.append(time.perf_counter())
    conn.close()
    return times


def concurrent(run_one: Callable[[int], list[float]], clients: int) -> tuple[float, list[list[float]]]:
    """Runs run_one(client) on `clients` threads at once: (wall seconds, each client's times)."""
    results: list[list[float]] = [[] for _ in range(clients)]

    def worker(i: int) -> None:
        results[i] = run_one(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, results


def summary(wall: float, results: list[list[float]]) -> dict[str, float]:
    tokens = sum(len(r) - 1 for r in results)
    ttft = [r[1] - r[0] for r in results if len(r) > 1]
    itl = [b - a for r in results for a, b in itertools.pairwise(r[1:])]
    # steady state: from the moment every stream has its first token to the moment the first one ends
    t0, t1 = max(r[1] for r in results), min(r[-1] for r in results)
    steady = sum(1 for r in results for t in r[2:] if t0 < t <= t1)
    return {
        "tok_s": tokens / wall,
        "decode_tok_s": steady / (t1 - t0) if t1 > t0 and steady else float("nan"),
        "ttft_p50_ms": 1e3 * statistics.median(ttft),
        "itl_p50_ms": 1e3 * pct(itl, 0.5),
        "itl_p99_ms": 1e3 * pct(itl, 0.99),
    }


# -- the checks --------------------------------------------------------------------------------------------


def stall_check(port: int, n: int) -> dict[str, float]:
    """8 streams decoding; 1 s in, a 512-token prompt arrives: the 8 streams' largest gap while it is
    prefilled, and their inter-token p50 outside it."""
    arrival: list[float] = []

    def newcomer() -> None:
        time.sleep(1.0)
        arrival.append(time.perf_counter())
        stream(port, prompt_of(512, seed=99), 1)
        arrival.append(time.perf_counter())

    extra = threading.Thread(target=newcomer)
    extra.start()
    _, results = concurrent(lambda i: stream(port, prompt_of(128, i), n), 8)
    extra.join()
    t0, t1 = arrival
    gaps = [(a, b) for r in results for a, b in itertools.pairwise(r[1:])]
    during = [b - a for a, b in gaps if b >= t0 and a <= t1]
    return {
        "max_gap_ms": 1e3 * max(during, default=0.0),
        "itl_p50_ms": 1e3 * pct([b - a for a, b in gaps], 0.5),
        "newcomer_s": t1 - t0,
    }


def prefix_check(port: int, reps: int = 3) -> dict[str, float]:
    """TTFT of a 1,000-token prefix + a question, cold, then warm (the same prefix, another question)."""
    cold, warm = [], []
    for rep in range(reps):
        prefix = prompt_of(1000, seed=1000 + rep)
        r = stream(port, prefix + " Question: what does the fox do?", 1)
        cold.append(r[1] - r[0])
        r = stream(port, prefix + " Question: where does the river run?", 1)
        warm.append(r[1] - r[0])
    return {"cold_ms": 1e3 * statistics.median(cold), "warm_ms": 1e3 * statistics.median(warm)}


def direct_sweep(model: pathlib.Path, threads: int, clients: list[int], n: int, p: int) -> dict[int, dict]:
    """The same sweep through Model.generate(stream=True) from Python threads (no HTTP)."""
    import qrt

    out = {}
    with qrt.load(model, n_ctx=SLOT_CTX, n_threads=threads, n_seq_max=max(clients)) as m:

        def one(prompt: str, n_tokens: int) -> list[float]:
            times = [time.perf_counter()]
            for _ in m.generate(prompt, max_tokens=n_tokens, ignore_eos=True, seed=1, stream=True):
                times.append(time.perf_counter())
            return times

        one(prompt_of(p), 4)  # warm up
        for c in clients:
            pump0 = (m.engine.pump_seconds, m.engine.pump_batches)
            wall, results = concurrent(lambda i: one(prompt_of(p, i), n), c)
            row = summary(wall, results)
            pump = m.engine.pump_seconds - pump0[0], m.engine.pump_batches - pump0[1]
            row["pump_us_per_step"] = 1e6 * pump[0] / max(1, pump[1])
            out[c] = row
            print(f"direct {c:3d}: {row['tok_s']:7.1f} tok/s", flush=True)
    return out


# -- the report --------------------------------------------------------------------------------------------


def write_section(path: pathlib.Path, title: str, body: str) -> None:
    """Replaces the section that starts with `title` (up to the next '## ') in path, or appends it."""
    text = path.read_text() if path.exists() else ""
    start = text.find(title)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(title))
        text = text[:start] + body + ("" if end < 0 else text[end + 1 :])
    path.write_text(text)


def git_rev() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    return done.stdout.strip() + ("-dirty" if dirty.strip() else "")


def bench_model(model: pathlib.Path, args, llama_server: pathlib.Path | None) -> list[str]:
    clients = [int(x) for x in args.clients.split(",")]
    n, p, t = args.n, args.p, args.threads
    qrt_rows: dict[int, list[dict]] = {c: [] for c in clients}
    llama_rows: dict[int, list[dict]] = {c: [] for c in clients}
    load0 = os.getloadavg()[0]
    pp = qrt_bench(model, t, 128, 16, 2)["pp128"]
    print(f"{model.name}: qrt-bench pp128 {pp:.1f} tok/s", flush=True)
    qrt_server = start_qrt(model, t, max(clients))
    try:
        stream(qrt_server.port, prompt_of(p), 4)  # warm up
        for _ in range(args.rounds):
            for c in clients:
                wall, res = concurrent(lambda i: stream(qrt_server.port, prompt_of(p, i), n), c)
                qrt_rows[c].append(summary(wall, res))
                print(f"qrt    {c:3d}: {qrt_rows[c][-1]['tok_s']:7.1f} tok/s", flush=True)
                if llama_server is not None:
                    ls = start_llama(llama_server, model, t, c)
                    try:
                        stream(ls.port, prompt_of(p), 4)
                        wall, res = concurrent(lambda i, ls=ls: stream(ls.port, prompt_of(p, i), n), c)
                        llama_rows[c].append(summary(wall, res))
                        print(f"llama  {c:3d}: {llama_rows[c][-1]['tok_s']:7.1f} tok/s", flush=True)
                    finally:
                        ls.stop()
        stall = stall_check(qrt_server.port, n)
        prefix = prefix_check(qrt_server.port)
    finally:
        qrt_server.stop()
    direct = direct_sweep(model, t, [c for c in clients if c in (1, 8)], n, p)
    load1 = os.getloadavg()[0]

    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows) if rows else float("nan")

    lines = [
        f"### {model.name}",
        "",
        f"qrt-bench pp128 in the same run: {pp:.1f} tok/s. Load average {load0:.1f} before, {load1:.1f} after.",
        "",
        "Aggregate: all generated tokens over the wall time (prompts included); decode: the rate while every "
        "stream is decoding (from the last first token to the first last token).",
        "",
        "| clients | qrt-serve tok/s | decode tok/s | × single | TTFT p50 ms | ITL p50 / p99 ms "
        "| llama-server -np N tok/s | decode tok/s | × single | TTFT p50 ms | ITL p50 / p99 ms "
        "| qrt / llama-server (aggregate, decode) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    q1, l1 = med(qrt_rows[clients[0]], "tok_s"), med(llama_rows[clients[0]], "tok_s")
    for c in clients:
        q, lr = qrt_rows[c], llama_rows[c]
        qt, lt = med(q, "tok_s"), med(lr, "tok_s")
        qd, ld = med(q, "decode_tok_s"), med(lr, "decode_tok_s")
        llama_cells = (
            f"{lt:.1f} | {ld:.1f} | {lt / l1:.2f} | {med(lr, 'ttft_p50_ms'):.0f} | "
            f"{med(lr, 'itl_p50_ms'):.1f} / {med(lr, 'itl_p99_ms'):.1f} | {qt / lt:.2f}, {qd / ld:.2f}"
            if lr
            else "not run | | | | | "
        )
        lines.append(
            f"| {c} | {qt:.1f} | {qd:.1f} | {qt / q1:.2f} | {med(q, 'ttft_p50_ms'):.0f} | "
            f"{med(q, 'itl_p50_ms'):.1f} / {med(q, 'itl_p99_ms'):.1f} | {llama_cells} |"
        )
    lines.append("")
    at = {c: med(qrt_rows[c], "tok_s") for c in clients}
    checks = []
    if 8 in at:
        q8 = qrt_rows[8]
        checks.append(
            f"at 8: aggregate {at[8] / pp:.2f}×, decode {med(q8, 'decode_tok_s') / pp:.2f}× pp128 (goal ≥ 0.75)"
        )
        if 16 in at:
            checks.append(f"at 16 / at 8 = {at[16] / at[8]:.2f} (goal ≥ 1)")
        if llama_rows[8]:
            checks.append(f"qrt / llama-server at 8 = {at[8] / med(llama_rows[8], 'tok_s'):.2f} (goal ≥ 2)")
        checks.append(
            f"inter-token p99 / p50 at 8 = {med(q8, 'itl_p99_ms') / med(q8, 'itl_p50_ms'):.2f} (goal ≤ 2)"
        )
        if 8 in direct:
            checks.append(f"HTTP / direct at 8 = {at[8] / direct[8]['tok_s']:.2f} (goal ≥ 0.9)")
    checks.append(
        f"a 512-token prompt arriving among 8 streams ({stall['newcomer_s']:.2f} s to its first token): "
        f"largest gap of the 8 streams {stall['max_gap_ms']:.0f} ms (goal ≤ 1000; their ITL p50 "
        f"{stall['itl_p50_ms']:.1f} ms)"
    )
    checks.append(
        f"1,000-token shared prefix: TTFT warm {prefix['warm_ms']:.0f} ms, cold {prefix['cold_ms']:.0f} ms = "
        f"{prefix['warm_ms'] / prefix['cold_ms']:.1%} (goal ≤ 20%)"
    )
    if direct:
        pump = ", ".join(f"{c}: {r['pump_us_per_step']:.0f} µs" for c, r in direct.items())
        direct_rates = ", ".join(f"{c}: {r['tok_s']:.1f} tok/s" for c, r in direct.items())
        checks.append(f"direct (Model.generate from threads) {direct_rates}; Python per step (pump) {pump}")
    lines += [f"- {c}" for c in checks] + [""]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append", type=pathlib.Path, default=[])
    ap.add_argument("--tinyllama", action="store_true", help="also the 1.1B file of bench/make_tinyllama.py")
    ap.add_argument("-c", "--clients", default="1,2,4,8,16")
    ap.add_argument("-n", type=int, default=128, help="tokens generated per request")
    ap.add_argument("-p", type=int, default=128, help="prompt length in words (about tokens)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds (medians reported)")
    ap.add_argument("--no-llama", action="store_true", help="skip llama-server")
    ap.add_argument("-o", "--output", type=pathlib.Path, default=REPO / "bench" / "RESULTS.md")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    models = list(args.model)
    if not models:
        from qrt.demo import demo_model_path

        models.append(pathlib.Path(demo_model_path()))
    if args.tinyllama:
        from make_tinyllama import make

        models.append(pathlib.Path(make()))
    llama_server = None
    if not args.no_llama:
        from tests.support.llamacpp import ensure_server

        llama_server = ensure_server()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Continuous batching: qrt-serve against llama-server (bench/serve.py)",
        "",
        f"Measured {now} on {cpu_name()} ({os.cpu_count()} CPUs), qrt {git_rev()}, llama-server from "
        "llama-cpp-python 0.3.36. "
        f"`python bench/serve.py {' '.join(sys.argv[1:])}`: {args.threads} threads, prompts of about {args.p} "
        f"tokens (different for every client), {args.n} generated tokens per request, ignore_eos, seed 1; "
        f"qrt-serve and llama-server -np N alternating, {args.rounds} round(s), medians.",
        "",
    ]
    for model in models:
        lines += bench_model(model, args, llama_server)
    report = "\n".join(lines) + "\n"
    print(report)
    if not args.no_write:
        write_section(args.output, "## Continuous batching", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
