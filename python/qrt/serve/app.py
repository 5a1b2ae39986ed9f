"""The OpenAI-compatible HTTP app: FastAPI over one Model's continuous-batching engine.

Routes: ``GET /health`` (503 until the model is loaded), ``GET /v1/models``, ``POST /v1/completions``,
``POST /v1/chat/completions`` (``stream``: server-sent events ending ``data: [DONE]``). Bodies are read
and checked here, field by field, so that every bad request gets a 4xx with an OpenAI-style error body
naming the field, and nothing reaches the engine unchecked. With an API key every ``/v1`` route needs
``Authorization: Bearer KEY`` (compared in constant time).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

import qrt

from ..engine import Event
from .metrics import Metrics

MAX_BODY_BYTES = 8 << 20
BODY_TIMEOUT_S = 30.0
ROLES = ("system", "developer", "user", "assistant", "tool")


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        kind = {401: "authentication_error", 404: "not_found_error", 503: "service_unavailable"}.get(
            self.status, "invalid_request_error" if self.status < 500 else "server_error"
        )
        body = {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
        headers = {"Retry-After": "1"} if self.status == 503 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


# -- field checks ------------------------------------------------------------------------------------------


def _number(body: dict, name: str, default: float | None, lo: float | None = None) -> float | None:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ApiError(400, f"'{name}' must be a number, got {json.dumps(v)}", name)
    if lo is not None and v < lo:
        raise ApiError(400, f"'{name}' must be >= {lo}, got {v}", name)
    return float(v)


def _integer(body: dict, name: str, default: int | None, lo: int | None = None) -> int | None:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise ApiError(400, f"'{name}' must be an integer, got {json.dumps(v)}", name)
    if lo is not None and v < lo:
        raise ApiError(400, f"'{name}' must be >= {lo}, got {v}", name)
    return v


def _boolean(body: dict, name: str, default: bool) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise ApiError(400, f"'{name}' must be a boolean, got {json.dumps(v)}", name)
    return v


def _stop(body: dict) -> list[str]:
    v = body.get("stop")
    if v is None:
        return []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ApiError(400, "'stop' must be a string or a list of strings", "stop")
    if len(v) > 16:
        raise ApiError(400, "'stop' takes at most 16 strings", "stop")
    return [s for s in v if s]


def _sampling(body: dict, max_tokens_default: int | None) -> tuple[dict[str, Any], bool]:
    """generate() keyword arguments from the request's sampling fields, and whether it streams."""
    n = _integer(body, "n", 1)
    if n != 1:
        raise ApiError(400, "only 'n' = 1 is supported", "n")
    max_tokens = _integer(body, "max_tokens", None, 0)
    if max_tokens is None and "max_completion_tokens" in body:
        max_tokens = _integer(body, "max_completion_tokens", None, 0)
    if max_tokens is None:
        max_tokens = max_tokens_default
    kw: dict[str, Any] = {
        # llama.cpp's (and qrt.generate's) defaults, as llama-server has them
        "temperature": _number(body, "temperature", 0.8, 0.0),
        "top_p": _number(body, "top_p", 0.95),
        "top_k": _integer(body, "top_k", 40, 0),
        "min_p": _number(body, "min_p", 0.05),
        "repeat_penalty": _number(body, "repeat_penalty", 1.0),
        "frequency_penalty": _number(body, "frequency_penalty", 0.0),
        "presence_penalty": _number(body, "presence_penalty", 0.0),
        "seed": _integer(body, "seed", None),
        "stop": _stop(body),
        "ignore_eos": _boolean(body, "ignore_eos", False),
        "max_tokens": max_tokens,
    }
    if kw["seed"] is not None and not 0 <= kw["seed"] < (1 << 32):
        kw["seed"] = kw["seed"] & 0xFFFFFFFF  # OpenAI's seed is any integer; the engine takes 32 bits
    stream = _boolean(body, "stream", False)
    return kw, stream


