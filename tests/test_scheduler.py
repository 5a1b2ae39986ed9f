"""Continuous batching (csrc/engine/scheduler.h) through Model.generate / agenerate on SmolLM2.

Batch invariance: a request's greedy and seeded tokens are the same alone and among 15 others, with its
prompt chunked differently, and after being preempted and recomputed. Cancellation returns the blocks,
a pool too small for every request at once still completes them all with the same texts, and threads and
coroutines share the engine's steps.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest

import qrt

PROMPTS = [
    "The capital of France is",
    "Once upon a time",
    "def fibonacci(n):",
    "1, 2, 3, 4,",
    "The three primary colors are",
    "Water boils at",
    "A haiku about autumn:\n",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]
SEEDED = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)


@pytest.fixture(scope="module")
def model(smollm2_path):
    with qrt.load(smollm2_path, n_ctx=256, n_threads=2, n_seq_max=16) as m:
        yield m


def sixteen() -> list[tuple[str, dict]]:
    """16 requests: the 8 prompts greedy, then seeded (each its own seed), various lengths."""
    out = []
    for i, p in enumerate(PROMPTS):
        out.append((p, dict(max_tokens=12 + 3 * i, temperature=0)))
    for i, p in enumerate(PROMPTS):
        out.append((p, dict(max_tokens=20 + 2 * i, seed=100 + i, **SEEDED)))
    return out


def wait_idle(model: qrt.Model, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stats = model.engine.scheduler.stats
        if stats["running"] == 0 and stats["waiting"] == 0 and stats["kv_free"] == stats["kv_blocks"]:
            return stats
        if time.monotonic() > deadline:
            return stats
        time.sleep(0.01)


def test_sixteen_concurrent_requests_give_what_each_gives_alone(model: qrt.Model) -> None:
    reqs = sixteen()
    alone = [model.generate(p, **kw) for p, kw in reqs]
    results: list[str | None] = [None] * len(reqs)
    before = model.engine.scheduler.stats["steps"]

    def worker(i: int) -> None:
        p, kw = reqs[i]
        results[i] = model.generate(p, **kw)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(reqs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == alone
    stats = wait_idle(model)
    # shared steps: far fewer steps than the tokens generated
    n_tokens = sum(kw["max_tokens"] for _, kw in reqs)
    assert stats["steps"] - before < n_tokens // 2
    assert stats["max_batch"] >= 8
    assert stats["kv_free"] == stats["kv_blocks"]


def test_list_of_prompts_returns_texts_in_input_order(model: qrt.Model, capsys) -> None:
    alone = [model.generate(p, max_tokens=10, temperature=0) for p in PROMPTS]
    assert model.generate(PROMPTS, max_tokens=10, temperature=0, progress=False) == alone
    assert "generate" not in capsys.readouterr().err
    ids = [model.tokenize(p, add_bos=None, special=True) for p in PROMPTS[:3]]
    assert model.generate(ids, max_tokens=10, temperature=0, progress=True) == alone[:3]
    assert "3/3" in capsys.readouterr().err  # the tqdm bar
    with pytest.raises(ValueError, match="stream"):
        model.generate(PROMPTS, stream=True)
    with pytest.raises(ValueError, match=r"prompt has \d+ tokens, context is 256"):
        model.generate(["hi", "word " * 300], max_tokens=1)


def test_chunked_prefill_gives_the_same_tokens(smollm2_path, model: qrt.Model) -> None:
    long_prompt = " ".join(PROMPTS) * 3  # ~150 tokens: 10 chunks of 16
    want = model.generate(long_prompt, max_tokens=16, temperature=0)
    with qrt.load(smollm2_path, n_ctx=256, n_threads=2, n_seq_max=4, prefill_budget=16) as small:
        # alone: the idle budget (n_batch) takes the whole prompt; with a decoding stream beside it, chunks
        results = {}

        def other() -> None:
            results["other"] = small.generate("Once upon a time", max_tokens=60, temperature=0)

        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.05)
        results["long"] = small.generate(long_prompt, max_tokens=16, temperature=0)
        t.join()
    assert results["long"] == want
    assert results["other"] == model.generate("Once upon a time", max_tokens=60, temperature=0)


def test_pool_too_small_for_all_preempts_and_still_gives_every_text(smollm2_path) -> None:
    reqs = [(p, dict(max_tokens=40, ignore_eos=True, temperature=0)) for p in PROMPTS[:4]]
    reqs += [(p, dict(max_tokens=40, ignore_eos=True, seed=7, **SEEDED)) for p in PROMPTS[4:6]]
    with qrt.load(smollm2_path, n_ctx=128, n_threads=2, n_seq_max=6) as big:
        want = [big.generate(p, **kw) for p, kw in reqs]
    # 12 blocks of 16 tokens for six requests of ~8 + 40 tokens (~3 blocks each): they cannot all run
    with qrt.load(smollm2_path, n_ctx=128, n_threads=2, n_seq_max=6, kv_tokens=192) as small:
        got: list[str | None] = [None] * len(reqs)

        def worker(i: int) -> None:
            got[i] = small.generate(reqs[i][0], **reqs[i][1])

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(reqs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = wait_idle(small)
        assert got == want
        assert stats["preemptions"] > 0
        assert stats["kv_free"] == stats["kv_blocks"] == 12


def test_cancelled_streams_free_their_blocks(model: qrt.Model) -> None:
    wait_idle(model)
    streams = [
        model.generate(p, max_tokens=200, temperature=0, ignore_eos=True, stream=True) for p in PROMPTS
    ]
    for s in streams:
        next(iter(s))
    assert model.engine.scheduler.stats["kv_free"] < model.engine.scheduler.stats["kv_blocks"]
    for s in streams:
        s.close()  # GeneratorExit: the request is cancelled
    stats = wait_idle(model)
    assert stats["running"] == 0 and stats["kv_free"] == stats["kv_blocks"]
    assert model.generate(PROMPTS[0], max_tokens=8, temperature=0)


def test_agenerate_many_coroutines_share_the_model(model: qrt.Model) -> None:
    want = [model.generate(p, max_tokens=16, temperature=0) for p in PROMPTS]

    async def one(p: str) -> str:
        return "".join([piece async for piece in model.agenerate(p, max_tokens=16, temperature=0)])

    async def main() -> list[str]:
        return await asyncio.gather(*(one(p) for p in PROMPTS))

    assert asyncio.run(main()) == want

    async def early_exit() -> None:
        async for _ in model.agenerate(PROMPTS[1], max_tokens=500, ignore_eos=True):
            break

    asyncio.run(early_exit())
    stats = wait_idle(model)
    assert stats["running"] == 0 and stats["kv_free"] == stats["kv_blocks"]


def test_logits_alongside_generations(model: qrt.Model) -> None:
    ids = model.tokenize(PROMPTS[0], add_bos=None)
    ref = model.logits(ids)
    out: dict[str, str] = {}
    t = threading.Thread(
        target=lambda: out.update(a=model.generate(PROMPTS[1], max_tokens=30, temperature=0))
    )
    t.start()
    again = model.logits(ids)
    t.join()
    assert (again == ref).all()
    assert out["a"] == model.generate(PROMPTS[1], max_tokens=30, temperature=0)


def test_shared_prefix_is_computed_once(smollm2_path) -> None:
    system = (
        "<|im_start|>system\nYou are a careful assistant. Answer in one short sentence, without "
        "lists, and never mention that you are an AI. Be concrete and friendly.<|im_end|>\n"
    )
    questions = ["What is the capital of France?", "Name a primary color.", "How many legs has a cat?"]
    prompts = [f"{system}<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n" for q in questions]
    with qrt.load(smollm2_path, n_ctx=256, n_threads=2, n_seq_max=4) as m:
        n_system = len(m.tokenize(system, add_bos=None, special=True))
        # cold: each prompt first in a fresh model has nothing to share
        cold = []
        for p in prompts:
            with qrt.load(smollm2_path, n_ctx=256, n_threads=2, n_seq_max=1) as fresh:
                cold.append(fresh.generate(p, max_tokens=12, temperature=0))
                assert fresh.engine.scheduler.stats["prefix_hit_tokens"] == 0
        warm = [m.generate(p, max_tokens=12, temperature=0) for p in prompts]
        stats = m.engine.scheduler.stats
        assert warm == cold
        # the 2nd and 3rd prompts take the system prompt's full blocks from the cache
        assert stats["prefix_hit_tokens"] >= 2 * (n_system // 16 * 16)
        assert stats["kv_cached"] > 0 and stats["kv_free"] == stats["kv_blocks"]
        # the same prompt again: everything but its last partial block is shared
        again = m.generate(prompts[0], max_tokens=12, temperature=0)
        assert again == cold[0]


def test_engine_threads_end_with_the_model(smollm2_path) -> None:
    def pumps() -> int:
        return sum(t.name == "qrt-engine-pump" for t in threading.enumerate())

    before = pumps()
    for _ in range(2):
        m = qrt.load(smollm2_path, n_ctx=64, n_threads=2, n_seq_max=2)
        m.generate("Hi", max_tokens=2)
        assert pumps() == before + 1
        m.close()
        assert pumps() == before
    m = qrt.load(smollm2_path, n_ctx=64, n_threads=2, n_seq_max=2)
    next(iter(m.generate("Hi", max_tokens=50, ignore_eos=True, stream=True)))
    del m  # never closed: collected, its engine closes
    gc.collect()
    deadline = time.monotonic() + 5
    while pumps() != before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pumps() == before


def prompt_logprob_events(m: qrt.Model, ids: list[int], top: int, **kw) -> tuple[list, str]:
    """Submits ids with prompt log-probabilities; returns the prompt events and the request's finish."""
    from qrt.engine import queue_sink

    arr, request = m._request(ids, prompt_logprobs=top, **kw)
    q, sink = queue_sink()
    m.engine.submit(arr, sink, **request)
    events = []
    while True:
        ev = q.get(timeout=60)
        if ev.prompt:
            events.append(ev)
        if ev.finish is not None:
            return events, ev.finish


