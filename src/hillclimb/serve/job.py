"""One HTTP request in flight: its engine requests (one per choice), their events, its usage,
and the billing and metrics that must be settled exactly once.

Why one object per request: every exit path — normal end, an error after the reservation, a
client that disconnects mid-stream — must cancel the engine requests (freeing their batch slots)
and settle the reserved credits, and must do it once. `Job.finalize()` is that single, idempotent
place; the chat and completion endpoints, streaming or not, all answer through a `Job`, so usage
and the `hillclimb` extension field are computed one way for all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from hillclimb.serve.api import APIError
from hillclimb.serve.billing import Account, InsufficientCredits

if TYPE_CHECKING:
    from fastapi import Request

    from hillclimb.serve.engine import GenerationOutput, RequestHandle, TokenEvent
    from hillclimb.serve.sampling import SamplingParams
    from hillclimb.serve.state import ModelEntry, ServerState

log = logging.getLogger("hillclimb.serve")


def usage_dict(
    prompt: int,
    completion: int,
    reasoning: int,
    cached: int = 0,
    predicted: tuple[int, int] = (0, 0),
) -> dict[str, Any]:
    """OpenAI's `usage` object (`cached`: prompt tokens whose KV the prefix cache reused;
    `predicted`: (accepted, rejected) predicted-output tokens, `Job.prediction_counts`)."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "accepted_prediction_tokens": predicted[0],
            "rejected_prediction_tokens": predicted[1],
        },
        "prompt_tokens_details": {"cached_tokens": cached},
    }


# how long a cut-short request waits for the engine to end its choices (one engine step, or the
# engines stopping at shutdown) before it is settled with the tokens the server itself saw
CANCEL_WAIT_S = 5.0


def shutting_down() -> APIError:
    """The answer to a request still running when the server's graceful shutdown runs out."""
    return APIError(
        503,
        "The server is shutting down; the request was not finished. Try again later.",
        "server_error",
        None,
        "server_shutting_down",
    )


def openai_finish(engine_reason: str | None) -> str:
    """The engine's finish reason as OpenAI's (`stop` or `length`)."""
    return engine_reason if engine_reason in ("stop", "length") else "stop"


