"""The continuous-batching engine behind Model.generate / agenerate and qrt-serve.

The C++ scheduler (csrc/engine/scheduler.h, ``_C.Scheduler``) steps every request in flight together on
its own thread, without the GIL. One Python thread per engine (the pump) drains its events, one batch per
step, and hands each to the sink its request registered: a ``queue.SimpleQueue`` for threads, an
``asyncio.Queue`` (through ``call_soon_threadsafe``) for coroutines. Consumers decode UTF-8 themselves;
tokens, stop strings, end-of-generation tokens and max_tokens are handled in C++.
"""

from __future__ import annotations

import asyncio
import atexit
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import _C


class Event(NamedTuple):
    request: int
    token: int  # -1: none (an end without a token)
    text: bytes  # output bytes now safe to emit
    finish: str | None  # None, "stop", "length", "cancelled", "error"
    n_prompt: int
    n_generated: int
    error: str
    logprob: float  # the token's log-probability, when the request asked for logprobs
    top: list[tuple[int, float]]  # the most likely tokens and their log-probabilities
    prompt: bool  # a prompt token's log-probability (prompt_logprobs), not output


Sink = Callable[[Event], None]


class Engine:
    """A ``_C.Scheduler`` over a native model's sequences 1..n_seq, and the pump thread."""

    def __init__(
        self,
        native: Any,
        pieces: list[bytes],
        n_seq: int,
        *,
        prefill_budget: int = 256,
        max_waiting: int = 1 << 20,
        max_step_slowdown: float = 1.75,
        max_step_seconds: float = 0.5,
    ) -> None:
        self.scheduler = _C.Scheduler(
            native,
            pieces,
            first_seq=1,
            n_seq=n_seq,
            prefill_budget=prefill_budget,
            max_waiting=max_waiting,
            max_step_slowdown=max_step_slowdown,
            max_step_seconds=max_step_seconds,
        )
        self._routes: dict[int, Sink] = {}
        self._pending: dict[int, list[Event]] = {}  # events that arrived before their sink was registered
        self._lock = threading.Lock()
        self._counters = [0.0, 0]  # the pump's seconds routing events in Python, and its batches
        # The pump holds no reference to the engine, so an engine nobody uses is collected (and closed).
        self._thread = threading.Thread(
            target=_pump,
            args=(self.scheduler, self._routes, self._pending, self._lock, self._counters),
            name="qrt-engine-pump",
            daemon=True,
        )
        self._thread.start()
        _engines.add(self)

    @property
    def pump_seconds(self) -> float:
        """Seconds the pump thread spent routing events in Python (the per-step Python cost)."""
        return self._counters[0]

    @property
    def pump_batches(self) -> int:
        """Batches of events the pump routed (one per step that produced events)."""
        return self._counters[1]

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def submit(self, ids: np.ndarray, sink: Sink, **kwargs: Any) -> int:
        """Queues a request; its events go to ``sink`` (called on the pump thread) until one has a finish."""
        rid = self.scheduler.submit(ids, **kwargs)
        with self._lock:
            early = self._pending.pop(rid, [])
            self._routes[rid] = sink
        for ev in early:
            self._deliver(ev, sink)
        return rid

    def cancel(self, rid: int) -> None:
        self.scheduler.cancel(rid)

    def close(self) -> None:
        """Cancels what is in flight and stops the pump (before interpreter exit too: a daemon thread
        woken in C++ during finalization would abort the process)."""
        self.scheduler.shutdown()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _deliver(self, ev: Event, sink: Sink) -> None:
        if ev.finish is not None:
            with self._lock:
                self._routes.pop(ev.request, None)
        try:
            sink(ev)
        except RuntimeError:  # an event loop that has gone away: nobody waits for this request any more
            pass


_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register
def _close_engines() -> None:
    for engine in list(_engines):
        engine.close()


def _pump(
    sched: Any,
    routes: dict[int, Sink],
    pending: dict[int, list[Event]],
    lock: threading.Lock,
    counters: list,
) -> None:
    """The pump thread: drains the scheduler's events, one batch per step, into their sinks."""
    while True:
        raw = sched.wait_events(0.5)
        if raw is None:
            return
        if not raw:
            continue
        t0 = time.perf_counter()
        with lock:
            routed = []
            for item in raw:
                ev = Event(*item)
                sink = routes.get(ev.request)
                if sink is None:
                    pending.setdefault(ev.request, []).append(ev)
                else:
                    routed.append((ev, sink))
                    if ev.finish is not None:
                        del routes[ev.request]
        for ev, sink in routed:
            try:
                sink(ev)
            except RuntimeError:  # an event loop that has gone away: nobody waits for this request
                pass
        counters[0] += time.perf_counter() - t0
        counters[1] += 1


def queue_sink() -> tuple[queue.SimpleQueue[Event], Sink]:
    q: queue.SimpleQueue[Event] = queue.SimpleQueue()
    return q, q.put


def asyncio_sink() -> tuple[asyncio.Queue[Event], Sink]:
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[Event] = asyncio.Queue()

    def put(ev: Event) -> None:
        loop.call_soon_threadsafe(q.put_nowait, ev)

    return q, put
