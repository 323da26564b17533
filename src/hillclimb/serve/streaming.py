"""Server-sent events: the one streaming loop behind chat and text completions.

Why one loop: both endpoints stream the same way — chunks before the first token (chat's role
delta, completions' echo), then per engine batch the new text merged per choice into as few
chunks as possible (a chunk that carries logprobs is never merged), a finish chunk per choice,
then the optional usage chunk and `data: [DONE]`; a failure after the 200 is sent ends the
stream with an OpenAI error object and `[DONE]`. An endpoint only says how its events become
pieces of text and how a piece becomes a chunk (`ChoiceStream`), so the framing, merging and
tail cannot drift apart between the two. `JobStreamingResponse` makes sure the request's `Job`
is finalized however the stream ends (Starlette may cancel it without running its cleanup).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from fastapi.responses import JSONResponse, StreamingResponse

from hillclimb.serve.api import APIError
from hillclimb.serve.job import openai_finish, shutting_down

if TYPE_CHECKING:
    from hillclimb.serve.engine import TokenEvent
    from hillclimb.serve.job import Job

log = logging.getLogger("hillclimb.serve")

DONE = b"data: [DONE]\n\n"

Piece = TypeVar("Piece")  # what one chunk carries: chat a delta dict, completions a str


def to_json(obj: Any) -> str:
    """Strict JSON, as the non-streaming answer's: a non-finite float raises (the stream then
    ends with an error object) instead of writing `NaN` / `-Infinity`, which clients cannot
    parse."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def sse(obj: Any) -> bytes:
    return f"data: {to_json(obj)}\n\n".encode()


class ChoiceStream(ABC, Generic[Piece]):
    """One streamed answer: the endpoint-specific half (`head`, `feed`, `merge`,
    `finish_reason`) over the shared chunk shape and loop (`sse`)."""

    object_name = ""  # the chunks' `object`
    piece_key = ""  # the choice field a piece goes in
    empty: Piece  # the piece of a chunk that carries only logprobs or the finish reason

    def __init__(self, job: Job, include_usage: bool):
        self.job = job
        self.include_usage = include_usage
        self.base: dict[str, Any] = {
            "id": job.request_id,
            "object": self.object_name,
            "created": int(time.time()),
            "model": job.entry.id,
            "system_fingerprint": None,
        }

    def encode(self, choice: dict[str, Any]) -> bytes:
        """The SSE bytes of a chunk with one choice."""
        obj = {**self.base, "choices": [choice]}
        if self.include_usage:
            obj["usage"] = None
        return sse(obj)

    def head(self) -> list[bytes]:
        """Chunks written before the first token."""
        return []

    @abstractmethod
    def feed(self, i: int, ev: TokenEvent) -> tuple[list[Piece], Any | None]:
        """Choice `i`'s new pieces for an event, and its logprobs object when it carries one."""

    @abstractmethod
    def merge(self, pieces: list[Piece]) -> list[Piece]:
        """Adjacent pieces joined where one chunk can carry them."""

    def finish_reason(self, i: int, engine_reason: str | None) -> str:
        """Choice `i`'s OpenAI finish reason."""
        return openai_finish(engine_reason)

    def chunk(self, i: int, piece: Piece, logprobs: Any = None, finish: str | None = None) -> bytes:
        choice = {"index": i, self.piece_key: piece, "logprobs": logprobs, "finish_reason": finish}
        return self.encode(choice)

    async def sse(self) -> AsyncIterator[bytes]:
        """The whole stream, one write per engine batch."""
        job = self.job
        try:
            head = self.head()
            if head:
                yield b"".join(head)
            async for batch in job.batches(stream=True):
                out: list[bytes] = []
                pending: dict[int, list[Piece]] = {}  # pieces merged across events

                def flush(i: int, pending: dict = pending, out: list = out) -> None:
                    out.extend(self.chunk(i, p) for p in self.merge(pending.pop(i, [])))

                for i, ev in batch:
                    pieces, logprobs = self.feed(i, ev)
                    if logprobs is not None:
                        flush(i)
                        for j, p in enumerate(self.merge(pieces) or [self.empty]):
                            out.append(self.chunk(i, p, logprobs if j == 0 else None))
                    elif pieces:
                        pending.setdefault(i, []).extend(pieces)
                    if ev.finished:
                        flush(i)
                        if ev.finish_reason == "error":
                            raise RuntimeError("engine error")
                        finish = self.finish_reason(i, ev.finish_reason)
                        out.append(self.chunk(i, self.empty, finish=finish))
                for i in list(pending):
                    flush(i)
                if out:
                    yield b"".join(out)
            await job.collect_outputs()
            if self.include_usage:
                usage = job.usage_dict()
                tail = {**self.base, "choices": [], "usage": usage}
                yield sse({**tail, "hillclimb": job.hillclimb_field()})
            yield DONE
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # headers are already sent: end with an OpenAI error object and [DONE]
            log.exception("stream %s failed", job.request_id)
            job.failed = True  # settled and counted as a 500, not as an answer
            err = APIError(500, f"generation failed: {type(exc).__name__}", "server_error")
            yield sse(err.body()) + DONE


class JobStreamingResponse(StreamingResponse):
    """A StreamingResponse that always finalizes its job (disconnects included).

    A stream still running when uvicorn's graceful shutdown runs out is cancelled from outside
    (uvicorn then closes the connection mid-body); it is ended here instead, cleanly: an error
    object and `[DONE]` (a 503 when nothing was sent yet), settled as a 503."""

    def __init__(self, content: AsyncIterator[bytes], job: Job, headers: dict[str, str]):
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.job = job

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = False

        async def watched(message: dict[str, Any]) -> None:
            nonlocal started
            started |= message["type"] == "http.response.start"
            await send(message)

        shutdown = False
        try:
            try:
                await super().__call__(scope, receive, watched)
            except asyncio.CancelledError:
                # only uvicorn cancels the request's task (a disconnect ends the stream
                # normally): its graceful shutdown ran out
                shutdown = True
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
        finally:
            await self._settle(shutdown, scope, receive, send, started)

    async def _settle(
        self, shutdown: bool, scope: Any, receive: Any, send: Any, started: bool
    ) -> None:
        """Close the body, cancel what still runs and finalize the job, however the stream
        ended."""
        job = self.job
        closed = shutdown or not job.finish or len(job.finish) < len(job.handles)
        # a stream that ended in an error object failed (500), as the plain answer would
        status = 503 if shutdown else 500 if job.failed else 499 if closed else 200
        try:
            if shutdown:
                # settled at once (the lifespan waits for it, `app.settle_in_flight`), not after
                # closing the body: a job never finalized keeps its credits reserved
                try:
                    await self._end_on_shutdown(scope, receive, send, started)
                finally:
                    await job.finalize(status)
            with contextlib.suppress(Exception):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
            if closed and not shutdown:
                await job.cancel_and_wait()
        finally:
            await job.finalize(status)

    @staticmethod
    async def _end_on_shutdown(scope: Any, receive: Any, send: Any, started: bool) -> None:
        """End the response cleanly: an error object and `[DONE]` after what was sent, or a
        503 error object when nothing was."""
        err = shutting_down()
        with contextlib.suppress(Exception):  # the client may be gone too
            if started:
                await send({"type": "http.response.body", "body": sse(err.body()) + DONE})
            else:
                await JSONResponse(err.body(), status_code=err.status)(scope, receive, send)
