"""Prometheus metrics in the text exposition format (version 0.0.4), with no client library.

Why hand-rolled: the server needs three metric kinds (counter, gauge, histogram) with labels, and
the text format is a small, stable spec; a dependency would be larger than this file. Counters
and gauges are one implementation (`_Values`: a float per label set); they differ only in what
may change a value. Engine-side numbers (queue depth, running requests, speculative acceptance)
are not pushed into metrics as they change — they are read from `Engine.stats()` at scrape time
through a collector callback, so /metrics always shows the engine's own truth.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

LabelValues = tuple[str, ...]

# Latency buckets (seconds): from a fast first token on CPU to a long reasoning request.
_SUB_SECOND = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)
LATENCY_BUCKETS = (*_SUB_SECOND, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if math.isnan(x):
        return "NaN"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()):
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class _Values(_Metric):
    """One float per label set: the storage and rendering of counters and gauges alike."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()):
        super().__init__(name, help, labels)
        self._values: dict[LabelValues, float] = {}

    def _add(self, labels: LabelValues, amount: float) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        lines = [f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in items]
        return self.header() + lines


class Counter(_Values):
    kind = "counter"

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._add(labels, amount)


class Gauge(_Values):
    kind = "gauge"

    def add(self, *labels: str, amount: float) -> None:
        self._add(labels, amount)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Iterable[float] = LATENCY_BUCKETS,
    ):
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets))
        self._data: dict[LabelValues, list[float]] = {}  # counts per bucket + [sum, count]

    def observe(self, *labels: str, value: float) -> None:
        with self._lock:
            d = self._data.get(labels)
            if d is None:
                d = self._data[labels] = [0.0] * (len(self.buckets) + 2)
            for i, b in enumerate(self.buckets):
                if value <= b:
                    d[i] += 1
            d[-2] += value
            d[-1] += 1

    def count(self, *labels: str) -> float:
        d = self._data.get(labels)
        return d[-1] if d else 0.0

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._data.items())
        out = self.header()
        for k, d in items:
            for i, b in enumerate(self.buckets):
                le = 'le="' + _num(b) + '"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, k, le)} {_num(d[i])}")
            inf = 'le="+Inf"'
            out.append(f"{self.name}_bucket{_labels(self.label_names, k, inf)} {_num(d[-1])}")
            out.append(f"{self.name}_sum{_labels(self.label_names, k)} {_num(d[-2])}")
            out.append(f"{self.name}_count{_labels(self.label_names, k)} {_num(d[-1])}")
        return out


class ServerMetrics:
    """Every metric the server exposes; `render()` is the /metrics body."""

    def __init__(self) -> None:
        p = "hillclimb_"
        self.requests = Counter(
            p + "requests_total",
            "HTTP API requests by endpoint, model and status code (499: client closed the stream).",
            ("endpoint", "model", "status"),
        )
        self.prompt_tokens = Counter(
            p + "prompt_tokens_total", "Prompt tokens processed.", ("model",)
        )
        self.completion_tokens = Counter(
            p + "completion_tokens_total",
            "Completion tokens generated (reasoning included).",
            ("model",),
        )
        self.reasoning_tokens = Counter(
            p + "reasoning_tokens_total", "Completion tokens inside <think> blocks.", ("model",)
        )
        self.ttft = Histogram(
            p + "time_to_first_token_seconds",
            "Time from request arrival to the first generated token.",
            ("model",),
        )
        self.latency = Histogram(
            p + "request_duration_seconds",
            "Time from request arrival to the last byte of the answer.",
            ("endpoint", "model"),
        )
        self.inflight = Gauge(p + "http_requests_in_flight", "Generation requests being served.")
        self.routed = Counter(
            p + "router_decisions_total", "model=auto decisions by target.", ("routed_to",)
        )
        self.credits_refused = Counter(
            p + "insufficient_credits_total", "Requests refused with 402."
        )
        self.rate_limited = Counter(p + "rate_limited_total", "Requests refused with 429.")
        self._collectors: list[Callable[[], list[str]]] = []

    def add_collector(self, fn: Callable[[], list[str]]) -> None:
        self._collectors.append(fn)

    def render(self) -> str:
        lines: list[str] = []
        for m in (
            self.requests,
            self.prompt_tokens,
            self.completion_tokens,
            self.reasoning_tokens,
            self.ttft,
            self.latency,
            self.inflight,
            self.routed,
            self.credits_refused,
            self.rate_limited,
        ):
            lines += m.render()
        for fn in self._collectors:
            try:
                lines += fn()
            except Exception as exc:  # a broken collector must not break scraping
                lines.append(f"# collector error: {type(exc).__name__}")
        return "\n".join(lines) + "\n"


class _HasStats(Protocol):
    def stats(self) -> dict[str, Any]: ...


