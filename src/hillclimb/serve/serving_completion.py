"""`POST /v1/completions` (vLLM's `serving_completion`): raw or FIM prompts in, raw text out.

Why the think tags are put back (`RawText`): a completion is the model's raw continuation, while
the engine streams visible text and marks reasoning with `is_reasoning`; the text a client gets
must be what the model wrote. `suffix` builds the FIM prompt here, server-side, in the layout of
`specials.fim_prompt` that a client rendering the template itself would use: identical tokens,
except that special-token strings inside the client's code are read as text here
(`Tokenizer.encode_fim`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from hillclimb.serve.api import CompletionRequest, invalid
from hillclimb.serve.job import openai_finish
from hillclimb.serve.serving import (
    Endpoint,
    logprob_value,
    token_repr,
    token_text,
    top_alternatives,
)
from hillclimb.serve.streaming import ChoiceStream
from hillclimb.tokenizer.specials import THINK_END, THINK_START

if TYPE_CHECKING:
    from hillclimb.serve.engine import TokenEvent
    from hillclimb.serve.job import Job
    from hillclimb.serve.state import ServerState
    from hillclimb.tokenizer.io import Tokenizer


class RawText:
    """Completion text from token events, with the `<think>`/`</think>` tags put back (the
    engine streams visible text and marks the reasoning side with `is_reasoning`)."""

    def __init__(self, think_start_id: int):
        self.think_start_id = think_start_id
        self.mode: bool | None = None
        self.saw_start = False

    def feed(self, ev: TokenEvent) -> str:
        if ev.raw_text is not None:  # the engine put the tags back where they were generated
            return ev.raw_text
        if self.think_start_id in ev.token_ids:
            self.saw_start = True
        if not ev.text:
            return ""
        prefix = ""
        if self.mode is None:
            prefix = THINK_START if ev.is_reasoning and self.saw_start else ""
        elif ev.is_reasoning != self.mode:
            prefix = THINK_START if ev.is_reasoning else THINK_END
        self.mode = ev.is_reasoning
        return prefix + ev.text


def completion_prompts(req: CompletionRequest, tok: Tokenizer) -> list[list[int]]:
    p = req.prompt
    vocab = tok.vocab_size
    if isinstance(p, str):
        texts: list[str] | None = [p]
        ids_list = None
    elif p and isinstance(p[0], int):
        texts, ids_list = None, [list(p)]  # type: ignore[arg-type]
    elif p and isinstance(p[0], str):
        texts, ids_list = list(p), None  # type: ignore[arg-type]
    else:
        texts, ids_list = None, [list(x) for x in p]  # type: ignore[union-attr]
    if req.suffix is not None:
        if texts is None:
            raise invalid("suffix (fill-in-the-middle) needs a text prompt.", "suffix")
        # the code around the hole is data: `<|fim_middle|>` written in the user's file is text
        ids_list = [tok.encode_fim(t, req.suffix) for t in texts]
    elif texts is not None:
        ids_list = [tok.encode(t) for t in texts]  # a raw prompt is model format (as vLLM)
    assert ids_list is not None
    for ids in ids_list:
        if not ids:
            raise invalid("prompt must not be empty.", "prompt")
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise invalid(
                f"token id {bad[0]} is outside the vocabulary (size {vocab}).",
                "prompt",
                "invalid_value",
            )
    return ids_list


def echo_text(req: CompletionRequest, prompts: list[list[int]], k: int, tok: Tokenizer) -> str:
    if isinstance(req.prompt, str):
        return req.prompt
    if req.prompt and isinstance(req.prompt[0], str):
        return req.prompt[k]  # type: ignore[return-value]
    return tok.decode(prompts[k])


def completion_logprobs(
    records: list[dict[str, Any]], tok: Tokenizer, offset0: int
) -> dict[str, Any]:
    """Engine logprob records → an OpenAI completion `logprobs` object (offsets from
    `offset0`, the text length already sent). A token that is not valid UTF-8 is spelt
    "bytes:\\xNN..." as OpenAI does (`serving.token_repr`), in `tokens` and as a
    `top_logprobs` key, so the keys of distinct tokens never collide; offsets still advance
    by the token's decoded text (`logprob_text_length`)."""
    tokens, lps, tops, offsets = [], [], [], []
    pos = offset0
    for rec in records:
        tokens.append(token_repr(rec, tok)[0])
        lps.append(logprob_value(rec["logprob"]))
        alts = top_alternatives(rec)
        tops.append(_top_dict(alts, tok) if alts else None)
        offsets.append(pos)
        pos += len(token_text(rec, tok))
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


