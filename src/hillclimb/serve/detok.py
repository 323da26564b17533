"""Incremental detokenization and stop-string matching for streamed generation.

Why incremental with a look-back window: with byte-level BPE a multi-byte UTF-8 character can be
split across tokens, so decoding one token at a time would emit U+FFFD halves. We decode a short
window of the last tokens, emit only the new suffix, and hold it back while it ends in an
incomplete character (the TGI/vLLM "prefix/read offset" scheme). A model with random weights emits
invalid byte sequences that will never complete; after `MAX_HOLD` tokens the text before the
unfinished character is emitted rather than stalling the stream (the replacement character once
that character can no longer complete), so the streamed text always joins into one decode of
the tokens.

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
        end = len(self.ids)
        if not force and full.endswith(REPLACEMENT):
            if pending < MAX_HOLD:
                return ""
            end, full = self._final_part(prefix, full)
        if len(full) < len(prefix) or not full.startswith(prefix):
            # The decoder re-segmented the window: fall back to a plain suffix difference.
            delta = full[len(prefix) :] if len(full) > len(prefix) else ""
        else:
            delta = full[len(prefix) :]
        self.prefix_offset = self.read_offset
        self.read_offset = end
        return delta

    def _final_part(self, prefix: str, full: str) -> tuple[int, str]:
        """Held too long: the longest window `ids[prefix_offset:k]` whose text is final — a
        proper prefix of the whole window's text (so the bytes after k cannot change it) — and
        that text. Only the trailing incomplete character stays held: counting every pending
        token (stray invalid bytes before it included) gave up in the middle of a valid
        character, emitted it as U+FFFD and then lost it. None final: everything goes out."""
        for k in range(len(self.ids) - 1, self.read_offset, -1):
            text = self.decode(self.ids[self.prefix_offset : k])
            if len(text) < len(full) and full.startswith(text) and text.startswith(prefix):
                return k, text
        return len(self.ids), full


class StopMatcher:
    """Finds stop strings in an append-only text and tells how much is safe to emit.

    Why stateful: `safe_end` runs after every engine step on the whole visible text, and a stop
    string may be long (the API does not cap its length). Trying every prefix length of every
    stop string at each step was O(len(stop)²) per step; instead each stop string keeps a
    Knuth–Morris–Pratt state — the longest prefix of it that ends the text seen so far — and only
    the characters added since the last call are fed to it (amortised O(1) per character)."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.max_len = max((len(s) for s in self.stops), default=0)
        self._fail = [_prefix_function(s) for s in self.stops]
        self._states = [0] * len(self.stops)
        self._seen = 0  # length of the text the states describe
        self._tail = ""  # its last max_len - 1 characters

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
        keep = self.max_len - 1
        n = self._seen
        # A state (< len(stop)) depends only on the text's last max_len - 1 characters, so the
        # states carry over whenever those characters of the text seen are unchanged; otherwise
        # (a text that is not an extension) they are rebuilt from the new text's tail.
        if len(text) < n or text[max(0, n - keep) : n] != self._tail:
            n = max(0, len(text) - keep)
            self._states = [0] * len(self.stops)
        new = text[n:]
        if new:
            for j, s in enumerate(self.stops):
                self._states[j] = _kmp_advance(s, self._fail[j], self._states[j], new)
        self._seen = len(text)
        self._tail = text[max(0, len(text) - keep) :]
        return len(text) - max(self._states)


def _prefix_function(s: str) -> list[int]:
    """pi[i] = length of the longest proper prefix of s[: i + 1] that is also its suffix."""
    pi = [0] * len(s)
    k = 0
    for i in range(1, len(s)):
        while k and s[i] != s[k]:
            k = pi[k - 1]
        if s[i] == s[k]:
            k += 1
        pi[i] = k
    return pi


def _kmp_advance(s: str, pi: list[int], k: int, text: str) -> int:
    """The longest proper prefix of `s` ending the text, after `text` follows a text whose
    longest such prefix had length k (a whole match falls back to its longest border)."""
    last = len(s)
    for ch in text:
        while k and s[k] != ch:
            k = pi[k - 1]
        if s[k] == ch:
            k += 1
            if k == last:
                k = pi[k - 1]
    return k
