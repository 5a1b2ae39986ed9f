"""qrt-serve's command line: load one model, serve it with uvicorn until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from qrt.cli import add_cache_type_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qrt-serve", description="Serve a GGUF model over the OpenAI HTTP API.")
    p.add_argument("-m", "--model", help="GGUF file (default: the demo model)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument(
        "--api-key",
        default=os.environ.get("QRT_API_KEY"),
        help="require 'Authorization: Bearer KEY' on /v1 routes (default: $QRT_API_KEY, else none)",
    )
    p.add_argument("--parallel", type=int, default=8, help="requests generated at once (default 8)")
    p.add_argument(
        "--max-waiting", type=int, default=256, help="queued requests beyond those before a 503 (default 256)"
    )
    p.add_argument("-c", "--ctx-size", type=int, default=4096, help="context per request (default 4096)")
    p.add_argument("--kv-tokens", type=int, default=None, help="KV cache tokens shared by all requests")
    add_cache_type_args(p)
    p.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument(
        "--served-model-name", default=None, help="the model id in the API (default: the file name)"
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="seconds to finish requests on SIGTERM (default 10)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import uvicorn

        from .app import create_app
    except ImportError as e:
        print(f"qrt-serve: error: {e.name} is missing: pip install 'qrt[serve]'", file=sys.stderr)
        return 1
    import qrt

    path = args.model
    if path is None:
        from qrt.demo import demo_model_path

        path = str(demo_model_path())
    if not os.path.isfile(path):
        print(f"qrt-serve: error: no such file: {path}", file=sys.stderr)
        return 1
    name = args.served_model_name or os.path.basename(path)

    def load() -> qrt.Model:
        return qrt.load(
            path,
            n_ctx=args.ctx_size,
            n_threads=args.threads,
            n_seq_max=args.parallel,
            kv_tokens=args.kv_tokens,
            max_waiting=args.max_waiting,
            kv_type_k=args.cache_type_k,
            kv_type_v=args.cache_type_v,
        )

    failed: list[str] = []
    server: uvicorn.Server | None = None

    def on_load_error(message: str) -> None:
        print(f"qrt-serve: error: {message}", file=sys.stderr, flush=True)
        failed.append(message)
        if server is not None:
            server.should_exit = True

    app = create_app(load, served_model_name=name, api_key=args.api_key, on_load_error=on_load_error)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=args.shutdown_timeout,
        timeout_keep_alive=5,
    )
    print(f"qrt-serve: {name} on http://{args.host}:{args.port}/v1", file=sys.stderr, flush=True)
    # uvicorn finishes in-flight requests on SIGTERM/SIGINT (up to --shutdown-timeout, then cancels them),
    # and afterwards raises the signal again for the handler it found: make that a no-op, so the exit is 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    server = uvicorn.Server(config)
    server.run()
    return 1 if failed else 0