# Read from `Engine.stats()` at scrape time: (section of the stats dict, "" = top level; key;
# metric; kind; help). `fmt: skip` keeps it a table, one row per metric (ruff would give every
# row five lines).
_ENGINE_FIELDS: tuple[tuple[str, str, str, type[_Values], str], ...] = (
    ("", "queue_depth", "hillclimb_engine_queue_depth", Gauge,
     "Requests waiting for an engine slot."),
    ("", "running", "hillclimb_engine_running", Gauge, "Requests in the running batch."),
    ("", "max_batch", "hillclimb_engine_max_batch", Gauge, "Engine batch slots."),
    ("totals", "decode_steps", "hillclimb_engine_decode_steps_total", Counter,
     "Engine decode steps since start."),
    ("totals", "batched_steps", "hillclimb_engine_batched_steps_total", Counter,
     "Decode steps over several requests at once (continuous batching)."),
    ("totals", "batched_compiled_steps", "hillclimb_engine_batched_compiled_steps_total",
     Counter, "Batched decode steps run by the compiled graph (contiguous slots)."),
    ("totals", "errors", "hillclimb_engine_request_errors_total", Counter,
     "Engine requests that ended with an error."),
    ("totals", "finished", "hillclimb_engine_requests_finished_total", Counter,
     "Engine requests that got a batch slot and ended (stop, length, cancel or error)."),
    ("totals", "cancelled", "hillclimb_engine_requests_cancelled_total", Counter,
     "Engine requests cancelled (queued ones included)."),
    ("totals", "cancelled_queued", "hillclimb_engine_requests_cancelled_queued_total", Counter,
     "Engine requests cancelled before a batch slot: no token processed, not finished."),
    ("totals", "prompt_tokens", "hillclimb_engine_prompt_tokens_total", Counter,
     "Prompt tokens of requests that got a batch slot (reused ones included)."),
    ("speculative", "drafted", "hillclimb_spec_drafted_tokens_total", Counter,
     "Tokens drafted by code-flash for speculative decoding."),
    ("speculative", "accepted", "hillclimb_spec_accepted_tokens_total", Counter,
     "Drafted tokens accepted by the verifier."),
    ("speculative", "steps", "hillclimb_spec_verify_steps_total", Counter,
     "Speculative verification forwards of the target model."),
    ("speculative", "acceptance_rate", "hillclimb_spec_acceptance_rate", Gauge,
     "Accepted / drafted tokens, aggregate since start."),
    ("speculative", "mean_accept_len", "hillclimb_spec_mean_accept_length", Gauge,
     "Tokens committed per verification forward, aggregate since start."),
    ("lookup", "drafted", "hillclimb_lookup_drafted_tokens_total", Counter,
     "Tokens drafted by prompt lookup / predicted outputs."),
    ("lookup", "accepted", "hillclimb_lookup_accepted_tokens_total", Counter,
     "Prompt-lookup drafted tokens accepted by the verifier."),
    ("suffix", "drafted", "hillclimb_suffix_drafted_tokens_total", Counter,
     "Tokens drafted by suffix drafting (prompt lookup + recent outputs)."),
    ("suffix", "accepted", "hillclimb_suffix_accepted_tokens_total", Counter,
     "Suffix-drafted tokens accepted by the verifier."),
    ("drafter_choice", "lookup", "hillclimb_drafter_auto_lookup_requests_total", Counter,
     "Requests the per-request drafter choice sent to prompt lookup (code, FIM)."),
    ("drafter_choice", "suffix", "hillclimb_drafter_auto_suffix_requests_total", Counter,
     "Requests the per-request drafter choice sent to suffix drafting (tool observations)."),
    ("drafter_choice", "model", "hillclimb_drafter_auto_model_requests_total", Counter,
     "Requests the per-request drafter choice sent to the draft model."),
    ("drafter_choice", "none", "hillclimb_drafter_auto_none_requests_total", Counter,
     "Requests the per-request drafter choice decoded plainly (nothing to copy, no model)."),
    ("totals", "prefill_tokens", "hillclimb_engine_prefill_tokens_total", Counter,
     "Prompt tokens fed to prefill forwards (reused ones excluded)."),
    ("prefix", "lookups", "hillclimb_prefix_cache_lookups_total", Counter,
     "Admitted requests looked up in the prefix cache."),
    ("prefix", "hits", "hillclimb_prefix_cache_hits_total", Counter,
     "Requests that reused a cached prefix."),
    ("prefix", "reused_tokens", "hillclimb_prefix_cache_reused_tokens_total", Counter,
     "Prompt tokens not prefilled (KV reused)."),
    ("prefix", "prompt_tokens", "hillclimb_prefix_cache_prompt_tokens_total", Counter,
     "Prompt tokens of looked-up requests."),
    ("prefix", "evictions", "hillclimb_prefix_cache_evictions_total", Counter,
     "Cached prefixes evicted for new requests."),
    ("prefix", "invalidations", "hillclimb_prefix_cache_invalidations_total", Counter,
     "Cached prefixes dropped after a weight sync or a failed step."),
    ("prefix", "entries", "hillclimb_prefix_cache_entries", Gauge,
     "Slots holding a cached prefix."),
    ("prefix", "cached_tokens", "hillclimb_prefix_cache_tokens", Gauge,
     "Tokens held by cached prefixes."),
    ("prefix", "hit_rate", "hillclimb_prefix_cache_hit_rate", Gauge,
     "Requests that hit / looked up, since start."),
    ("prefix", "token_hit_rate", "hillclimb_prefix_cache_token_hit_rate", Gauge,
     "Reused / prompt tokens of looked-up requests, since start."),
)  # fmt: skip


def engine_collector(engines: Mapping[str, _HasStats]) -> Callable[[], list[str]]:
    """Metrics read from each engine's `stats()` at scrape time (one series per model)."""

    def collect() -> list[str]:
        stats: dict[str, dict[str, Any]] = {}
        for name, eng in engines.items():
            try:
                stats[name] = eng.stats()
            except Exception:
                stats[name] = {}
        out: list[str] = []
        for section, key, metric, kind, help in _ENGINE_FIELDS:
            series = kind(metric, help, ("model",))
            for name, s in stats.items():
                v = ((s.get(section) or {}) if section else s).get(key)
                if isinstance(v, int | float) and not isinstance(v, bool):
                    series._add((name,), float(v))
            if series._values:
                out += series.render()
        return out

    return collect
