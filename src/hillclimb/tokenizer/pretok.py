"""Code-aware pre-tokenization: the regex that decides which bytes BPE may ever merge.

BPE only merges inside a pre-token, so the pre-tokenizer fixes the shape of every token the
trainer can learn. GPT-2's regex was designed for English prose; on code it cuts the newline from
the next line's indentation and the line's first keyword, and spells every indentation level anew.
Ours (`CODE_PATTERN`, version `code-v2`) is built from these alternatives, tried in order at each
position:

1. **line start** - trailing blanks + one or more newlines (blank lines included) + the next line's
   whole indentation, optionally followed by that line's leading word (a keyword or identifier
   part with one optional sigil char: `\\n        return`, `\\n    def`, `\\n#define`) or a short
   punctuation run that ends the token (`\\n    })`, `\\n */`). The newline+indent run is
   therefore never split; BPE learns it as one token (`\\n        `) and, for frequent line
   openers, the opener with it - "common keyword runs merge".
2. **word** - one optional leading char (space, tab, punctuation or underscore: ` self`,
   `.append`, `(x`, `@property`, `_bar`) + letters/marks. No trailing punctuation, and an
   underscore starts a new word instead of joining two: `foo_bar` -> `foo`,`_bar`.
3. **digits** - every digit of a number is its own piece (`2048` -> `2`,`0`,`4`,`8`), so
   arithmetic sees a consistent representation (as LLaMA / DeepSeek-style tokenizers do). A digit
   run glued to a letter is one piece: `int32`, `0x1F00` (`0`,`x`,`1`), `\\u0078`, `utf8` - those
   are names and literals, not quantities.
4. **punctuation run** - optional leading and trailing space (` = `, ` == `, `->`, `();`, `__`).
5. **whitespace** - GPT-2's `\\s+(?!\\S)|\\s+` for blanks inside a line.

The byte-level step after it (`ByteLevel(use_regex=False)`) maps every byte to a printable symbol,
so any string - control characters, invalid-looking unicode, special-token lookalikes - round-trips.
Measured effect (bench/tokenizer_compare.py): see docs/areas/tokenizer.md.

Why code-v2 (issue 16): trained at 4K on Python only, code-v1 gave *more* tokens than GPT-2-regex
BPE on Java/C. Three of its rules learn Python, not code:
- words carried up to 3 trailing punctuation chars (`self.`, `x):`, `s,`): ~15% of a 4K
  vocabulary went to such pieces, and BPE merged a word's last letters with the punctuation before
  the word was complete (`d.` beats `field`), so on Java/C words fell apart (` field.` ->
  ` f`,`i`,`el`,`d.`) - Javadoc and C comments, half of the held-out Java tokens, paid most;
- underscores joined identifiers whole (`__init__`, `self_check`): Python's snake_case names
  filled the vocabulary, while the parts (`_bar`, `_LEN`) are what C's names share with it;
- `0x1F00`, `\\u0078` and `int32` were spelled digit by digit.
code-v1 stays available as `kind="code-v1"` (the bench's "before"); tokenizers trained with it
keep it, because `tokenizer.json` stores its regex.
"""

from __future__ import annotations

from tokenizers import Regex, pre_tokenizers

# Building blocks (Oniguruma syntax, as the `tokenizers` Split pre-tokenizer uses).
_PUNCT = r"[^\s\p{L}\p{N}_]"  # one punctuation/symbol char, not `_`
_SIGIL = r"[^\s\p{L}\p{N}]"  # a char that may lead a word: . ( @ # $ _ ...
_LETTERS = r"[\p{L}\p{M}]+"  # word body: letters and combining marks - no digits, no `_`
_NEWLINE_INDENT = r"\s*[\r\n][ \t]*"  # trailing blanks, newline(s), next line's indentation
_LINE_PUNCT = _PUNCT + r"{1,3}(?=\s|$)"  # ... + a short punctuation run ending the token

LINE_START = _NEWLINE_INDENT + r"(?:" + _LINE_PUNCT + r"|" + _SIGIL + r"?" + _LETTERS + r")?"
WORD = r"[^\r\n\p{L}\p{N}]?" + _LETTERS
DIGITS = r"(?<=\p{L})\p{N}+|\p{N}"  # a run right after a letter, else one digit
PUNCT_RUN = r" ?[^\s\p{L}\p{N}]+ ?"
SPACE = r"\s+(?!\S)|\s+"

CODE_PATTERN = "|".join([LINE_START, WORD, DIGITS, PUNCT_RUN, SPACE])
"""The code-aware pre-tokenization regex (version `CODE_PATTERN_VERSION`)."""

CODE_PATTERN_VERSION = "code-v2"

# code-v1 (issue 3): identifiers with `_` whole, up to 3 trailing punctuation chars, single digits.
_V1_WORD = r"[\p{L}\p{M}_]+" + _PUNCT + r"{0,3}"
CODE_V1_PATTERN = "|".join([
    _NEWLINE_INDENT + r"(?:" + _LINE_PUNCT + r"|" + _SIGIL + r"?" + _V1_WORD + r")?",
    r"[^\r\n\p{L}\p{N}]?" + _V1_WORD, r"\p{N}", PUNCT_RUN, SPACE,
])  # fmt: skip
"""code-v1, kept so the bench can show before/after and old provenance stays legible."""

CODE_PATTERNS = {"code-v1": CODE_V1_PATTERN, CODE_PATTERN_VERSION: CODE_PATTERN}

# GPT-2's published pattern (what `ByteLevel(use_regex=True)` applies); the eval baseline (a).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

PRETOKENIZERS = ("code", "gpt2", "code-v1")


def pattern_of(kind: str) -> tuple[str, str]:
    """(version, regex) of pre-tokenizer `kind`, as `tokenizer_train.json` records them."""
    if kind == "code":
        return CODE_PATTERN_VERSION, CODE_PATTERN
    if kind == "code-v1":
        return "code-v1", CODE_V1_PATTERN
    if kind == "gpt2":
        return "gpt2", GPT2_PATTERN
    raise ValueError(f"unknown pre-tokenizer {kind!r}; expected one of {PRETOKENIZERS}")


def build_pretokenizer(kind: str = "code") -> pre_tokenizers.PreTokenizer:
    """The pre-tokenizer for `kind` ("code": ours, current version; "code-v1": ours before issue
    16; "gpt2": GPT-2's regex), byte-level mapped."""
    if kind in ("code", "code-v1"):
        pattern = pattern_of(kind)[1]
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    if kind == "gpt2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    raise ValueError(f"unknown pre-tokenizer {kind!r}; expected one of {PRETOKENIZERS}")


def pretokenize(text: str, kind: str = "code") -> list[str]:
    """The pre-tokens of `text` as plain strings (for inspection, docs and tests)."""
    from hillclimb.tokenizer.bytelevel import unicode_to_byte

    decode = unicode_to_byte()
    pieces = build_pretokenizer(kind).pre_tokenize_str(text)
    return [bytes(decode[c] for c in piece).decode("utf-8") for piece, _ in pieces]