def test_prompt_logprobs_equal_a_full_forward_across_chunks_and_preemption(
    model: qrt.Model, repo_root, smollm2_path
) -> None:
    import numpy as np

    text = (repo_root / "tests" / "data" / "gpl-3.0.txt").read_text()[:700]
    ids = model.tokenize(text)[:150]  # three chunks of 64 tokens, ten blocks of 16
    logits = model.logits(ids).astype(np.float64)
    lse = logits.max(1) + np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))
    want = [logits[i, ids[i + 1]] - lse[i] for i in range(len(ids) - 1)]
    want_top = [list(np.argsort(-logits[i], kind="stable")[:2]) for i in range(len(ids) - 1)]

    model.generate(ids, max_tokens=1, temperature=0)  # its blocks are now in the prefix cache
    events, finish = prompt_logprob_events(model, ids, 2, max_tokens=0)
    assert finish == "length"
    assert [ev.token for ev in events] == ids[1:]
    assert np.allclose([ev.logprob for ev in events], want, atol=1e-4)
    assert [[t for t, _ in ev.top] for ev in events] == want_top
    assert all(ev.top[0][1] >= ev.logprob - 1e-6 for ev in events)

    # A pool too small for three long generations and the prompt at once (18 blocks; the three alone grow to
    # 21), all submitted together before the prompt: preemptions recompute sequences, and every prompt
    # log-probability still comes exactly once, in order, with the same value.
    from qrt.engine import queue_sink

    with qrt.load(smollm2_path, n_ctx=256, n_threads=2, n_seq_max=4, kv_tokens=288) as small:
        q, sink = queue_sink()
        for p in PROMPTS[:3]:
            arr, request = small._request(p, max_tokens=90, ignore_eos=True)
            small.engine.submit(arr, sink, **request)
        arr, request = small._request(ids, prompt_logprobs=0, max_tokens=30, temperature=0, ignore_eos=True)
        rid = small.engine.submit(arr, sink, **request)
        events, finishes = [], {}
        while len(finishes) < 4:
            ev = q.get(timeout=60)
            if ev.request == rid and ev.prompt:
                events.append(ev)
            if ev.finish is not None:
                finishes[ev.request] = ev.finish
        finish = finishes[rid]
        assert small.engine.scheduler.stats["preemptions"] > 0
    assert finish == "length"
    assert [ev.token for ev in events] == ids[1:]
    assert np.allclose([ev.logprob for ev in events], want, atol=1e-4)


