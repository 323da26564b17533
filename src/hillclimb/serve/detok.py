"""Incremental detokenization and stop-string matching for streamed generation.

Why incremental with a look-back window: with byte-level BPE a multi-byte UTF-8 character can be
split across tokens, so decoding one token at a time would emit U+FFFD halves. We decode a short
window of the last tokens, emit only the new suffix, and hold it back while it ends in an
incomplete character (the TGI/vLLM "prefix/read offset" scheme). A model with random weights emits
invalid byte sequences that will never complete; after `MAX_HOLD` tokens the replacement character
is emitted rather than stalling the stream forever.

Stop strings are matched on the visible text: a suffix that could still become a stop string is
held back (never streamed), and once a stop string appears the text is cut before it, so no text
past a stop string is ever emitted even when the stop string is split across tokens.
"""

from __future__ import annotations

from collections.abc import Callable

REPLACEMENT = "\ufffd"
MAX_HOLD = 4  # a UTF-8 character has at most 4 bytes, hence spans at most 4 tokens


class IncrementalDetokenizer:
    """Turns a stream of token ids into text deltas that never split a UTF-8 character."""

    def __init__(self, decode: Callable[[list[int]], str]):
        self.decode = decode
        self.ids: list[int] = []
        self.prefix_offset = 0  # window start (context for the decoder)
        self.read_offset = 0  # tokens before this are already emitted

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        return self._emit(force=False)

    def flush(self) -> str:
        """Emit whatever is held back (at the end of a stream or of a segment)."""
        return self._emit(force=True)

    def _emit(self, force: bool) -> str:
        if self.read_offset >= len(self.ids):
            return ""
        prefix = self.decode(self.ids[self.prefix_offset : self.read_offset])
        full = self.decode(self.ids[self.prefix_offset :])
        pending = len(self.ids) - self.read_offset
        if not force and full.endswith(REPLACEMENT) and pending < MAX_HOLD:
            return ""
        if len(full) < len(prefix) or not full.startswith(prefix):
            # The decoder re-segmented the window: fall back to a plain suffix difference.
            delta = full[len(prefix) :] if len(full) > len(prefix) else ""
        else:
            delta = full[len(prefix) :]
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        return delta


class StopMatcher:
    """Finds stop strings in an append-only text and tells how much is safe to emit."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.max_len = max((len(s) for s in self.stops), default=0)

    def find(self, text: str, start: int) -> int | None:
        """Earliest index >= start - (max_len - 1) where a stop string begins, or None."""
        if not self.stops:
            return None
        lo = max(0, start - self.max_len + 1)
        best: int | None = None
        for s in self.stops:
            i = text.find(s, lo)
            if i != -1 and (best is None or i < best):
                best = i
        return best

    def safe_end(self, text: str) -> int:
        """Length of the prefix of `text` that cannot be the start of a stop string."""
        if not self.stops:
            return len(text)
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        return len(text) - hold