def _logprobs(body: dict, chat: bool) -> int | None:
    """None, or how many top alternatives to report per token (chat: logprobs true + top_logprobs)."""
    if chat:
        if not _boolean(body, "logprobs", False):
            if body.get("top_logprobs") is not None:
                raise ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs")
            return None
        n = _integer(body, "top_logprobs", 0, 0)
        name = "top_logprobs"
    else:
        n = _integer(body, "logprobs", None, 0)
        name = "logprobs"
    if n is not None and n > 20:
        raise ApiError(400, f"'{name}' must be at most 20, got {n}", name)
    return n


def _include_usage(body: dict) -> bool:
    opts = body.get("stream_options")
    if opts is None:
        return False
    if not isinstance(opts, dict):
        raise ApiError(400, "'stream_options' must be an object", "stream_options")
    return _boolean(opts, "include_usage", False)


def _messages(body: dict) -> list[dict[str, str]]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "'messages' must be a non-empty array of messages", "messages")
    out = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise ApiError(400, f"'{where}' must be an object", where)
        role = m.get("role")
        if role not in ROLES:
            raise ApiError(
                400, f"'{where}.role' must be one of {', '.join(ROLES)}, got {json.dumps(role)}", where
            )
        content = m.get("content")
        if content is None:
            content = ""
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if (
                    not isinstance(part, dict)
                    or part.get("type") != "text"
                    or not isinstance(part.get("text"), str)
                ):
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise ApiError(
                        400,
                        f"'{where}.content[{j}]': content parts of type {kind!r} are not supported",
                        where,
                    )
                parts.append(part["text"])
            content = "".join(parts)
        if not isinstance(content, str):
            raise ApiError(400, f"'{where}.content' must be a string or an array of text parts", where)
        out.append({"role": role, "content": content})
    return out


def _prompt(body: dict) -> str | list[int]:
    p = body.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
        p = p[0]  # one prompt in a list (n prompts per request are not supported)
    if isinstance(p, str):
        return p
    if isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
        return p
    raise ApiError(400, "'prompt' must be a string or an array of token ids (one prompt)", "prompt")


# -- the app -----------------------------------------------------------------------------------------------


class State:
    def __init__(self, name: str, api_key: str | None) -> None:
        self.name = name
        self.api_key = api_key
        self.model: qrt.Model | None = None
        self.error: str | None = None
        self.created = int(time.time())
        self.metrics = Metrics()