class Job:
    """The engine requests of one HTTP request (one per choice), their event stream, and the
    accounting that must be settled exactly once."""

    def __init__(
        self,
        state: ServerState,
        entry: ModelEntry,
        request_id: str,
        endpoint: str,
        requested_model: str,
        account: Account | None,
        t0: float,
        extra: dict[str, Any] | None = None,
    ):
        self.state = state
        self.entry = entry
        self.request_id = request_id
        self.endpoint = endpoint
        self.requested_model = requested_model
        self.account = account
        self.t0 = t0
        # the `hillclimb` extension field's request part (requested model, routing decision)
        self.extra: dict[str, Any] = dict(extra or {})
        self.handles: list[RequestHandle] = []
        self.prompt_lens: list[int] = []
        self.distinct_prompt_tokens = 0
        self.n = 1  # choices per prompt (the first choice of each prompt counts its healing)
        self.tasks: list[asyncio.Task] = []
        self.reserved = False
        self.finalized = False
        self.failed = False  # a stream that ended with an error object (`ChoiceStream.sse`)
        self.first_token_at: float | None = None
        self.outputs: dict[int, GenerationOutput] = {}  # by choice index
        self.counts: dict[int, list[int]] = {}  # choice -> [completion, reasoning] (fallback)
        self.finish: dict[int, str] = {}
        # the flywheel (`serve/flywheel.py`): the request as sent (set by the endpoint) and a
        # function giving each choice's final answer, read once when the job is finalized
        self.flywheel_request: dict[str, Any] | None = None
        self.answers: Any = None
        # consent when the request arrived: an opt-in recorded while it is in flight must not
        # reach back to it (`FlywheelStore.record_served` also checks consent at the end)
        self.consent_at_start = self._consent_now()

    def _consent_now(self) -> bool:
        """The account's flywheel consent now; False (nothing kept) when it cannot be read — a
        flywheel that fails must not fail the request."""
        if self.account is None or self.state.flywheel is None:
            return False
        try:
            return self.state.flywheel.consent(
                self.account.name, key_id=self.account.key_hash or None
            )
        except Exception:
            log.exception("flywheel consent %s", self.request_id)
            return False

    # billing
    def reserve(self, prompt_tokens_total: int, max_new_total: int) -> None:
        max_cost = self.entry.price.cost_micro(prompt_tokens_total, max_new_total)
        try:
            self.state.db.reserve(
                self.request_id,
                self.account,
                self.endpoint,
                self.requested_model,
                self.entry.id,
                max_cost,
            )
        except InsufficientCredits as exc:
            self.state.metrics.credits_refused.inc()
            raise APIError(
                402, str(exc), "insufficient_quota", None, "insufficient_credits"
            ) from None
        self.reserved = True

    def submit(self, prompts: list[list[int]], params: list[SamplingParams]) -> None:
        eng = self.entry.engine
        for i, (ids, p) in enumerate(zip(prompts, params, strict=True)):
            self.handles.append(eng.submit(ids, p, request_id=f"{self.request_id}-{i}"))
            self.prompt_lens.append(len(ids))
            self.counts[i] = [0, 0]

    async def batches(self, stream: bool = False) -> AsyncIterator[list[tuple[int, TokenEvent]]]:
        """Lists of (choice index, TokenEvent), as they arrive: everything already delivered by
        the engine is drained at once, so under load one SSE write carries many tokens. With
        `stream`, a batch after the first waits out `state.flush_interval` since the last."""
        queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        last: float | None = None

        async def pump(i: int, h: RequestHandle) -> None:
            try:
                async for ev in h.aiter():
                    queue.put_nowait((i, ev))
            except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
                queue.put_nowait((i, exc))
                return
            queue.put_nowait((i, None))

        self.tasks = [asyncio.create_task(pump(i, h)) for i, h in enumerate(self.handles)]
        left = len(self.handles)
        while left:
            items = [await queue.get()]
            if stream and last is not None:
                wait = last + self.state.flush_interval(self.entry) - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            while not queue.empty():
                items.append(queue.get_nowait())
            batch = []
            for i, ev in items:
                if ev is None:
                    left -= 1
                elif isinstance(ev, BaseException):
                    raise ev
                else:
                    self._count(i, ev)
                    batch.append((i, ev))
            if batch:
                last = loop.time()
                yield batch

    async def events(self) -> AsyncIterator[tuple[int, TokenEvent]]:
        """(choice index, TokenEvent) from every engine request, as they arrive."""
        async for batch in self.batches():
            for item in batch:
                yield item

    def _count(self, i: int, ev: TokenEvent) -> None:
        if ev.token_ids and self.first_token_at is None:
            self.first_token_at = time.perf_counter()
            self.state.metrics.ttft.observe(self.entry.id, value=self.first_token_at - self.t0)
        c = self.counts[i]
        c[0] += len(ev.token_ids)
        if ev.is_reasoning:
            c[1] += len(ev.token_ids)
        if ev.finished:
            self.finish[i] = ev.finish_reason or "stop"

    async def collect_outputs(self) -> None:
        """GenerationOutputs of the finished engine requests (exact usage, spec, timings)."""
        for i, h in enumerate(self.handles):
            if i in self.outputs or i not in self.finish:
                continue
            try:
                self.outputs[i] = await asyncio.to_thread(h.result, 30.0)
            except Exception:  # the stream already ended; fall back to our own counts
                log.exception("request %s: no result for choice %d", self.request_id, i)

    async def cancel_and_wait(self, timeout: float = CANCEL_WAIT_S) -> None:
        """Cancel the engine requests and wait (bounded) for the engine to end them, keeping
        their final outputs. A stream whose client went away is then counted and charged with
        every token the engine generated, as a plain request cancelled the same way is: the
        stream had only taken the tokens delivered before the cut, and the engine generates
        until its next step sees the cancel. Not used at shutdown, where the engines are being
        stopped and settling must not wait (the server's own counts settle it then)."""
        for h in self.handles:
            h.cancel()

        async def final(i: int, h: RequestHandle) -> None:
            async for _ in h.aiter():  # ends when the engine has finished the request
                pass
            self.outputs[i] = h.result(0)

        waits = [final(i, h) for i, h in enumerate(self.handles) if i not in self.outputs]
        if not waits:
            return
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
        except Exception:  # a wedged or dead engine: settle with the server's own counts
            log.warning("request %s: the engine did not end its cancelled choices", self.request_id)
        except asyncio.CancelledError:  # shutting down: the caller still settles, at once
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()

    def usage(self) -> tuple[int, int, int]:
        if not self.handles:  # refused before any engine request ran (a 400 at submit): free
            return 0, 0, 0
        completion = reasoning = 0
        for i in range(len(self.handles)):
            out = self.outputs.get(i)
            if out is not None:
                completion += out.completion_tokens
                reasoning += out.reasoning_tokens
            else:
                completion += self.counts[i][0]
                reasoning += self.counts[i][1]
        # token healing backs up prompt tokens: they are prefilled by no one and re-generated
        # (counted as completion tokens), so the prompt count drops by as many, once per prompt
        healed = sum(
            getattr(self.outputs.get(i), "healed_tokens", 0) or 0
            for i in range(0, len(self.handles), self.n)
        )
        return self.distinct_prompt_tokens - healed - self._never_run(), completion, reasoning

    def _never_run(self) -> int:
        """Prompt tokens of the distinct prompts no choice of which ever got a batch slot (all
        cancelled while queued: the client left, or gave up waiting under load). No token of
        them was processed, so, as for a request refused at submit, they are not charged."""
        skipped = 0
        for k in range(0, len(self.handles), self.n):
            idx = range(k, min(k + self.n, len(self.handles)))
            outs = [self.outputs.get(i) for i in idx]
            if all(self._not_admitted(i, o) for i, o in zip(idx, outs, strict=True)):
                # (its healed tokens are already off the count)
                healed = next((o for o in outs if o is not None), None)
                skipped += self.prompt_lens[k] - (getattr(healed, "healed_tokens", 0) or 0)
        return skipped

    def _not_admitted(self, i: int, out: Any) -> bool:
        """Choice `i` never got a batch slot: its output says so, or — settled without waiting
        for it (a server shutting down) — its cancelled handle does."""
        if out is not None:
            return not getattr(out, "admitted", True)
        h = self.handles[i]
        never = getattr(h, "never_admitted", None)
        return bool(h.cancelled and never is not None and never())

    def spec_summary(self) -> dict[str, Any] | None:
        specs = [o.spec for o in self.outputs.values() if getattr(o, "spec", None)]
        if not specs:
            return None
        drafted = sum(s.get("drafted", 0) for s in specs)
        accepted = sum(s.get("accepted", 0) for s in specs)
        steps = sum(s.get("steps", 0) for s in specs)
        return {
            "drafted": drafted,
            "accepted": accepted,
            "steps": steps,
            "acceptance_rate": accepted / drafted if drafted else 0.0,
            "mean_accept_len": (accepted + steps) / steps if steps else 0.0,
        }

    async def finalize(self, status: int) -> None:
        if self.finalized:
            return
        self.finalized = True
        for t in self.tasks:
            t.cancel()
        for h in self.handles:
            try:
                h.cancel()
            except Exception:
                log.exception("cancel %s", self.request_id)
        self.state.metrics.inflight.add(amount=-1)
        prompt, completion, reasoning = self.usage()
        m = self.state.metrics
        mid = self.entry.id
        m.requests.inc(self.endpoint, mid, str(status))
        m.prompt_tokens.inc(mid, amount=prompt)
        m.completion_tokens.inc(mid, amount=completion)
        m.reasoning_tokens.inc(mid, amount=reasoning)
        m.latency.observe(self.endpoint, mid, value=time.perf_counter() - self.t0)
        if status == 200 and self.state.flywheel is not None:
            try:
                self.state.flywheel.record_served(
                    self.request_id,
                    account=self.account.name if self.account is not None else "open",
                    endpoint=self.endpoint,
                    model=self.entry.id,
                    request=self.flywheel_request or {},
                    response={"choices": self.answers() if self.answers else []},
                    open_mode=self.account is None,
                    key_id=self.account.key_hash or None if self.account is not None else None,
                    consent_at_start=self.consent_at_start,
                )
            except Exception:
                log.exception("flywheel record %s", self.request_id)
        if self.reserved:
            finish = ",".join(sorted(set(self.finish.values()))) or "cancelled"
            cost = self.entry.price.cost_micro(prompt, completion)
            try:
                self.state.db.settle(
                    self.request_id,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    reasoning_tokens=reasoning,
                    cost_micro=cost,
                    finish_reason=finish,
                    http_status=status,
                )
            except Exception:
                log.exception("settling %s", self.request_id)

    # the answer's common parts
    def hillclimb_field(self) -> dict[str, Any]:
        """The `hillclimb` extension field: request part, served model, speculation, timings."""
        out = dict(self.extra)
        out["model"] = self.entry.id
        spec = self.spec_summary()
        if spec:
            out["speculative"] = spec
        if self.outputs:
            first = self.outputs[min(self.outputs)]
            timings = getattr(first, "timings", None)
            if timings:
                out["timings"] = timings
        return out

    def usage_dict(self) -> dict[str, Any]:
        # reused prompt tokens, once per distinct prompt (its first choice), as healing counts
        cached = sum(
            getattr(self.outputs.get(i), "cached_tokens", 0) or 0
            for i in range(0, len(self.handles), self.n)
        )
        return usage_dict(*self.usage(), cached=cached, predicted=self.prediction_counts())

    def prediction_counts(self) -> tuple[int, int]:
        """(accepted, rejected) predicted-output tokens over the choices, as OpenAI reports them
        for Predicted Outputs. Ours: accepted = tokens drafted from the prediction that the model
        verified and kept (each is in the completion); rejected = tokens drafted from the
        prediction that the model verified and discarded — processed in a verification forward,
        as OpenAI's are, but not billed (`completion_tokens` counts only returned tokens).
        Prediction tokens never drafted (the policy decoded plainly, the answer ended first)
        are in neither count; (0, 0) without a prediction."""
        specs = [getattr(o, "spec", None) or {} for o in self.outputs.values()]
        accepted = sum(int(s.get("prediction_accepted", 0) or 0) for s in specs)
        rejected = sum(int(s.get("prediction_rejected", 0) or 0) for s in specs)
        return accepted, rejected

    def envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        """The OpenAI response object around `choices` (chat and text completions alike)."""
        return {
            "id": self.request_id,
            "object": obj,
            "created": int(time.time()),
            "model": self.entry.id,
            "choices": choices,
            "usage": self.usage_dict(),
            "system_fingerprint": None,
            "hillclimb": self.hillclimb_field(),
        }

    async def watch_disconnect(self, request: Request) -> None:
        """Cancel the engine requests of a non-streaming request whose client went away."""
        try:
            while True:
                await asyncio.sleep(0.25)
                if await request.is_disconnected():
                    for h in self.handles:
                        h.cancel()
                    return
        except asyncio.CancelledError:
            return
