"""qrt-serve's app as a Ray Serve deployment (the ``ray`` extra): a local Ray cluster on loopback, started
and stopped by the test, answering the openai client as qrt-serve does."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time

import pytest

openai = pytest.importorskip("openai")
ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_serve_deployment_answers_like_qrt(smollm2_path) -> None:
    import urllib.request

    import qrt.serve.ray

    port = free_port()
    temp = tempfile.mkdtemp(prefix="qrt-ray-", dir="/tmp")  # Ray's socket paths must stay short
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = qrt.serve.ray.deployment(smollm2_path, parallel=4, n_ctx=256, threads=2)
        serve.run(app, name="qrt", route_prefix="/")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:  # the replica loads its model on a thread after it starts: 503 until then
            try:
                with urllib.request.urlopen(base + "/health", timeout=10) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the Ray Serve replica did not become healthy"
            time.sleep(0.5)
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=60)
        r = client.completions.create(
            model="x", prompt="The capital of France is", max_tokens=8, temperature=0
        )
        with qrt.load(smollm2_path, n_ctx=256, n_threads=2) as m:
            want = m.generate("The capital of France is", max_tokens=8, temperature=0)
        assert r.choices[0].text == want
        assert r.usage.completion_tokens == 8
        chunks = list(
            client.chat.completions.create(
                model="x",
                messages=[{"role": "user", "content": "Hi"}],
                max_tokens=8,
                temperature=0,
                stream=True,
            )
        )
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        assert [m.id for m in client.models.list()] == [smollm2_path.name]
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_build_refuses_bad_arguments() -> None:
    import qrt.serve.ray

    with pytest.raises(ValueError, match="needs model=FILE"):
        qrt.serve.ray.build({})
    with pytest.raises(ValueError, match="unknown arguments \\['paralel'\\]"):
        qrt.serve.ray.build({"model": "m.gguf", "paralel": "8"})
    with pytest.raises(ValueError, match="parallel must be an integer"):
        qrt.serve.ray.build({"model": "m.gguf", "parallel": "eight"})
