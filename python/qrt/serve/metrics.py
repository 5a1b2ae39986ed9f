"""Prometheus metrics of qrt-serve: the engine's counters and gauges, and the latencies clients see.

Latencies are taken where the HTTP handler receives each token from the engine: time to first token
(TTFT) from the moment the request was read, inter-token latency (ITL) between consecutive tokens of a
request, and the whole request. Text exposition format 0.0.4
(https://prometheus.io/docs/instrumenting/exposition_formats/); histograms are cumulative, with ``+Inf``,
``_sum`` and ``_count``.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence

# seconds; vLLM's buckets for the same quantities, a little denser below 100 ms where CPU decode steps lie
TTFT_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    60.0,
)
ITL_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
REQUEST_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


class Histogram:
    def __init__(self, name: str, doc: str, buckets: Sequence[float]) -> None:
        self.name, self.doc, self.bounds = name, doc, tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} histogram"]
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{self.name}_bucket{{le="{le}"}} {total}')
        out += [f"{self.name}_sum {self.sum!r}", f"{self.name}_count {total}"]
        return out


class Metrics:
    """What the app observes; ``render`` adds the engine's own statistics."""

    def __init__(self) -> None:
        self.ttft = Histogram("qrt_time_to_first_token_seconds", "time to first token", TTFT_BUCKETS)
        self.itl = Histogram(
            "qrt_inter_token_latency_seconds", "time between tokens of a request", ITL_BUCKETS
        )
        self.request = Histogram("qrt_request_duration_seconds", "time to the last token", REQUEST_BUCKETS)
        self.finished: Counter[str] = Counter()

    def render(self, stats: dict) -> str:
        lines: list[str] = []

        def one(name: str, kind: str, value: float, doc: str) -> None:
            lines.extend([f"# HELP {name} {doc}", f"# TYPE {name} {kind}", f"{name} {value}"])

        one("qrt_requests_running", "gauge", stats["running"], "requests holding a sequence")
        one("qrt_requests_waiting", "gauge", stats["waiting"], "requests queued")
        one("qrt_kv_blocks_total", "gauge", stats["kv_blocks"], "KV cache blocks of 16 tokens")
        one("qrt_kv_blocks_used", "gauge", stats["kv_blocks"] - stats["kv_free"], "KV cache blocks in use")
        one("qrt_kv_blocks_cached", "gauge", stats["kv_cached"], "KV blocks kept only by the prefix cache")
        one("qrt_steps_total", "counter", stats["steps"], "batched forward steps")
        one("qrt_generation_tokens_total", "counter", stats["tokens_decoded"], "tokens generated")
        one("qrt_prompt_tokens_total", "counter", stats["tokens_prefilled"], "prompt tokens evaluated")
        one("qrt_preemptions_total", "counter", stats["preemptions"], "sequences preempted for recompute")
        hits, queries = stats["prefix_hit_tokens"], stats["prefix_query_tokens"]
        one("qrt_prefix_cache_hit_tokens_total", "counter", hits, "prompt tokens reused")
        one("qrt_prefix_cache_query_tokens_total", "counter", queries, "prompt tokens looked up")
        one("qrt_prefix_cache_hit_rate", "gauge", hits / queries if queries else 0.0, "reused / looked up")
        name = "qrt_requests_finished_total"
        lines += [f"# HELP {name} requests ended, by reason", f"# TYPE {name} counter"]
        for reason in ("stop", "length", "cancelled", "error"):
            lines.append(f'{name}{{finish_reason="{reason}"}} {self.finished[reason]}')
        for h in (self.ttft, self.itl, self.request):
            lines += h.lines()
        return "\n".join(lines) + "\n"