def _top_dict(alts: list[dict[str, Any]], tok: Tokenizer) -> dict[str, float]:
    """The alternatives as `{token: logprob}`, most likely first. Keys are distinct per token
    (`token_repr` is one-to-one on bytes); two ids with the very same bytes or text would still
    share one, so a repeated key falls back to "token_id:N" (vLLM's spelling) rather than
    silently dropping an alternative."""
    out: dict[str, float] = {}
    for a in alts:
        key = token_repr(a, tok)[0]
        if key in out:
            key = f"token_id:{a['token_id']}"
        out[key] = logprob_value(a["logprob"])
    return out


def logprob_text_length(records: list[dict[str, Any]], tok: Tokenizer) -> int:
    """Characters the records' tokens add to the text (their decoded texts, not their
    "bytes:" spellings): how far the next token's `text_offset` moves."""
    return sum(len(token_text(rec, tok)) for rec in records)


def echo_logprobs(
    prompt_ids: list[int],
    prompt_records: list[dict[str, Any]],
    echo: str,
    records: list[dict[str, Any]],
    tok: Tokenizer,
) -> dict[str, Any]:
    """`logprobs` for `echo`: every prompt token (the first with logprob and top None, as
    OpenAI and vLLM send it), then the generated tokens (offsets after the echoed text). A
    prompt token's offset is the character of the echoed prompt where its bytes start
    (`prompt_offsets`)."""
    first = token_repr({"token_id": prompt_ids[0]}, tok)[0]  # spelt as every other token
    head = completion_logprobs(prompt_records, tok, 0)  # (offsets: `prompt_offsets`)
    tail = completion_logprobs(records, tok, len(echo))
    offsets = prompt_offsets(prompt_ids, tok)
    return {
        "tokens": [first] + head["tokens"] + tail["tokens"],
        "token_logprobs": [None] + head["token_logprobs"] + tail["token_logprobs"],
        "top_logprobs": [None] + head["top_logprobs"] + tail["top_logprobs"],
        "text_offset": offsets + tail["text_offset"],
    }


def prompt_offsets(prompt_ids: list[int], tok: Tokenizer) -> list[int]:
    """Where each prompt token starts in the prompt's text, in characters.

    Why not the running length of the tokens' own texts (as for generated tokens, whose text
    may be held back): a character split over several tokens (é, CJK, an emoji with a byte-level
    vocabulary) decodes to U+FFFD per token, so those offsets ran past the prompt and the first
    generated token's offset, `len(echo)`, went backwards. The prompt is known whole: its bytes
    go through one incremental UTF-8 decoder, and a token that starts inside a character gets
    that character's offset."""
    import codecs

    dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
    raw = tok.token_raw_bytes
    out, pos = [], 0
    for t in prompt_ids:
        out.append(pos)
        b = raw[t] if 0 <= t < len(raw) and raw[t] else tok.decode([t]).encode("utf-8")
        pos += len(dec.decode(b))
    return out


def _answers(job: Job) -> Any:
    """The flywheel's view of the finished choices: the engine's final texts."""
    return lambda: [
        {"text": getattr(job.outputs.get(i), "text", "")} for i in range(len(job.handles))
    ]


