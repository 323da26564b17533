"""Code-aware pre-tokenization: the regex that decides which bytes BPE may ever merge.

BPE only merges inside a pre-token, so the pre-tokenizer fixes the shape of every token the
trainer can learn. GPT-2's regex was designed for English prose; on code it wastes tokens in
three places: underscores split identifiers (`__init__` -> `__`,`init`,`__`), the newline and the
indentation of the next line are cut apart and the line's first keyword is yet another piece, and
punctuation can never join a word (`self.` / `.append(` / `x):`). Ours (`CODE_PATTERN`) is built
from these alternatives, tried in order at each position:

1. **line start** - trailing blanks + one or more newlines (blank lines included) + the next line's
   whole indentation, optionally followed by that line's leading word (a keyword or identifier with
   one sigil char and <= 3 trailing punctuation chars: `\\n        return`, `\\n    def`,
   `\\n#define`) or a short punctuation run that ends the token (`\\n    })`, `\\n */`). The
   newline+indent run is therefore never split; BPE learns it as one token (`\\n        `) and, for
   frequent line openers, the opener with it - "common keyword runs merge".
2. **word** - one optional leading char (space, tab or punctuation: ` self`, `.append`, `(x`,
   `@property`, `'t`) + letters/marks/underscores + up to 3 trailing punctuation chars (`self):`,
   `x,`). Underscores belong to words, so identifiers stay whole.
3. **digit** - every digit is its own piece (`\\p{N}`), so numbers are spelled digit by digit and
   arithmetic sees a consistent representation (as LLaMA / DeepSeek-style tokenizers do).
4. **punctuation run** - optional leading and trailing space (` = `, ` == `, `->`, `();`).
5. **whitespace** - GPT-2's `\\s+(?!\\S)|\\s+` for blanks inside a line.

The byte-level step after it (`ByteLevel(use_regex=False)`) maps every byte to a printable symbol,
so any string - control characters, invalid-looking unicode, special-token lookalikes - round-trips.
Measured effect (bench/tokenizer_compare.py): see docs/areas/tokenizer.md.
"""

from __future__ import annotations

from tokenizers import Regex, pre_tokenizers

# Building blocks (Oniguruma syntax, as the `tokenizers` Split pre-tokenizer uses).
_PUNCT = r"[^\s\p{L}\p{N}_]"  # one punctuation/symbol char; `_` belongs to words
_SIGIL = r"[^\s\p{L}\p{N}]"  # a char that may lead a word at line start: . ( @ # $ _ ...
_LETTERS = r"[\p{L}\p{M}_]+"  # word body: letters, combining marks, underscore - never digits

LINE_START = (
    r"\s*[\r\n][ \t]*"  # trailing blanks, newline(s), indentation of the next line
    r"(?:" + _PUNCT + r"{1,3}(?=\s|$)"  # ... + a short punctuation run ending the token
    r"|" + _SIGIL + r"?" + _LETTERS + _PUNCT + r"{0,3})?"  # ... or the line's leading word
)
WORD = r"[^\r\n\p{L}\p{N}]?" + _LETTERS + _PUNCT + r"{0,3}"
DIGIT = r"\p{N}"
PUNCT_RUN = r" ?[^\s\p{L}\p{N}]+ ?"
SPACE = r"\s+(?!\S)|\s+"

CODE_PATTERN = "|".join([LINE_START, WORD, DIGIT, PUNCT_RUN, SPACE])
"""The code-aware pre-tokenization regex (version `CODE_PATTERN_VERSION`)."""

CODE_PATTERN_VERSION = "code-v1"

# GPT-2's published pattern (what `ByteLevel(use_regex=True)` applies); the eval baseline (a).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

PRETOKENIZERS = ("code", "gpt2")


def build_pretokenizer(kind: str = "code") -> pre_tokenizers.PreTokenizer:
    """The pre-tokenizer for `kind` ("code": ours; "gpt2": GPT-2's regex), byte-level mapped."""
    if kind == "code":
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(CODE_PATTERN), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    if kind == "gpt2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    raise ValueError(f"unknown pre-tokenizer {kind!r}; expected one of {PRETOKENIZERS}")


def pretokenize(text: str, kind: str = "code") -> list[str]:
    """The pre-tokens of `text` as plain strings (for inspection, docs and tests)."""
    from hillclimb.tokenizer.bytelevel import byte_to_unicode

    decode = {c: b for b, c in byte_to_unicode().items()}
    pieces = build_pretokenizer(kind).pre_tokenize_str(text)
    return [bytes(decode[c] for c in piece).decode("utf-8") for piece, _ in pieces]
