"""qrt-serve: an OpenAI-compatible HTTP server over one model's continuous-batching engine.

    qrt-serve -m model.gguf [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--parallel N] [-c N_CTX]

or ``python -m qrt.serve``; :func:`create_app` builds the FastAPI app for embedding.
"""

from __future__ import annotations

from .app import create_app
from .cli import main

__all__ = ["create_app", "main"]
