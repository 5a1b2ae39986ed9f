"""qrt-serve: an OpenAI-compatible HTTP server over one model's continuous-batching engine.

    qrt-serve -m model.gguf [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--parallel N] [-c N_CTX]

or ``python -m qrt.serve``; :func:`create_app` builds the FastAPI app for embedding. Needs the ``serve``
extra (``pip install "qrt[serve]"``: fastapi, uvicorn).
"""

from __future__ import annotations

from typing import Any

from .cli import main

__all__ = ["create_app", "main"]


def __getattr__(name: str) -> Any:
    if name == "create_app":  # fastapi is imported only by those who build the app
        from .app import create_app

        return create_app
    raise AttributeError(name)
