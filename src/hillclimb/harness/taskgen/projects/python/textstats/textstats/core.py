"""Counting words, characters and sentences."""

import re

WORD_RE = re.compile(r"[A-Za-z']+")


def words(text):
    """Lower-cased words of `text`."""
    return [w.lower() for w in WORD_RE.findall(text)]


def word_count(text):
    """Number of words."""
    return len(words(text))


def char_frequency(text, ignore_spaces=True):
    """Map each character to how often it occurs."""
    counts = {}
    for ch in text:
        if ignore_spaces and ch.isspace():
            continue
        counts[ch] = counts.get(ch, 0) + 1
    return counts


def longest_word(text):
    """The longest word (the first one on ties); None for text without words."""
    best = None
    for w in words(text):
        if best is None or len(w) > len(best):
            best = w
    return best


def average_word_length(text):
    """Mean word length; 0.0 when there are no words."""
    ws = words(text)
    if not ws:
        return 0.0
    return sum(len(w) for w in ws) / len(ws)


def sentence_count(text):
    """Sentences end with '.', '!' or '?'; trailing text without one counts as a sentence."""
    parts = [p for p in re.split(r"[.!?]+", text) if p.strip()]
    return len(parts)


def top_words(text, n=3):
    """The `n` most frequent words, most frequent first, ties alphabetical."""
    counts = {}
    for w in words(text):
        counts[w] = counts.get(w, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [w for w, _ in ranked[:n]]
