"""Prometheus metrics in the text exposition format (version 0.0.4), with no client library.

Why hand-rolled: the server needs three metric kinds (counter, gauge, histogram) with labels, and
the text format is a small, stable spec; a dependency would be larger than this file. Engine-side
numbers (queue depth, running requests, speculative acceptance) are not pushed into metrics as
they change — they are read from `Engine.stats()` at scrape time through a collector callback,
so /metrics always shows the engine's own truth.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence

LabelValues = tuple[str, ...]

# Latency buckets (seconds): from a fast first token on CPU to a long reasoning request.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0)  # fmt: skip


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


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()):
        super().__init__(name, help, labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_num(v)}"
                                for k, v in items]  # fmt: skip


class Gauge(_Metric):
    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()):
        super().__init__(name, help, labels)
        self._values: dict[LabelValues, float] = {}

    def set(self, *labels: str, value: float) -> None:
        with self._lock:
            self._values[labels] = float(value)

    def add(self, *labels: str, amount: float) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_num(v)}"
                                for k, v in items]  # fmt: skip


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 buckets: Iterable[float] = LATENCY_BUCKETS):  # fmt: skip
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
        self.requests = Counter(p + "requests_total", "HTTP API requests by endpoint, model and "
                                "status code (499: client closed the stream).",
                                ("endpoint", "model", "status"))  # fmt: skip
        self.prompt_tokens = Counter(p + "prompt_tokens_total", "Prompt tokens processed.",
                                     ("model",))  # fmt: skip
        self.completion_tokens = Counter(p + "completion_tokens_total",
                                         "Completion tokens generated (reasoning included).",
                                         ("model",))  # fmt: skip
        self.reasoning_tokens = Counter(
            p + "reasoning_tokens_total", "Completion tokens inside <think> blocks.", ("model",)
        )
        self.ttft = Histogram(p + "time_to_first_token_seconds",
                              "Time from request arrival to the first generated token.",
                              ("model",))  # fmt: skip
        self.latency = Histogram(p + "request_duration_seconds",
                                 "Time from request arrival to the last byte of the answer.",
                                 ("endpoint", "model"))  # fmt: skip
        self.inflight = Gauge(p + "http_requests_in_flight", "Generation requests being served.")
        self.routed = Counter(p + "router_decisions_total", "model=auto decisions by target.",
                              ("routed_to",))  # fmt: skip
        self.credits_refused = Counter(p + "insufficient_credits_total",
                                       "Requests refused with 402.")  # fmt: skip
        self.rate_limited = Counter(p + "rate_limited_total", "Requests refused with 429.")
        self._collectors: list[Callable[[], list[str]]] = []

    def add_collector(self, fn: Callable[[], list[str]]) -> None:
        self._collectors.append(fn)

    def render(self) -> str:
        lines: list[str] = []
        for m in (self.requests, self.prompt_tokens, self.completion_tokens, self.reasoning_tokens,
                  self.ttft, self.latency, self.inflight, self.routed, self.credits_refused,
                  self.rate_limited):  # fmt: skip
            lines += m.render()
        for fn in self._collectors:
            try:
                lines += fn()
            except Exception as exc:  # a broken collector must not break scraping
                lines.append(f"# collector error: {type(exc).__name__}")
        return "\n".join(lines) + "\n"


def engine_collector(engines: dict[str, object]) -> Callable[[], list[str]]:
    """Gauges read from each engine's `stats()` at scrape time."""

    def collect() -> list[str]:
        stats = {}
        for name, eng in engines.items():
            try:
                stats[name] = eng.stats()  # type: ignore[attr-defined]
            except Exception:
                stats[name] = {}

        def flat(s: dict) -> dict:
            spec = s.get("speculative") or {}
            totals = s.get("totals") or {}
            return {
                "queue_depth": s.get("queue_depth"),
                "running": s.get("running"),
                "max_batch": s.get("max_batch"),
                "decode_steps": totals.get("decode_steps"),
                "batched_steps": totals.get("batched_steps"),
                "batched_compiled_steps": totals.get("batched_compiled_steps"),
                "engine_errors": totals.get("errors"),
                "spec_drafted": spec.get("drafted"),
                "spec_accepted": spec.get("accepted"),
                "spec_steps": spec.get("steps"),
                "spec_acceptance_rate": spec.get("acceptance_rate"),
                "spec_mean_accept_len": spec.get("mean_accept_len"),
            }

        fields = [
            ("queue_depth", "hillclimb_engine_queue_depth", "gauge",
             "Requests waiting for an engine slot."),
            ("running", "hillclimb_engine_running", "gauge", "Requests in the running batch."),
            ("max_batch", "hillclimb_engine_max_batch", "gauge", "Engine batch slots."),
            ("decode_steps", "hillclimb_engine_decode_steps_total", "counter",
             "Engine decode steps since start."),
            ("batched_steps", "hillclimb_engine_batched_steps_total", "counter",
             "Decode steps over several requests at once (continuous batching)."),
            ("batched_compiled_steps", "hillclimb_engine_batched_compiled_steps_total",
             "counter", "Batched decode steps run by the compiled graph (contiguous slots)."),
            ("engine_errors", "hillclimb_engine_request_errors_total", "counter",
             "Engine requests that ended with an error."),
            ("spec_drafted", "hillclimb_spec_drafted_tokens_total", "counter",
             "Tokens drafted by code-flash for speculative decoding."),
            ("spec_accepted", "hillclimb_spec_accepted_tokens_total", "counter",
             "Drafted tokens accepted by the verifier."),
            ("spec_steps", "hillclimb_spec_verify_steps_total", "counter",
             "Speculative verification forwards of the target model."),
            ("spec_acceptance_rate", "hillclimb_spec_acceptance_rate", "gauge",
             "Accepted / drafted tokens, aggregate since start."),
            ("spec_mean_accept_len", "hillclimb_spec_mean_accept_length", "gauge",
             "Tokens committed per verification forward, aggregate since start."),
        ]  # fmt: skip
        flats = {n: flat(s) for n, s in stats.items()}
        out: list[str] = []
        for key, metric, kind, help in fields:
            rows = [
                (n, f[key])
                for n, f in flats.items()
                if isinstance(f.get(key), int | float) and not isinstance(f.get(key), bool)
            ]
            if not rows:
                continue
            out += [f"# HELP {metric} {help}", f"# TYPE {metric} {kind}"]
            out += [f'{metric}{{model="{_escape(n)}"}} {_num(float(v))}' for n, v in rows]
        return out

    return collect