class CompletionStream(ChoiceStream[str]):
    """`text_completion` chunks: the echoed prompt first when asked, then the raw text."""

    object_name = "text_completion"
    piece_key = "text"
    empty = ""

    def __init__(self, job: Job, req: CompletionRequest, prompts: list[list[int]]):
        job.answers = _answers(job)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        super().__init__(job, include_usage)
        self.req = req
        self.prompts = prompts
        self.tok = job.entry.engine.tokenizer
        self.offsets = {i: 0 for i in range(len(job.handles))}  # text sent per choice
        # where the next logprob token starts: tokens' texts are counted on their own, since a
        # step's text can be held back (an unfinished UTF-8 character, a possible stop string)
        # while its tokens are sent, so chunk text and chunk tokens need not line up
        self.lp_offsets = dict(self.offsets)
        self.raw = {i: RawText(self.tok.token_id(THINK_START)) for i in self.offsets}

    def head(self) -> list[bytes]:
        if not self.req.echo:
            return []
        echo = []
        for i in self.offsets:
            t = echo_text(self.req, self.prompts, i // self.req.n, self.tok)
            self.offsets[i] = self.lp_offsets[i] = len(t)
            echo.append(self.chunk(i, t))
        return echo

    def feed(self, i: int, ev: TokenEvent) -> tuple[list[str], Any | None]:
        text = self.raw[i].feed(ev)
        lp = None
        if self.req.logprobs is not None and ev.logprobs:
            lp = completion_logprobs(ev.logprobs, self.tok, self.lp_offsets[i])
            self.lp_offsets[i] += logprob_text_length(ev.logprobs, self.tok)
        self.offsets[i] += len(text)
        return ([text] if text else []), lp

    def merge(self, pieces: list[str]) -> list[str]:
        text = "".join(pieces)
        return [text] if text else []


class CompletionEndpoint(Endpoint[CompletionRequest]):
    name = "completions"
    request_type = CompletionRequest
    id_prefix = "cmpl-"
    prompt_param = "prompt"

    def prompts(
        self, req: CompletionRequest, tok: Tokenizer
    ) -> tuple[list[list[int]], list[dict[str, Any]] | None]:
        return completion_prompts(req, tok), None

    def is_fim(self, req: CompletionRequest, tok: Tokenizer, prompts: list[list[int]]) -> bool:
        """A `suffix`, or a FIM marker token in any prompt (a client-rendered template)."""
        from hillclimb.serve.router import is_fim_prompt

        return req.suffix is not None or any(is_fim_prompt(p, tok) for p in prompts)

    def flywheel_request(self, req: CompletionRequest) -> dict[str, Any] | None:
        # one text prompt (an IDE's completion or FIM request); token-id and batched prompts
        # are not kept
        prompt = (
            req.prompt[0] if isinstance(req.prompt, list) and len(req.prompt) == 1 else req.prompt
        )
        if not isinstance(prompt, str):
            return None
        return {"prompt": prompt, "suffix": req.suffix}

    def default_max_tokens(self, state: ServerState) -> int:
        return 16  # OpenAI's default for completions

    def logprobs(self, req: CompletionRequest) -> int | None:
        return req.logprobs

    def token_healing(self, req: CompletionRequest) -> bool | None:
        return req.token_healing  # None: the model's default

    async def collect(
        self, job: Job, req: CompletionRequest, prompts: list[list[int]]
    ) -> dict[str, Any]:
        tok = job.entry.engine.tokenizer
        job.answers = _answers(job)
        prompt_lps = None
        if req.echo and req.logprobs is not None:
            engine = job.entry.engine
            prompt_lps = [
                await asyncio.to_thread(engine.prompt_logprobs, p, req.logprobs) for p in prompts
            ]
        texts = {i: "" for i in range(len(job.handles))}
        raw = {i: RawText(tok.token_id(THINK_START)) for i in texts}
        records: dict[int, list[dict[str, Any]]] = {i: [] for i in texts}
        async for i, ev in job.events():
            texts[i] += raw[i].feed(ev)
            if req.logprobs is not None and ev.logprobs:
                records[i] += ev.logprobs
        await job.collect_outputs()
        choices = []
        for i in range(len(job.handles)):
            text = texts[i]
            out = job.outputs.get(i)
            if out is not None:
                text = out.text  # the engine's final text (stop strings removed)
            k = i // req.n
            echo = echo_text(req, prompts, k, tok) if req.echo else ""
            text = echo + text
            lp = None
            if prompt_lps is not None:
                lp = echo_logprobs(prompts[k], prompt_lps[k], echo, records[i], tok)
            elif req.logprobs is not None:
                lp = completion_logprobs(records[i], tok, 0)
            finish = openai_finish(job.finish.get(i))
            choices.append({"index": i, "text": text, "logprobs": lp, "finish_reason": finish})
        return job.envelope("text_completion", choices)

    def stream(
        self, job: Job, req: CompletionRequest, prompts: list[list[int]]
    ) -> AsyncIterator[bytes]:
        return CompletionStream(job, req, prompts).sse()
