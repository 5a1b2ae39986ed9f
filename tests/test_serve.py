"""qrt-serve against the official openai client: each server is started by its test on a free loopback
port and stopped by it. Completions and chat, streaming and not, stop strings, seeds, usage, the errors of
BAD_INPUTS.md 38-44, the API key, disconnects, a bounded queue, many concurrent clients, SIGTERM."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

import qrt

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

N_CTX = 256
PROMPT = "The capital of France is"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model_path, *args: str) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "qrt.serve", "-m", str(model_path), "--port", str(self.port)]
        cmd += ["-c", str(N_CTX), "-t", "2", *args]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"qrt-serve exited: {self.output()}")
            with contextlib.suppress(OSError):
                if self.get("/health")[0] == 200:
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("qrt-serve did not become healthy in 60 s")
            time.sleep(0.1)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def client(self, api_key: str = "none") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, max_retries=0, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read(), dict(r.getheaders())
        finally:
            conn.close()

    def get(self, path: str):
        status, data, _ = self.request("GET", path)
        return status, data

    def post(self, path: str, body: object, headers: dict | None = None):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, data, hdrs = self.request(
            "POST", path, raw, {"Content-Type": "application/json", **(headers or {})}
        )
        return status, json.loads(data) if data.startswith(b"{") else data, hdrs

    def metrics(self) -> dict[str, float]:
        _, text = self.get("/metrics")
        out = {}
        for line in text.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.split()
                out[k] = float(v)
        return out

    def wait_idle(self, timeout: float = 5.0) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if (
                m["qrt_requests_running"] == 0 and m["qrt_kv_blocks_used"] == 0
            ) or time.monotonic() > deadline:
                return m
            time.sleep(0.02)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.returncode != 0:
            print(self.output(), file=sys.stderr)
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(smollm2_path) -> Iterator[Server]:
    s = Server(smollm2_path, "--parallel", "16")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def local(smollm2_path) -> Iterator[qrt.Model]:
    with qrt.load(smollm2_path, n_ctx=N_CTX, n_threads=2) as m:
        yield m


def test_health_and_models(server: Server) -> None:
    assert server.get("/health") == (200, b'{"status":"ok"}')
    models = server.client().models.list()
    assert [m.id for m in models.data] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]


def test_completion_matches_generate(server: Server, local: qrt.Model) -> None:
    r = server.client().completions.create(model="x", prompt=PROMPT, max_tokens=12, temperature=0)
    assert r.choices[0].text == local.generate(PROMPT, max_tokens=12, temperature=0)
    assert "Paris" in r.choices[0].text
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(local.tokenize(PROMPT, add_bos=None))
    assert r.usage.completion_tokens == 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12


def test_streamed_completion_joins_to_the_whole(server: Server) -> None:
    c = server.client()
    whole = c.completions.create(model="x", prompt=PROMPT, max_tokens=20, temperature=0).choices[0].text
    chunks = list(c.completions.create(model="x", prompt=PROMPT, max_tokens=20, temperature=0, stream=True))
    assert "".join(ch.choices[0].text for ch in chunks) == whole
    assert chunks[-1].choices[0].finish_reason == "length"
    # the raw stream ends with data: [DONE]
    status, raw, _ = server.request(
        "POST", "/v1/completions", json.dumps({"prompt": PROMPT, "max_tokens": 3, "stream": True}).encode()
    )
    assert status == 200 and raw.rstrip().endswith(b"data: [DONE]")


def test_chat_streaming_and_not(server: Server, local: qrt.Model) -> None:
    c = server.client()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    r = c.chat.completions.create(model="x", messages=messages, max_tokens=16, temperature=0)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == local.chat(messages, max_tokens=16, temperature=0)
    stream = c.chat.completions.create(
        model="x",
        messages=messages,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    # a short answer ends at <|im_end|>: finish_reason "stop", and the token is not in the text
    r = c.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "Say hi"}], max_tokens=200, temperature=0
    )
    assert r.choices[0].finish_reason == "stop" and "<|im_end|>" not in r.choices[0].message.content
    # text content parts
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]
    r2 = c.chat.completions.create(model="x", messages=parts, max_tokens=16, temperature=0)
    assert r2.choices[0].message.content == local.chat(messages, max_tokens=16, temperature=0)


def test_stop_strings_and_seeds(server: Server, local: qrt.Model) -> None:
    c = server.client()
    prompt = "Count: one, two,"
    full = local.generate(prompt, max_tokens=20, temperature=0)
    r = c.completions.create(model="x", prompt=prompt, max_tokens=20, temperature=0, stop=["four, f"])
    assert r.choices[0].text == full[: full.index("four, f")] and r.choices[0].finish_reason == "stop"
    kw = dict(model="x", prompt=PROMPT, max_tokens=24, temperature=1.0, top_p=1.0)
    a = c.completions.create(seed=42, **kw).choices[0].text
    assert c.completions.create(seed=42, **kw).choices[0].text == a
    assert a == local.generate(PROMPT, max_tokens=24, temperature=1.0, top_p=1.0, seed=42)
    others = {c.completions.create(seed=s, **kw).choices[0].text for s in (1, 2, 3)}
    assert len(others | {a}) > 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"prompt": PROMPT, "max_tokens": "ten"}, "max_tokens"),
        ({"prompt": PROMPT, "max_tokens": -1}, "max_tokens"),
        ({"prompt": PROMPT, "temperature": "hot"}, "temperature"),
        ({"prompt": PROMPT, "top_p": 0}, "top_p"),
        ({"prompt": PROMPT, "n": 2}, "'n'"),
        ({"prompt": PROMPT, "stop": [1]}, "stop"),
        ({"prompt": {"a": 1}}, "prompt"),
        ({"prompt": "word " * 300}, f"context is {N_CTX}"),
        ({"prompt": [10**9]}, "vocabulary"),
    ],
)
def test_bad_completion_fields_are_400(server: Server, body: dict, fragment: str) -> None:
    status, err, _ = server.post("/v1/completions", body)
    assert status == 400, err
    assert fragment in err["error"]["message"] and err["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"messages": {}}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "role"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "image_url"),
        ({"messages": [{"role": "user", "content": 5}]}, "content"),
        ({"messages": [{"role": "user", "content": "word " * 300}]}, f"context is {N_CTX}"),
    ],
)
def test_bad_chat_fields_are_400(server: Server, body: dict, fragment: str) -> None:
    status, err, _ = server.post("/v1/chat/completions", body)
    assert status == 400, err
    assert fragment in err["error"]["message"]


def test_malformed_bodies(server: Server) -> None:
    assert server.post("/v1/completions", b"{not json")[0] == 400
    assert server.post("/v1/completions", b"[1, 2]")[0] == 400
    assert server.post("/v1/completions", b'"a string"')[0] == 400
    # a declared size over the limit: 413 before reading the body
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n{"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    with pytest.raises(openai.BadRequestError, match="context is 256"):
        server.client().completions.create(model="x", prompt="word " * 300)
    # the server carries on
    assert server.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 2})[0] == 200


def test_prompt_too_long_message_has_both_numbers(server: Server, local: qrt.Model) -> None:
    n = len(local.tokenize("word " * 300, add_bos=None))
    status, err, _ = server.post("/v1/completions", {"prompt": "word " * 300})
    assert status == 400 and err["error"]["message"] == f"prompt has {n} tokens, context is {N_CTX}"
    # max_tokens beyond the context: clamped, finish_reason "length"
    status, r, _ = server.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 10**6, "ignore_eos": True})
    assert status == 200 and r["choices"][0]["finish_reason"] == "length"
    assert r["usage"]["total_tokens"] == N_CTX


def test_client_disconnects_free_their_blocks(server: Server) -> None:
    cancelled_before = server.wait_idle()['qrt_requests_finished_total{finish_reason="cancelled"}']
    for _ in range(10):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        body = {"prompt": PROMPT, "max_tokens": 200, "ignore_eos": True, "stream": True}
        conn.request(
            "POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        r = conn.getresponse()
        assert r.status == 200
        r.fp.readline()  # the first event
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
    m = server.wait_idle()
    assert m["qrt_requests_running"] == 0 and m["qrt_kv_blocks_used"] == 0
    # not streamed: the client sends its request and leaves before the answer
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        body = json.dumps({"prompt": PROMPT, "max_tokens": 200, "ignore_eos": True}).encode()
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(0.05)
        sock.close()
    m = server.wait_idle()
    assert m["qrt_requests_running"] == 0 and m["qrt_kv_blocks_used"] == 0
    assert m['qrt_requests_finished_total{finish_reason="cancelled"}'] - cancelled_before == 15


def test_sixteen_concurrent_clients_get_what_each_gets_alone(server: Server) -> None:
    c = server.client()
    prompts = [f"{PROMPT} {i}" if i % 2 else f"Story {i}: Once upon a time" for i in range(16)]
    kws = [dict(temperature=0) if i % 2 else dict(temperature=1.0, seed=i) for i in range(16)]
    alone = [
        c.completions.create(model="x", prompt=p, max_tokens=16 + i, **kw).choices[0].text
        for i, (p, kw) in enumerate(zip(prompts, kws, strict=True))
    ]
    got: list[str | None] = [None] * 16

    def worker(i: int) -> None:
        got[i] = (
            c.completions.create(model="x", prompt=prompts[i], max_tokens=16 + i, **kws[i]).choices[0].text
        )

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == alone


def test_load_64_requests_from_16_clients(server: Server, local: qrt.Model) -> None:
    """64 requests from 16 concurrent clients, twice: each answer is its own prompt's (none lost, none
    swapped or duplicated), every block comes back, and the server's memory does not grow."""
    c = server.client()
    prompts = [f"Item {i}:" for i in range(64)]
    want = local.generate(prompts, max_tokens=8, temperature=0, ignore_eos=True, progress=False)

    def rss_mib() -> float:
        with open(f"/proc/{server.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

    def one_round() -> tuple[dict[int, str], list[int]]:
        results: dict[int, str] = {}
        usage: list[int] = []
        lock = threading.Lock()

        def client(k: int) -> None:
            for i in range(4 * k, 4 * k + 4):
                r = c.completions.create(
                    model="x", prompt=prompts[i], max_tokens=8, temperature=0, extra_body={"ignore_eos": True}
                )
                with lock:
                    results[i] = r.choices[0].text
                    usage.append(r.usage.completion_tokens)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results, usage

    for round_ in range(2):
        results, usage = one_round()
        assert [results.get(i) for i in range(64)] == want
        assert usage == [8] * 64
        m = server.wait_idle()
        assert m["qrt_kv_blocks_used"] == 0
        if round_ == 0:
            rss_after_first = rss_mib()
    assert rss_mib() - rss_after_first < 32, "the server's RSS grew over a second round of 64 requests"


def test_api_key(smollm2_path) -> None:
    s = Server(smollm2_path, "--api-key", "sekrit", "--parallel", "2")
    try:
        assert s.get("/health")[0] == 200  # stays open
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekrit"}):
            status, err, _ = s.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 1}, headers)
            assert status == 401 and err["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            s.client("wrong").models.list()
        r = s.client("sekrit").completions.create(model="x", prompt=PROMPT, max_tokens=2)
        assert r.usage.completion_tokens >= 1
    finally:
        assert s.stop() == 0


def test_full_queue_is_503_and_sigterm_finishes_in_flight(smollm2_path) -> None:
    s = Server(smollm2_path, "--parallel", "1", "--max-waiting", "1")
    try:
        results: dict[int, object] = {}

        def worker(i: int) -> None:
            body = {"prompt": PROMPT, "max_tokens": 48, "ignore_eos": True, "temperature": 0}
            status, r, headers = s.post("/v1/completions", body)
            results[i] = (status, r, headers)

        threads = []
        for i in range(4):
            threads.append(threading.Thread(target=worker, args=(i,)))
            threads[-1].start()
            time.sleep(0.05)
        time.sleep(0.3)
        s.proc.send_signal(signal.SIGTERM)  # in flight: the running one and the waiting one finish
        for t in threads:
            t.join()
        assert s.proc.wait(30) == 0
        statuses = sorted(r[0] for r in results.values())
        assert statuses.count(200) >= 2 and 503 in statuses
        for status, r, headers in results.values():
            if status == 503:
                assert headers.get("retry-after") and "waiting" in r["error"]["message"]
            else:
                assert r["usage"]["completion_tokens"] == 48
    finally:
        s.stop()


def test_a_file_that_does_not_load_exits_1(tmp_path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 60)
    run = subprocess.run(
        [sys.executable, "-m", "qrt.serve", "-m", str(bad), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    assert run.returncode == 1
    assert "qrt-serve: error: " in run.stderr and "bad.gguf" in run.stderr


def test_logprobs(server: Server, local: qrt.Model) -> None:
    import numpy as np

    c = server.client()
    r = c.completions.create(model="x", prompt=PROMPT, max_tokens=6, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset[0] == 0 and lp.text_offset[1] == len(lp.tokens[0])
    for tok, best, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert len(top) == 3 and max(top.values()) == pytest.approx(best, abs=1e-6) and top[tok] == best
    # the first token's log-probability from a full forward of the prompt
    logits = local.logits(local.tokenize(PROMPT, add_bos=None))[-1].astype(np.float64)
    want = logits.max() - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
    assert lp.token_logprobs[0] == pytest.approx(want, abs=1e-3)
    # chat: logprobs + top_logprobs, streamed and not; the end-of-generation token is not listed
    messages = [{"role": "user", "content": "Say hi"}]
    r = c.chat.completions.create(
        model="x", messages=messages, max_tokens=40, temperature=0, logprobs=True, top_logprobs=2
    )
    content = r.choices[0].logprobs.content
    assert "".join(t.token for t in content) == r.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 for t in content)
    assert len(content) == r.usage.completion_tokens - (r.choices[0].finish_reason == "stop")
    chunks = list(
        c.chat.completions.create(
            model="x", messages=messages, max_tokens=40, temperature=0, logprobs=True, stream=True
        )
    )
    streamed = [
        t for ch in chunks if ch.choices and ch.choices[0].logprobs for t in ch.choices[0].logprobs.content
    ]
    assert [t.token for t in streamed] == [t.token for t in content]
    status, err, _ = server.post("/v1/completions", {"prompt": PROMPT, "logprobs": 21})
    assert status == 400 and "logprobs" in err["error"]["message"]


def test_echo_gives_the_prompt_and_its_logprobs(server: Server, local: qrt.Model) -> None:
    """lm-evaluation-harness's log-likelihood request: echo, logprobs, the prompt's tokens scored."""
    import numpy as np

    c = server.client()
    prompt = "The quick brown fox jumps over the lazy dog. " * 4
    ids = local.tokenize(prompt, add_bos=None)
    logits = local.logits(ids).astype(np.float64)
    lse = logits.max(1) + np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))
    want = [logits[i, ids[i + 1]] - lse[i] for i in range(len(ids) - 1)]

    r = c.completions.create(model="x", prompt=prompt, max_tokens=0, echo=True, logprobs=1, temperature=0)
    lp = r.choices[0].logprobs
    assert r.choices[0].text == prompt
    assert len(lp.tokens) == len(ids) == r.usage.prompt_tokens and r.usage.completion_tokens == 0
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert np.allclose(lp.token_logprobs[1:], want, atol=1e-4)
    assert "".join(lp.tokens) == prompt and lp.text_offset[-1] == len(prompt) - len(lp.tokens[-1])

    # with generated tokens after the prompt, streamed and not
    plain = c.completions.create(model="x", prompt=prompt, max_tokens=4, temperature=0, logprobs=1)
    r = c.completions.create(model="x", prompt=prompt, max_tokens=4, echo=True, logprobs=1, temperature=0)
    assert r.choices[0].text == prompt + plain.choices[0].text
    assert r.choices[0].logprobs.token_logprobs[len(ids) :] == plain.choices[0].logprobs.token_logprobs
    chunks = list(
        c.completions.create(model="x", prompt=prompt, max_tokens=4, echo=True, temperature=0, stream=True)
    )
    assert "".join(ch.choices[0].text for ch in chunks) == r.choices[0].text
    status, err, _ = server.post(
        "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "echo": True}
    )
    assert status == 400 and "echo" in err["error"]["message"]


def test_metrics_count_what_clients_saw(server: Server) -> None:
    c = server.client()
    prompt = "Twelve score and seven years ago our fathers brought forth on this continent " * 3
    n_prompt = c.completions.create(model="x", prompt=prompt, max_tokens=0).usage.prompt_tokens
    before = server.wait_idle()
    for _ in range(3):
        c.completions.create(
            model="x", prompt=prompt, max_tokens=5, temperature=0, extra_body={"ignore_eos": True}
        )
    after = server.wait_idle()

    def delta(key: str) -> float:
        return after[key] - before.get(key, 0.0)

    assert delta("qrt_time_to_first_token_seconds_count") == 3
    assert delta("qrt_inter_token_latency_seconds_count") == 3 * 4
    assert delta("qrt_request_duration_seconds_count") == 3
    assert delta('qrt_requests_finished_total{finish_reason="length"}') == 3
    assert delta("qrt_generation_tokens_total") == 15
    # the 2nd and 3rd requests take the first one's full blocks from the prefix cache
    assert delta("qrt_prefix_cache_hit_tokens_total") == 2 * 16 * ((n_prompt - 1) // 16)
    assert 0 < after["qrt_prefix_cache_hit_rate"] <= 1
    for h in ("time_to_first_token", "inter_token_latency", "request_duration"):
        name = f"qrt_{h}_seconds"
        buckets = [v for k, v in after.items() if k.startswith(name + "_bucket")]
        assert buckets == sorted(buckets) and buckets[-1] == after[name + "_count"]
        assert after[f'{name}_bucket{{le="+Inf"}}'] == after[name + "_count"]
        assert delta(name + "_sum") > 0
