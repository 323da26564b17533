"""The FastAPI app (vLLM's `api_server`): routes, error handlers, the engines' lifespan.

Why so thin: a route only authorizes and hands over — chat and completions to the shared flow
(`serving.handle`) with their `Endpoint`, the rest (`/health`, `/metrics`, `/v1/models`) reads
`ServerState`. Unknown routes and methods, and any exception that escapes, still answer with an
OpenAI error object, so a client never sees Starlette's HTML.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from hillclimb.serve.api import APIError
from hillclimb.serve.flywheel import FeedbackError
from hillclimb.serve.serving import (
    MAX_CHOICES,
    authorize,
    error_response,
    handle,
    read_body,
    server_error,
    unknown_model,
)
from hillclimb.serve.serving_chat import ChatEndpoint
from hillclimb.serve.serving_completion import CompletionEndpoint
from hillclimb.serve.state import AUTO, MODEL_IDS, ServerState

log = logging.getLogger("hillclimb.serve")

CHAT = ChatEndpoint()
COMPLETIONS = CompletionEndpoint()


# how long shutdown waits for the requests uvicorn cancelled to answer and settle
SETTLE_WAIT_S = 5.0


async def settle_in_flight(state: ServerState, timeout: float = SETTLE_WAIT_S) -> None:
    """Wait (bounded) until no request is in flight. When its graceful shutdown runs out,
    uvicorn cancels the requests still running and goes straight on to this lifespan's end;
    under `hillclimb serve` the process then re-raises SIGTERM and dies at once, so a cancelled
    request whose cleanup had not run yet was never settled (its credits left reserved) and
    its stream was cut mid-body. Each one answers and finalizes within a few loop turns."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while state.metrics.inflight.value() > 0 and loop.time() < deadline:
        await asyncio.sleep(0.01)


