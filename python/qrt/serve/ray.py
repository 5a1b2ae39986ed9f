"""qrt-serve's app as a Ray Serve deployment: replicas of one model behind Ray's HTTP proxy.

One process per machine already serves all its cores (the engine batches every request in flight); Ray
Serve adds replicas on more machines, routing and autoscaling. Each replica loads the model and runs the
same FastAPI app as ``qrt-serve``; Ray sends it at most ``parallel`` requests at once (its engine's batch),
and holds the rest in its own queues, routed to the least busy replica::

    import ray
    from ray import serve
    import qrt.serve.ray

    serve.run(qrt.serve.ray.deployment("model.gguf", parallel=8, num_replicas=2))

or from the command line, ``serve run qrt.serve.ray:build model=model.gguf parallel=8 num_replicas=2``.
Needs the ``ray`` extra (``pip install "qrt[ray]"``). Without Ray, N independent ``qrt-serve`` processes
behind any HTTP load balancer do the same (readiness: ``GET /health`` is 200 once the model is loaded).
"""

from __future__ import annotations

import os
from typing import Any

from ray import serve
from ray.serve import Application


def deployment(
    model: str | os.PathLike[str],
    *,
    parallel: int = 8,
    n_ctx: int = 4096,
    threads: int | None = None,
    kv_tokens: int | None = None,
    max_waiting: int = 256,
    api_key: str | None = None,
    served_model_name: str | None = None,
    num_replicas: int = 1,
) -> Application:
    """A Ray Serve application of ``num_replicas`` replicas, each ``qrt-serve -m model --parallel
    parallel -c n_ctx -t threads``: ``max_ongoing_requests`` is ``parallel`` and every replica reserves
    ``threads`` CPUs (default: all of its node's). The file must be at the same path on every node."""
    path = os.fspath(model)
    name = served_model_name or os.path.basename(path)
    cpus = threads if threads is not None else os.cpu_count() or 1

    def build_app() -> Any:
        # runs on each replica: the app, its model loaded on a thread at startup (/health 503 until then)
        import qrt

        from .app import create_app

        def load() -> qrt.Model:
            return qrt.load(
                path,
                n_ctx=n_ctx,
                n_threads=threads,
                n_seq_max=parallel,
                kv_tokens=kv_tokens,
                max_waiting=max_waiting,
            )

        return create_app(load, served_model_name=name, api_key=api_key)

    @serve.deployment(
        name="qrt",
        num_replicas=num_replicas,
        max_ongoing_requests=parallel,
        ray_actor_options={"num_cpus": cpus},
        health_check_period_s=5,
    )
    @serve.ingress(build_app)
    class Qrt:
        pass

    return Qrt.bind()


def build(args: dict[str, str]) -> Application:
    """``serve run qrt.serve.ray:build model=FILE [parallel=8] [n_ctx=4096] [threads=N] [kv_tokens=N]
    [api_key=KEY] [served_model_name=NAME] [num_replicas=1]``."""
    args = dict(args)
    if "model" not in args:
        raise ValueError("qrt.serve.ray:build needs model=FILE")
    ints = ("parallel", "n_ctx", "threads", "kv_tokens", "max_waiting", "num_replicas")
    known = {"model", "api_key", "served_model_name", *ints}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ValueError(f"qrt.serve.ray:build: unknown arguments {unknown}; known: {sorted(known)}")
    kw: dict[str, Any] = {}
    for k in ints:
        if k in args:
            try:
                kw[k] = int(args.pop(k))
            except ValueError:
                raise ValueError(f"qrt.serve.ray:build: {k} must be an integer") from None
    return deployment(args.pop("model"), **args, **kw)