def create_app(
    load: Callable[[], qrt.Model],
    *,
    served_model_name: str,
    api_key: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    on_load_error: Callable[[str], None] | None = None,
) -> FastAPI:
    """The app; ``load`` is called on a thread at startup (/health answers 503 until it returns). If it
    raises, /health reports the error and ``on_load_error`` (e.g. stop the server) is called with it."""
    state = State(served_model_name, api_key)

    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        def loader() -> None:
            try:
                state.model = load()
            except Exception as e:  # reported by /health
                state.error = f"{type(e).__name__}: {e}"
                if on_load_error is not None:
                    on_load_error(str(e))

        thread = threading.Thread(target=loader, name="qrt-serve-load", daemon=True)
        thread.start()
        try:
            yield
        finally:
            thread.join()
            if state.model is not None:
                state.model.close()  # cancels what is still running

    app = FastAPI(title="qrt", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.qrt = state

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    def authorize(request: Request) -> None:
        """Every /v1 route: the API key, when one is set (a plain check, not a middleware, so that the
        routes receive the client's disconnect unwrapped)."""
        if state.api_key is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), state.api_key.encode()):
            raise ApiError(401, "invalid or missing API key", code="invalid_api_key")

    def model() -> qrt.Model:
        if state.model is None:
            raise ApiError(503, state.error or "the model is loading")
        return state.model

    async def read_json(request: Request) -> dict:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
            raise ApiError(413, f"the body is larger than {max_body_bytes} bytes")

        async def read() -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_body_bytes:
                    raise ApiError(413, f"the body is larger than {max_body_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

        try:
            raw = await asyncio.wait_for(read(), BODY_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ApiError(408, "timed out reading the request body") from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.model is None:
            return JSONResponse(
                {"status": "error" if state.error else "loading", "error": state.error}, status_code=503
            )
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text format: the engine's counters and gauges, and the latency histograms."""
        text = state.metrics.render(model().engine.scheduler.stats)
        return Response(text, media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        authorize(request)
        model()
        card = {"id": state.name, "object": "model", "created": state.created, "owned_by": "qrt"}
        return JSONResponse({"object": "list", "data": [card]})

    async def run(
        request: Request,
        m: qrt.Model,
        prompt: str | list[int],
        kw: dict,
        stream: bool,
        usage: bool,
        chat: bool,
        echo: bool = False,
    ) -> Response:
        """Runs one request; ``echo`` (completions): the answer starts with the prompt, and with logprobs
        its tokens' log-probabilities (the first token has none), as lm-evaluation-harness reads them."""
        t_start = time.perf_counter()
        last_token = [0.0]
        ended = [False]

        def observe(ev: Event) -> None:
            """Latencies as this handler sees the request's tokens arrive."""
            now = time.perf_counter()
            if ev.token >= 0 and not ev.prompt:
                if ev.n_generated == 1:
                    state.metrics.ttft.observe(now - t_start)
                else:
                    state.metrics.itl.observe(now - last_token[0])
                last_token[0] = now
            if ev.finish is not None:
                ended[0] = True
                state.metrics.request.observe(now - t_start)
                state.metrics.finished[ev.finish] += 1

        def gone() -> None:
            """The client went away before the end (its request was cancelled)."""
            if not ended[0]:
                ended[0] = True
                state.metrics.finished["cancelled"] += 1

        try:
            ids, submit_kw = m._request(prompt, **kw)
            events = m._submit_async(ids, submit_kw)
        except qrt.QueueFullError as e:
            raise ApiError(503, str(e)) from None
        except (ValueError, TypeError) as e:
            raise ApiError(400, str(e), "prompt" if "prompt" in str(e) else None) from None
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        want_logprobs = kw.get("logprobs") is not None
        eog = m.tokenizer.eog_ids
        offset = [0]  # completions' text_offset: characters of text before each token

        def piece(token: int) -> bytes:
            return m.tokenizer.token_to_piece(token)

        echo_text, echo_items = "", []
        if echo:
            echo_text = prompt if isinstance(prompt, str) else m.detokenize(prompt)
            if want_logprobs:
                b = piece(int(ids[0]))
                first = {"token": b.decode("utf-8", "replace"), "logprob": None, "bytes": list(b)}
                echo_items.append(first | {"top_logprobs": None})

        def logprob_items(ev: Event) -> list[dict]:
            """OpenAI's logprobs entries for the event's token (none for an end-of-generation token)."""
            if not want_logprobs or ev.token < 0 or (ev.finish == "stop" and ev.token in eog):
                return []
            b = piece(ev.token)
            top = [(piece(t), lp) for t, lp in ev.top]
            return [
                {
                    "token": b.decode("utf-8", "replace"),
                    "logprob": ev.logprob,
                    "bytes": list(b),
                    "top_logprobs": [
                        {"token": t.decode("utf-8", "replace"), "logprob": lp, "bytes": list(t)}
                        for t, lp in top
                    ],
                }
            ]

        def legacy(items: list[dict]) -> dict | None:
            """The completions endpoint's logprobs object."""
            if not want_logprobs:
                return None
            out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
            for it in items:
                out["tokens"].append(it["token"])
                out["token_logprobs"].append(it["logprob"])
                top = it["top_logprobs"]
                out["top_logprobs"].append(None if top is None else {t["token"]: t["logprob"] for t in top})
                out["text_offset"].append(offset[0])
                offset[0] += len(it["token"])
            return out

        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"

        def usage_of(ev: Event) -> dict:
            return {
                "prompt_tokens": ev.n_prompt,
                "completion_tokens": ev.n_generated,
                "total_tokens": ev.n_prompt + ev.n_generated,
            }

        if not stream:
            texts: list[str] = [echo_text]
            last: list[Event] = []
            items: list[dict] = list(echo_items)

            async def collect() -> None:
                async for text, ev in events:
                    observe(ev)
                    texts.append(text)
                    last.append(ev)
                    items.extend(logprob_items(ev))

            async def disconnected() -> None:
                while (await request.receive())["type"] != "http.disconnect":
                    pass

            # a client that goes away before the answer is ready cancels its request (and frees its blocks)
            work, watch = asyncio.ensure_future(collect()), asyncio.ensure_future(disconnected())
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                gone()
                return Response(status_code=499)
            watch.cancel()
            work.result()
            last = last[-1:]
            text = "".join(texts)
            choice: dict[str, Any] = {"index": 0, "finish_reason": last[0].finish}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
                choice["logprobs"] = {"content": items} if want_logprobs else None
            else:
                choice.update(text=text, logprobs=legacy(items))
            body = {
                "id": rid,
                "object": obj,
                "created": created,
                "model": state.name,
                "choices": [choice],
                "usage": usage_of(last[0]),
            }
            return JSONResponse(body)

        chunk_obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(
            text: str | None, finish: str | None, first: bool = False, items: list | None = None
        ) -> str:
            c: dict[str, Any] = {"index": 0, "finish_reason": finish}
            if want_logprobs:
                c["logprobs"] = ({"content": items or []} if chat else legacy(items or [])) if items else None
            if chat:
                delta: dict[str, Any] = {}
                if first:
                    delta["role"] = "assistant"
                if text is not None:
                    delta["content"] = text
                c["delta"] = delta
            else:
                c.update(text=text or "")
                c.setdefault("logprobs", None)
            d = {"id": rid, "object": chunk_obj, "created": created, "model": state.name, "choices": [c]}
            if usage:
                d["usage"] = None
            return f"data: {json.dumps(d, ensure_ascii=False)}\n\n"

        async def sse() -> AsyncIterator[str]:
            try:
                async for line in sse_lines():
                    yield line
            finally:
                gone()

        async def sse_lines() -> AsyncIterator[str]:
            first = True
            if chat:
                yield chunk("", None, first=True)
                first = False
            prompt_items = list(echo_items)
            echoed = not echo
            async for text, ev in events:
                observe(ev)
                if ev.prompt:
                    prompt_items.extend(logprob_items(ev))
                    continue
                if not echoed:  # the prompt, and its log-probabilities, in one chunk before the answer
                    yield chunk(echo_text, None, items=prompt_items)
                    echoed = True
                items = logprob_items(ev)
                if ev.finish is None:
                    if text or items:
                        yield chunk(text, None, first, items)
                        first = False
                    continue
                if text or items:
                    yield chunk(text, None, first, items)
                yield chunk(None if chat else "", ev.finish)
                if usage:
                    d = {
                        "id": rid,
                        "object": chunk_obj,
                        "created": created,
                        "model": state.name,
                        "choices": [],
                        "usage": usage_of(ev),
                    }
                    yield f"data: {json.dumps(d)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        authorize(request)
        m = model()
        body = await read_json(request)
        prompt = _prompt(body)
        kw, stream = _sampling(body, 16)
        kw["logprobs"] = _logprobs(body, chat=False)
        echo = _boolean(body, "echo", False)
        if echo and kw["logprobs"] is not None:
            kw["prompt_logprobs"] = kw["logprobs"]
        return await run(request, m, prompt, kw, stream, stream and _include_usage(body), False, echo)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        authorize(request)
        m = model()
        body = await read_json(request)
        messages = _messages(body)
        if body.get("echo") not in (None, False):
            raise ApiError(400, "'echo' is only supported by /v1/completions", "echo")
        kw, stream = _sampling(body, None)
        kw["logprobs"] = _logprobs(body, chat=True)
        try:
            prompt = m.render_chat(messages)
        except Exception as e:  # a template error or its size limit
            raise ApiError(
                400, f"cannot render the conversation with the chat template: {e}", "messages"
            ) from None
        if kw["max_tokens"] is None:
            kw["max_tokens"] = m.n_ctx  # the rest of the context
        return await run(request, m, prompt, kw, stream, stream and _include_usage(body), chat=True)

    return app