def create_app(state: ServerState) -> FastAPI:
    """The app over a built `ServerState`; it starts the engines and, when it owns them, stops
    them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start_engines()
        try:
            yield
        finally:
            await settle_in_flight(state)
            if state.owns_engines:
                state.stop_engines()

    app = FastAPI(
        title="hillclimb",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.hillclimb = state

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        log.exception("unhandled error on %s", request.url.path)
        return error_response(server_error())

    def route_error(status: int, message: str, code: str) -> JSONResponse:
        return error_response(APIError(status, message, "invalid_request_error", None, code))

    @app.exception_handler(404)
    async def _not_found(request: Request, exc: Exception) -> JSONResponse:
        return route_error(404, f"Unknown route {request.method} {request.url.path}", "not_found")

    @app.exception_handler(405)
    async def _bad_method(request: Request, exc: Exception) -> JSONResponse:
        message = f"Method {request.method} not allowed on {request.url.path}"
        return route_error(405, message, "method_not_allowed")

    def engine_health() -> dict[str, Any]:
        models = {}
        for mid, m in state.models.items():
            try:
                models[mid] = {"ok": True, **_small_stats(m.engine.stats())}
            except Exception as exc:
                models[mid] = {"ok": False, "error": str(exc)}
        return models

    # Engine stats can be a call to the engine process: off the event loop, so a slow answer
    # never stalls the streams.
    @app.get("/health")
    async def health() -> JSONResponse:
        models = await asyncio.to_thread(engine_health)
        ok = all(v["ok"] for v in models.values())
        return JSONResponse(
            {
                "status": "ok" if ok else "degraded",
                "models": models,
                "auth": "open" if state.open_mode else "keys",
                "speculative": state.speculative,
                "uptime_s": round(time.time() - state.started, 3),
            },
            status_code=200 if ok else 503,
        )

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        text = await asyncio.to_thread(state.metrics.render)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        try:
            authorize(state, request, "models")
        except APIError as err:
            return error_response(err)
        return JSONResponse(
            {"object": "list", "data": [_model_card(state, m) for m in state.model_ids()]}
        )

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str, request: Request) -> Response:
        try:
            authorize(state, request, "models")
            if model_id not in state.model_ids():
                raise unknown_model(model_id, state)
        except APIError as err:
            return error_response(err)
        return JSONResponse(_model_card(state, model_id))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await handle(state, request, COMPLETIONS)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await handle(state, request, CHAT)

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> Response:
        """Accept / reject one of your own served requests (the data flywheel's signal), and
        optionally the edit you applied from it: `{"id", "accepted", "choice"?, "edit"?:
        {"path", "applied"}, "note"?}`. One verdict per request: a new one replaces the
        earlier (its choice, edit and note too)."""
        try:
            account = authorize(state, request, "feedback")
            if state.flywheel is None:
                raise APIError(404, "feedback is not recorded by this server", code="not_found")
            body = await read_body(request)
            out = await asyncio.to_thread(_feedback, state, account, body)
        except APIError as err:
            return error_response(err)
        return JSONResponse({"object": "feedback", **out})

    return app


_FEEDBACK_FIELDS = {"id", "accepted", "choice", "edit", "note"}
# a note is a remark, not a document: every feedback row is kept in flywheel.sqlite
MAX_FEEDBACK_NOTE = 64 * 1024


def _feedback(state: ServerState, account: Any, body: Any) -> dict[str, Any]:
    """Validate a feedback body and record it (`FlywheelStore.record_feedback`)."""

    def bad(msg: str, param: str) -> APIError:
        return APIError(400, msg, "invalid_request_error", param, "invalid_value")

    def unrecognized(param: str) -> APIError:
        msg = f"Unrecognized field: {param}"
        return APIError(400, msg, "invalid_request_error", param, "unknown_parameter")

    if not isinstance(body, dict):
        raise bad("the body must be a JSON object", "body")
    # nothing is silently ignored: a misspelt field ("acepted", "edit.aplied") is refused
    unknown = sorted(set(body) - _FEEDBACK_FIELDS)
    if unknown:
        raise unrecognized(unknown[0])
    rid, accepted = body.get("id"), body.get("accepted")
    if not isinstance(rid, str) or not rid:
        raise bad("'id' must be the id of a response you received", "id")
    if not isinstance(accepted, bool):
        raise bad("'accepted' must be true or false", "accepted")
    # bounded: a request has at most MAX_CHOICES choices, and SQLite stores 64-bit integers
    # (a larger one was a 500)
    choice = body.get("choice", 0)
    if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice < MAX_CHOICES:
        raise bad(f"'choice' must be an integer in 0..{MAX_CHOICES - 1}", "choice")
    edit, note = body.get("edit"), body.get("note")
    if edit is not None:
        if not isinstance(edit, dict):
            raise bad("'edit' must be an object {path, applied}", "edit")
        unknown = sorted(set(edit) - {"path", "applied"})
        if unknown:
            raise unrecognized(f"edit.{unknown[0]}")
        if edit.get("path") is not None and not isinstance(edit["path"], str):
            raise bad("'edit.path' must be a string", "edit.path")
        if edit.get("applied") is not None and not isinstance(edit["applied"], bool):
            raise bad("'edit.applied' must be true or false", "edit.applied")
    if note is not None and not isinstance(note, str):
        raise bad("'note' must be a string", "note")
    if note is not None and len(note) > MAX_FEEDBACK_NOTE:
        raise bad(f"'note' is too long (at most {MAX_FEEDBACK_NOTE} characters)", "note")
    assert state.flywheel is not None
    try:
        return state.flywheel.record_feedback(
            rid,
            account=account.name if account is not None else "open",
            key_id=account.key_hash or None if account is not None else None,
            accepted=accepted,
            choice=choice,
            edit=edit,
            note=note,
        )
    except FeedbackError as exc:
        raise APIError(exc.status, str(exc), "invalid_request_error", "id", exc.code) from None


def _small_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if isinstance(v, int | float | str | bool)}


def _model_card(state: ServerState, mid: str) -> dict[str, Any]:
    card: dict[str, Any] = {
        "id": mid,
        "object": "model",
        "created": int(state.started),
        "owned_by": "hillclimb",
    }
    if mid == AUTO:
        card["hillclimb"] = {"routes_to": [m for m in MODEL_IDS if m in state.models]}
        return card
    m = state.models[mid]
    card["max_model_len"] = m.engine.max_context
    card["hillclimb"] = {
        "checkpoint": m.checkpoint,
        "active_params": m.active_params,
        "total_params": m.total_params,
        "price_per_million_tokens": {"prompt": m.price.prompt, "completion": m.price.completion},
        "speculative_draft": "code-flash" if (state.speculative and mid == "thinking") else None,
    }
    return card
