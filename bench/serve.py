"""Concurrency sweep of qrt's continuous batching: aggregate tok/s, TTFT and inter-token latency.

    python bench/serve.py [-m model.gguf] [-c 1,2,4,8,16] [-n 128] [-p 128] [-t 2] [--http] [--direct]

Each of N concurrent clients streams one request (a fixed prompt of about -p tokens, -n generated tokens,
ignore_eos, the same seed). --direct drives Model.generate(stream=True) from N Python threads; --http
starts qrt-serve on a free loopback port and streams /v1/completions over N connections (both by default).
Prints one table row per (mode, N): aggregate tok/s, its multiple of single-stream, TTFT p50, inter-token
p50/p99, and the engine's per-step Python cost (the pump's time per batch of events, direct mode).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def prompt_of(n_tokens: int) -> str:
    words = "the quick brown fox jumps over the lazy dog while a cat watches from the old stone wall".split()
    return " ".join(words[i % len(words)] for i in range(n_tokens))


def stream_direct(model, prompt: str, n: int, seed: int) -> list[float]:
    times = [time.perf_counter()]
    for _ in model.generate(prompt, max_tokens=n, ignore_eos=True, seed=seed, stream=True):
        times.append(time.perf_counter())
    return times


def stream_http(port: int, prompt: str, n: int, seed: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": prompt, "max_tokens": n, "ignore_eos": True, "seed": seed, "stream": True}
    times = [time.perf_counter()]
    conn.request(
        "POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    r = conn.getresponse()
    for line in r:
        if line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
            times.append(time.perf_counter())
    conn.close()
    return times[:-1]  # the last event is the finish chunk


def sweep(name: str, run_one, clients: list[int], n: int, prompt: str, pump=None) -> list[dict]:
    rows = []
    base = None
    run_one(prompt, 4, 0)  # warm up
    for c in clients:
        results: list[list[float]] = [[] for _ in range(c)]
        p0 = pump() if pump else (0.0, 0)

        def worker(i: int, results=results) -> None:
            results[i] = run_one(prompt, n, 1)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(c)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        p1 = pump() if pump else (0.0, 0)
        tokens = c * n
        ttft = [r[1] - r[0] for r in results if len(r) > 1]
        itl = [b - a for r in results for a, b in itertools.pairwise(r[1:])]
        agg = tokens / wall
        base = base or agg
        row = {
            "mode": name,
            "clients": c,
            "agg_tok_s": agg,
            "x_single": agg / base,
            "ttft_p50_ms": 1e3 * statistics.median(ttft),
            "itl_p50_ms": 1e3 * pct(itl, 0.5),
            "itl_p99_ms": 1e3 * pct(itl, 0.99),
            "pump_us_per_step": 1e6 * (p1[0] - p0[0]) / max(1, p1[1] - p0[1]) if pump else float("nan"),
        }
        rows.append(row)
        print(
            f"{name:6s} {c:3d} clients: {agg:7.1f} tok/s ({row['x_single']:.2f}x), TTFT p50 "
            f"{row['ttft_p50_ms']:.0f} ms, ITL p50 {row['itl_p50_ms']:.1f} / p99 {row['itl_p99_ms']:.1f} ms"
            + (f", pump {row['pump_us_per_step']:.0f} us/step" if pump else ""),
            flush=True,
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("-c", "--clients", default="1,2,4,8,16")
    ap.add_argument("-n", type=int, default=128, help="tokens generated per request")
    ap.add_argument("-p", type=int, default=128, help="prompt length in words (about tokens)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--direct", action="store_true")
    ap.add_argument("--http", action="store_true")
    args = ap.parse_args()
    import qrt

    path = args.model
    if path is None:
        from qrt.demo import demo_model_path

        path = str(demo_model_path())
    clients = [int(x) for x in args.clients.split(",")]
    both = not (args.direct or args.http)
    prompt = prompt_of(args.p)
    parallel = max(clients)
    if args.direct or both:
        with qrt.load(path, n_ctx=1024, n_threads=args.threads, n_seq_max=parallel) as m:
            sweep(
                "direct",
                lambda p, n, s: stream_direct(m, p, n, s),
                clients,
                args.n,
                prompt,
                pump=lambda: (m.engine.pump_seconds, m.engine.pump_batches),
            )
    if args.http or both:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "qrt.serve", "-m", path, "--port", str(port), "-c", "1024"]
        cmd += ["-t", str(args.threads), "--parallel", str(parallel)]
        proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        try:
            for _ in range(600):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", "/health")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            sweep("http", lambda p, n, s: stream_http(port, p, n, s), clients, args.n, prompt)
        finally:
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