def test_prompt_chunks_shrink_to_keep_steps_short_while_others_decode(smollm2_path) -> None:
    """max_step_seconds: a prompt arriving while a stream decodes goes in the smallest chunks when steps
    would be slower than the limit (here any), and its text is what it is alone."""
    from qrt.engine import Engine, queue_sink

    prompt_b = "Write a long story about a dragon. " * 20  # about 180 tokens
    with qrt.load(smollm2_path, n_ctx=512, n_threads=2) as m:
        want_b = m.generate(prompt_b, max_tokens=8, temperature=0)
    with qrt.load(smollm2_path, n_ctx=512, n_threads=2, n_seq_max=2) as m:
        pieces = [m.tokenizer.token_to_piece(i) for i in range(m.n_vocab)]
        engine = Engine(m._native, pieces, 2, max_step_seconds=1e-9)
        try:
            ids_a, req_a = m._request("Count: " + "one two three four five six seven " * 5, max_tokens=120)
            assert 32 <= len(ids_a) <= 64  # one idle step of 32+ tokens measures the prompt rate
            qa, sink_a = queue_sink()
            engine.submit(ids_a, sink_a, **req_a)
            qa.get(timeout=60)  # A decodes now
            ids_b, req_b = m._request(prompt_b, max_tokens=8, temperature=0)
            qb, sink_b = queue_sink()
            engine.submit(ids_b, sink_b, **req_b)
            text = b""
            while True:
                ev = qb.get(timeout=60)
                text += ev.text
                if ev.finish is not None:
                    break
            while qa.get(timeout=60).finish is None:
                pass
            stats = engine.scheduler.stats
        finally:
            engine.close()
    assert text.decode() == want_b
    assert stats["max_batch"] == len(ids_a)  # B went in 4-token chunks (beside A's token), not 180 at once
