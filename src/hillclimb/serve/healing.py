"""Token healing: back up the prompt's last token(s) and let the model re-choose them.

Why: a completion prompt usually ends where the *user* stopped typing, not where the tokenizer
would put a token boundary. The code-aware tokenizer merges "\\n" with the next line's
indentation and whole identifiers into single tokens, so a prompt ending in "\\n", a space or
half an identifier ends on a token the model rarely saw in that position during training
(it saw "\\n    " as one token, not "\\n" followed by "    "). The model is then off-distribution
and, at small scale, often answers with end-of-sequence at once. Healing removes the last
token(s) from the prompt and constrains the first generated token(s) to ones whose bytes
*extend* the removed text (or are a prefix of it, in which case the constraint continues), so
the model picks the tokenization it knows — "\\n    return" instead of "\\n" + "    return".

The output text never repeats the removed text: `StripPrefix` cuts it from the decoded stream,
so the API returns exactly what follows the user's prompt.

Masks are built from the tokenizer's token byte strings, precomputed once per tokenizer
(`HealIndex`): the tokens that extend a byte string `R` are one contiguous range of the sorted
byte strings (two bisections), and the tokens that are proper prefixes of `R` are at most
`len(R) - 1` dictionary probes — no vocabulary scan per step. Special tokens (EOS, FIM markers,
`<|im_end|>`, think tags) have no byte string here, so they are never healed and never allowed
while a constraint is active.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import torch

from hillclimb.tokenizer.bytelevel import unicode_to_byte
from hillclimb.tokenizer.specials import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

__all__ = ["HealIndex", "HealPlan", "StripPrefix"]


@dataclass
class HealPlan:
    """What healing does to one prompt: `ids` is the prompt to prefill (the removed tokens cut
    out), `removed` the cut tokens' bytes (what the first generated tokens must reproduce),
    `text` the same as a string (what `StripPrefix` removes from the output), `n_removed` how
    many prompt tokens were cut."""

    ids: list[int]
    removed: bytes
    text: str
    n_removed: int


class HealIndex:
    """Per-tokenizer tables: each token's byte string, the sorted byte strings for prefix-range
    queries, and a cache of allowed-token masks keyed by the remaining removed bytes."""

    def __init__(self, tokenizer: Any, vocab_size: int):
        self.vocab_size = int(vocab_size)
        u2b = unicode_to_byte()
        specials = set(getattr(tokenizer, "special_ids", {}).values())
        hf = getattr(tokenizer, "hf", None)
        added = set()
        if hf is not None:
            added = set(hf.get_added_tokens_decoder().keys())
        self.special = specials | added
        self.bytes: list[bytes | None] = [None] * self.vocab_size
        n = min(tokenizer.vocab_size, self.vocab_size)
        for i in range(n):
            if i in self.special:
                continue
            piece = tokenizer.id_to_token(i)
            if not piece:
                continue
            try:
                self.bytes[i] = bytes(u2b[c] for c in piece)
            except KeyError:  # not a byte-level token: fall back to its decoded text
                self.bytes[i] = tokenizer.decode([i]).encode("utf-8")
        pairs = sorted((b, i) for i, b in enumerate(self.bytes) if b)
        self._keys = [b for b, _ in pairs]
        self._ids = [i for _, i in pairs]
        self._exact = {b: i for b, i in pairs}
        self._masks: dict[bytes, torch.Tensor] = {}
        tid = getattr(tokenizer, "token_id", None)
        self.fim = None
        if tid is not None:
            try:
                self.fim = (tid(FIM_PREFIX), tid(FIM_SUFFIX), tid(FIM_MIDDLE))
            except KeyError:
                self.fim = None

    # ---- which tokens are consistent with the removed text -----------------------------------
    def allowed_ids(self, rest: bytes) -> list[int]:
        """Token ids whose bytes start with `rest`, or are a non-empty proper prefix of it."""
        lo = bisect.bisect_left(self._keys, rest)
        hi = bisect.bisect_left(self._keys, successor(rest)) if successor(rest) else len(self._keys)
        out = self._ids[lo:hi]
        for j in range(1, len(rest)):
            t = self._exact.get(rest[:j])
            if t is not None:
                out.append(t)
        return out

    def mask(self, rest: bytes, device: torch.device | str = "cpu") -> torch.Tensor:
        """Bool [V]: True where a token is allowed while `rest` remains to be reproduced."""
        m = self._masks.get(rest)
        if m is None:
            m = torch.zeros(self.vocab_size, dtype=torch.bool)
            ids = self.allowed_ids(rest)
            if ids:
                m[torch.tensor(ids)] = True
            if len(self._masks) > 4096:
                self._masks.clear()
            self._masks[rest] = m
        return m.to(device)

    def advance(self, rest: bytes, tid: int) -> bytes | None:
        """The removed bytes still to reproduce after token `tid`; None if `tid` diverges."""
        b = self.bytes[tid] if 0 <= tid < self.vocab_size else None
        if not b:
            return None
        if b.startswith(rest):
            return b""
        if rest.startswith(b):
            return rest[len(b) :]
        return None

    # ---- where to heal ----------------------------------------------------------------------
    def plan(self, ids: list[int], max_tokens: int = 1) -> HealPlan | None:
        """Cut up to `max_tokens` non-special tokens at the heal point; None when nothing can be
        healed. The heal point is the prompt's end, or for a PSM fill-in-the-middle prompt
        (`<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>`) the end of P: the middle then has to
        start with what was cut from P. Never cuts a special token, never empties the prompt,
        and only cuts text that is complete UTF-8 (so it can be stripped from the output)."""
        if not ids or max_tokens < 1:
            return None
        end = len(ids)
        if self.fim is not None and ids[-1] == self.fim[2]:
            pre, suf, _ = self.fim
            try:
                j = len(ids) - 1 - ids[::-1].index(suf)
            except ValueError:
                return None
            if pre not in ids[:j]:
                return None
            end = j
        k = 0
        while k < max_tokens and end - k - 1 >= 0:
            t = ids[end - k - 1]
            if t in self.special or not (0 <= t < self.vocab_size) or not self.bytes[t]:
                break
            k += 1
        # a partial UTF-8 character at the cut cannot be stripped as text: cut fewer tokens
        while k > 0:
            removed = b"".join(self.bytes[t] or b"" for t in ids[end - k : end])
            try:
                text = removed.decode("utf-8")
            except UnicodeDecodeError:
                k -= 1
                continue
            kept = ids[: end - k] + ids[end:]
            if not kept:
                return None
            return HealPlan(ids=kept, removed=removed, text=text, n_removed=k)
        return None


def successor(prefix: bytes) -> bytes:
    """The least byte string greater than every string starting with `prefix` (b"" if none)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return b""
    p[-1] += 1
    return bytes(p)


class StripPrefix:
    """Wraps an `IncrementalDetokenizer`: its output minus a leading `prefix` (the healed text).

    If the stream diverges from the prefix (only possible for a token the engine forced, such
    as a reasoning-budget `</think>`), what was held back is given back and stripping stops, so
    no generated text is ever lost."""

    def __init__(self, inner: Any, prefix: str):
        self.inner = inner
        self.left = prefix
        self.taken = ""

    @property
    def ids(self) -> list[int]:
        return self.inner.ids

    def add(self, token_id: int) -> str:
        return self._strip(self.inner.add(token_id))

    def flush(self) -> str:
        return self._strip(self.inner.flush())

    def _strip(self, text: str) -> str:
        if not self.left or not text:
            return text
        k = 0
        n = min(len(text), len(self.left))
        while k < n and text[k] == self.left[k]:
            k += 1
        if k == n:
            self.taken += text[:k]
            self.left = self.left[k:]
            return text[k:]
        out = self.taken + text
        self.left = self.taken = ""
        return out
