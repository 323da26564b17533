"""Decontamination: drop every document that contains an evaluation item.

Why it is built this way:

- **Probes are the evaluation texts themselves.** `hillclimb.problems.contamination_probes` gives
  the prompt, worked solution, reference code and tests of every val / heldout /
  heldout_phrasing item the climb can evaluate on (defaults: seed 0, 50 items per family x tier,
  which covers the climb's suites); user eval sets add JSONL files. Each text is one probe.
- **Long shared n-grams, not similarity.** A document is contaminated when it shares any run of
  `ngram` (13) normalised word tokens with a probe — the GPT-3 / PaLM decontamination rule: 13
  tokens in a row is far too specific to occur by chance, while a similarity score would need a
  threshold per domain. Probes shorter than `ngram` match only when the *whole* probe occurs, and
  only if they have at least `min_tokens` (8): "What is 3 + 4?" is in every arithmetic text and
  means nothing; such probes are counted as too short, not silently lost.
- **Normalisation for robustness to formatting:** lowercase, the two-character escapes `\\n`,
  `\\t`, `\\r` read as whitespace, then words = runs of letters/digits (everything else,
  underscores included, separates). So code quoted as a Python string literal (the way the problem
  catalogue stores its references) matches the same code written out, re-indented or re-spaced.
- **Encoded copies are read decoded.** A document is also looked at without its line comments,
  with its markup read as text (HTML-escaped code) and, when two `%XX` escapes sit in one run
  without whitespace, percent-decoded (`percent_decode`: a URL-encoded copy, `quote` or
  `quote_plus`, was caught 0 and 663 of 2,877 times, now 2,877 and 2,877; session 18). Each view
  is taken only on its cheap hint, so ordinary text pays nothing, and each only adds matches.
- **Renamed identifiers: code skeletons.** Code whose function, parameter and local names were
  consistently renamed shares no 13-word run with its probe (0 of 292 held-out functions,
  session 18). So the code probes (a Python `def name(`; not the FIM windows) also give n-grams
  of their *skeleton* (`code_skeleton`): every name the code chose itself replaced by `<k>`,
  numbered by first appearance from the last `def` / `class`, with keywords, builtins,
  attributes after `.`, literals and punctuation kept. A document with a `def name(` whose words
  matched nothing is skeletonised and looked up in that table. The length, `SKELETON_NGRAM` =
  30 tokens, is measured: at 25 the skeleton of an ordinary loop over all pairs of a list
  matched sympy and google-cloud-sdk files; at 30 none of 26,129 ordinary files with a
  `def name(` matched (`bench/decontam_skeleton_sweep.py`), and 226 of 292 renamed held-out
  functions are caught (every one with at least 30 skeleton tokens; shorter ones are too
  generic to tell apart from ordinary code). docs/areas/data.md has the table.
- **Short functions: whole-function fingerprints.** A held-out function too short for either
  look (`def pair_value(a, b): return a * b // 5`) passed with type hints added, names renamed,
  a docstring added or removed, or reformatted (588 of 4,005 disguised held-out functions,
  session 22). Each function of a code probe (and `name = lambda ...`) also gives a hash of its
  canonical form (`code_fingerprint`: annotations, decorators and docstrings dropped, its own
  names numbered, constants kept), if it has at least `code_fingerprint.MIN_NODES` nodes; a
  document whose other looks found nothing has its functions fingerprinted the same way.
- **Hashed n-grams in sorted numpy arrays.** Tokens get a stable 64-bit BLAKE2b hash (never
  Python's salted `hash`, so every worker and every resumed run agrees), n-grams a polynomial
  rolling hash mod 2**64 computed with one vector op per token position. The probe set is one
  sorted `uint64` array per n-gram length (8 bytes per n-gram, versus ~70 for a Python set of
  ints) searched with `np.searchsorted`; a parallel array names the probe that owns each hash, so
  a reject says which evaluation item it matched. A false match needs a 64-bit collision:
  ~1e-14 per document n-gram for a probe set of 1e5 hashes.
- **Our own generators are judged by identity.** The `generators` source is split from the
  evaluation items by problem key, so its document is contaminated when its `problem_id` is a
  probe's id (the split leaked). Its n-gram overlaps are expected — sibling problems share
  template sentences and sub-steps; a third of the tiny recipe's generated documents overlap —
  and are kept and counted (`generator_overlaps = "drop"` drops them); docs/areas/data.md has the
  measurements.
- **Built once per build, cached in the work directory.** Generating the probes takes seconds to
  a minute (the code families build and run programs), so the index is built in the main process,
  committed atomically to `.work/probes.npz` and handed to the filter workers; a resumed build
  reloads it, so chunks committed before and after a crash were judged against the same probes
  even if the generators changed in between. Within one process the problem probes are memoised;
  with several workers they are generated in parallel, one job per (family, split).
"""

from __future__ import annotations

import builtins
import gzip
import hashlib
import html
import html.entities
import json
import keyword
import re
import unicodedata
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hillclimb.data import code_fingerprint
from hillclimb.data.config import DecontaminateConfig
from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.io import atomic_path

FILTER_NAME = "decontaminate"
REASON = "contaminated"
# v2: Unicode folding in normalize_tokens; v3: uninformative number runs are not probe n-grams;
# v4: nor runs of single characters in 0-9a-z order; v5: code skeleton n-grams (renamed names);
# v6: accents and more look-alikes folded, `\\uXXXX` / `\\xXX` escapes decoded (session 21);
# v7: whole-function fingerprints of code probes (`code_fingerprint`, session 22)
INDEX_FORMAT = "hillclimb-decontam-index-v7"
# skeleton tokens per code n-gram (`code_skeleton`); chosen by measurement, docs/areas/data.md
SKELETON_NGRAM = 30

_ESCAPE = re.compile(r"\\[ntr]")
_WORD = re.compile(r"[^\W_]+")
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier of the rolling hash
_TOKEN_CACHE: dict[str, int] = {}
_TOKEN_CACHE_MAX = 1 << 18  # distinct tokens memoised per process (~40 MB)


# Latin look-alikes among Cyrillic and Greek lowercase letters (after `str.lower`): a probe
# written with them ("аdd" with a Cyrillic а) must not slip past as other words.
_CONFUSABLES = str.maketrans(
    {
        **dict(zip("аеорсухіјѕԁһԛԝӏк", "aeopcyxijsdhqwlk", strict=True)),  # Cyrillic
        **dict(zip("αειικνορυχω", "aeiiknopuxw", strict=True)),  # Greek
        # Latin letters of other alphabets (IPA, dotless i / j) and Armenian look-alikes: a
        # dotless ı, Latin alpha ɑ or Armenian օ for every i / a / o hid 51%, 61% and 45% of
        # held-out texts (session 21)
        **dict(zip("ıȷɑɡɩʏɪʟɴʀօսոհցզ", "ijagiyilnrounhgq", strict=True)),
        # Latin small capitals (ᴀ ʙ ᴄ ...): lowercase letters of their own, untouched by NFKC
        **dict(zip("ᴀʙᴄᴅᴇꜰɢʜᴊᴋᴍᴏᴘꜱᴛᴜᴠᴡᴢ", "abcdefghjkmopstuvwz", strict=True)),
    }
)

# Combining marks of the Latin, Greek and Cyrillic scripts (after NFKD): accents added to a
# probe's letters ("é" for "e", "à" for "a") hid 86% of held-out texts (session 21); folded away
# in probes and documents alike, they cost nothing but the distinction of "résumé" and "resume".
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")

# Unicode format characters (category Cf: soft hyphen, zero-width space/joiners, bidi marks, BOM,
# tags): invisible, so they can sit inside a word without changing how it reads.
_FORMAT_CHARS = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f]"
)


def _fold(text: str) -> str:
    """Unicode disguises folded away: NFKD (full-width digits, ligatures, compatibility forms)
    with the accents it splits off dropped (`_COMBINING`), invisible format characters (soft
    hyphen, zero-width joiners) dropped, look-alike letters of other scripts mapped to Latin.
    ASCII text is returned as is (the fast path)."""
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKD", text)
    text = _COMBINING.sub("", _FORMAT_CHARS.sub("", text))
    return text.lower().translate(_CONFUSABLES)


# Numbers written as words ("fifteen oranges", "one hundred and twenty-four"): a document is
# also matched with them read as digits (`ProbeIndex.match`). A held-out word problem or worked
# solution retold with its numbers spelled out shared no 13-word run with its probe 37% of the
# time (session 21). Documents only: probes keep their words, since HumanEval's own number words
# ("'one': 1, 'two': 2", "one, two, three, four") read as digits matched the lookup tables and
# counting runs of ordinary code (humanize, pyarrow).
_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen"]  # fmt: skip
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}
_NUMBER_WORDS = {
    **{w: v for v, w in enumerate(_UNITS)},
    **{w: 10 * (i + 2) for i, w in enumerate(_TENS)},
    "hundred": 100,
    **_SCALES,
}


def _number_run(toks: list[str], i: int) -> tuple[int, int]:
    """(value, end) of the number spelled by the words from `toks[i]` (a number word): units
    after tens ("twenty four"), "hundred" after a unit, scales, and an "and" after "hundred" or
    a scale when a unit or ten follows ("one hundred and five"). Two units in a row are two
    numbers ("one two" is 1, then 2)."""
    total = cur = 0
    last = ""  # kind of the previous word: unit, ten, hundred, scale
    j = i
    while j < len(toks):
        w = toks[j]
        if (
            w == "and"
            and last in ("hundred", "scale")
            and j + 1 < len(toks)
            and toks[j + 1] in _NUMBER_WORDS
            and _NUMBER_WORDS[toks[j + 1]] < 100
        ):
            j += 1
            continue
        v = _NUMBER_WORDS.get(w)
        if v is None:
            break
        if v < 20:
            if last == "unit" or (last == "ten" and (cur % 10 or v >= 10)):
                break
            cur, last = cur + v, "unit"
        elif v < 100:
            if last in ("unit", "ten"):
                break
            cur, last = cur + v, "ten"
        elif v == 100:
            if last not in ("", "unit", "scale") or cur % 100 >= 10:
                break
            cur, last = max(cur % 100, 1) * 100 + (cur - cur % 100), "hundred"
        else:
            if last == "scale" or (total and v >= total):
                break
            total, cur, last = total + max(cur, 1) * v, 0, "scale"
        j += 1
    return total + cur, j


def _words_to_digits(toks: list[str]) -> tuple[list[str], list[str]]:
    """(`toks` with every run of number words replaced by its value in digits, the words each
    token stands for: what a reject's `match` shows)."""
    out: list[str] = []
    shown: list[str] = []
    i = 0
    while i < len(toks):
        if toks[i] in _NUMBER_WORDS:
            value, end = _number_run(toks, i)
            out.append(str(value))
            shown.append(" ".join(toks[i:end]))
            i = end
        else:
            out.append(toks[i])
            shown.append(toks[i])
            i += 1
    return out, shown


def normalize_tokens(text: str) -> list[str]:
    """Lowercased runs of letters/digits; `\\n`, `\\t`, `\\r` escapes count as whitespace
    and `\\uXXXX` / `\\xXX` escapes as their characters (`decode_char_escapes`); Unicode
    disguises folded (`_fold`)."""
    if "\\" in text:
        text = decode_char_escapes(text)
    return _WORD.findall(_ESCAPE.sub(" ", _fold(text).lower()))


def _token_hash(tok: str) -> int:
    h = _TOKEN_CACHE.get(tok)
    if h is None:
        if len(_TOKEN_CACHE) >= _TOKEN_CACHE_MAX:
            _TOKEN_CACHE.clear()
        digest = hashlib.blake2b(tok.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        h = _TOKEN_CACHE[tok] = int.from_bytes(digest, "little")
    return h


def token_ids(tokens: list[str]) -> np.ndarray:
    return np.fromiter(map(_token_hash, tokens), dtype=np.uint64, count=len(tokens))


def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """Rolling hashes of every n consecutive token ids (empty if fewer than n)."""
    m = len(ids) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = ids[:m].copy()
    for j in range(1, n):
        h *= _MULT
        h += ids[j : j + m]
    return h


def uninformative_windows(tokens: list[str], n: int) -> np.ndarray:
    """Per window of `n` consecutive tokens: True when it is nothing but numbers (or single
    characters of `0-9a-z`, ranked in that order) that could have come from anywhere — at most
    3 distinct values ("0 0 0 …", "1 0 0 1 …") or a run that only ever moves by one step size
    ("1 2 3 … 13", "10 11 … 22", "0 5 10 …", the staircase "0 0 0 1 1 1 1 2 2 2 2 3 3", the
    hex digits "0 1 2 … 9 a b c"). Probe n-grams like these are never matched: HumanEval's
    tests hold thirteen zeros in a row, which dropped 82 of 7,867 C headers and numpy files
    (session 17) as "contaminated"; the probes keep their other n-grams, so a document that
    copies an item is still caught. "3 1 4 1 5 9 2 6 …" (a test's own data) stays a probe."""
    m = len(tokens) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=bool)
    num = np.fromiter((t.isdigit() for t in tokens), dtype=bool, count=len(tokens))
    char = np.fromiter((t in _RANK for t in tokens), dtype=bool, count=len(tokens))
    nums, chars = (np.concatenate(([0], np.cumsum(x))) for x in (num, char))
    all_num = nums[n : n + m] - nums[:m] == n
    all_char = chars[n : n + m] - chars[:m] == n
    out = np.zeros(m, dtype=bool)
    for i in np.flatnonzero(all_num | all_char):
        window = tokens[i : i + n]
        vals = [int(t) for t in window] if all_num[i] else [_RANK[t] for t in window]
        steps = {b - a for a, b in zip(vals, vals[1:], strict=False)}
        out[i] = len(set(vals)) <= 3 or len(steps - {0}) <= 1
    return out


_RANK = {c: i for i, c in enumerate("0123456789abcdefghijklmnopqrstuvwxyz")}


# ---------------------------------------------------------------------------------------------
# Code skeletons: code with its names numbered, for copies whose identifiers were renamed
# ---------------------------------------------------------------------------------------------

# One skeleton token: a name or number (not a string prefix), a string literal (optional prefix;
# triple-quoted ones may span lines), a comment (dropped) or one other non-space character.
# Names first and possessive: the most frequent token, matched without backtracking.
_SKEL_TOKEN = re.compile(
    r"""\w++(?!['"])|[rbuf]{0,2}(?:"{3}[\s\S]*?"{3}|'{3}[\s\S]*?'{3}|"(?:[^"\\\n]|\\.)*"|"""
    r"""'(?:[^'\\\n]|\\.)*')|#[^\n]*|\S"""
)
# Keywords that open a unit: names are numbered afresh from each, in probe and document alike.
_UNIT_START = frozenset(("def", "class"))
_SKEL_ESCAPE = re.compile(r"\\([ntr])")
# Names a renaming keeps: keywords and builtins (lowercase: skeletons are case-folded).
_SKEL_KEEP = frozenset(
    w.lower() for w in (*keyword.kwlist, *keyword.softkwlist, *dir(builtins)) if w.isidentifier()
)
_PLACEHOLDER, _PUNCT, _KEPT = 0, 1, 2  # kinds of skeleton tokens
_SKEL_MIN_KEPT = 3  # kept tokens a probe's skeleton window needs (`skeleton_windows`)


def code_skeleton(text: str) -> tuple[list[str], np.ndarray]:
    """(tokens, kinds): `text` as code with every name it could have chosen itself replaced by
    `<k>`, the k-th distinct such name of its unit. A unit starts at each `def` / `class`
    keyword, so a function is numbered the same wherever it sits: at the top of a file, as a
    method, after a `>>> ` prompt or a URL's `code=`; Python allows these keywords nowhere else.
    Kept as they are: keywords, builtins, the attribute after a `.`, numbers, string literals
    (as their normalised words) and punctuation; comments are dropped, whitespace ignored, text
    case-folded. A copy whose function, parameter and local names were consistently renamed
    has the same skeleton; `kinds` marks each token placeholder / punctuation / kept."""
    if "\\" in text:
        text = _SKEL_ESCAPE.sub(_unescape, text)
    text = _fold(text).lower()
    toks: list[str] = []
    kinds: list[int] = []
    names: dict[str, str] = {}
    after_dot = False
    for tok in _SKEL_TOKEN.findall(text):
        c = tok[0]
        if c == "#":
            continue
        if len(tok) > 1 and tok[-1] in "'\"":  # a string literal, whitespace normalised
            toks.append('"' + " ".join(tok.lstrip("rbuf").strip("'\"").split()) + '"')
            kinds.append(_KEPT)
        elif c.isalpha() or c == "_":
            if after_dot or tok in _SKEL_KEEP:
                if tok in _UNIT_START:  # even after a `.`: a sentence's full stop before `def`
                    names = {}
                toks.append(tok)
                kinds.append(_KEPT)
            else:
                ph = names.get(tok)
                if ph is None:
                    ph = names[tok] = f"<{len(names)}>"
                toks.append(ph)
                kinds.append(_PLACEHOLDER)
        elif c.isdigit():
            toks.append(tok)
            kinds.append(_KEPT)
        else:
            toks.append(tok)
            kinds.append(_PUNCT)
        after_dot = tok == "."
    return toks, np.array(kinds, dtype=np.int8)


def _unescape(m: re.Match[str]) -> str:
    """`\\n` as a line break (so code quoted as a string literal still opens its units), `\\t`
    and `\\r` as a space."""
    return "\n" if m.group(1) == "n" else " "


# Probe origins without skeleton n-grams: a FIM probe is a 600-character window of a held-out
# stdlib file cut at any line, not an evaluated function; the FIM suite needs copies of those
# lines caught, which the word look does. Its skeletons match sibling modules that share
# structure under other names: at 20 tokens, before the window rule, 107 of the ingestable stdlib
# files and 30 numpy / C files (the word look: 87 and 1; session 18); at 30, none more.
_NO_SKELETON_ORIGINS = frozenset({"suite:fim"})


# A Python function definition: `def name(` (a leading `\b` would cost C headers 20 times as
# much: it turns off the regex engine's scan for the literal "def"; `_defines_function` checks
# the character before instead, so C's `#ifdef X` / `#undef X` do not count).
_DEF = re.compile(r"def[ \t]+\w+[ \t]*\(")


def looks_like_code(text: str) -> bool:
    """The cheap hint that gates skeleton n-grams, for probes and documents alike: a Python
    `def name(`. Probe skeletons are of Python functions; prose and C pay a substring test and
    a literal-prefixed regex scan (0.02 s for 3,000 C headers, 34 MB, which nearly all hold
    `def ` in `#ifdef`; session 18)."""
    return "def " in text and any(_defines_function(text, m.start()) for m in _DEF.finditer(text))


def _defines_function(text: str, i: int) -> bool:
    """Whether the `def` at `i` is a word of its own (not the end of `ifdef`, `undef`)."""
    return i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")


def skeleton_windows(kinds: np.ndarray, n: int) -> np.ndarray:
    """Per window of `n` skeleton tokens: True when it can stand for the code it came from — it
    holds a name (a window without one is not changed by renaming, the word look judges it, and
    is often a run of numbers and commas from a test, "[0, 0, 0, ...]", that could come from
    anywhere) and at least `_SKEL_MIN_KEPT` kept tokens (keywords, builtins, attributes,
    literals), so names and punctuation alone, such as a long parameter list "def <0> ( <1> ,
    <2> , ...", are no probe. Measured at 30 tokens (session 18): 3 kept tokens cost no recall
    (226 of 292 renamed held-out functions either way), `n // 4` cost 21."""
    m = len(kinds) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=bool)
    ph = np.concatenate(([0], np.cumsum(kinds == _PLACEHOLDER)))
    kept = np.concatenate(([0], np.cumsum(kinds == _KEPT)))
    return (ph[n : n + m] - ph[:m] >= 1) & (kept[n : n + m] - kept[:m] >= _SKEL_MIN_KEPT)


@dataclass(frozen=True)
class Probe:
    """One probe text: `id` of the evaluation item, `origin` ("problems:<split>" or
    "file:<name>")."""

    id: str
    origin: str
    text: str


@dataclass(frozen=True)
class Match:
    probe: str
    origin: str
    ngram: str  # the matching normalised tokens, space-joined
    tokens: int


# ---------------------------------------------------------------------------------------------
# Probe sources
# ---------------------------------------------------------------------------------------------

_PROBLEM_CACHE: dict[tuple[Any, ...], list[dict[str, Any]]] = {}


def _part_records(args: tuple[list[int], int, str, str]) -> list[dict[str, Any]]:
    import hillclimb.problems as P

    seeds, n_per_tier, family, split = args
    return P.contamination_probes(
        seeds=seeds, n_per_tier=n_per_tier, families=[family], splits=(split,)
    )


def problem_probe_records(
    seeds: list[int], n_per_tier: int, families: list[str], workers: int = 1
) -> list[dict[str, Any]]:
    """`hillclimb.problems.contamination_probes(...)`, memoised per process.

    With `workers > 1` it is computed as one job per (family, split) in a process pool — code
    families, the slow ones, first — and the parts are concatenated in (family, split) order,
    which is the single call's own loop order, so the records are identical."""
    if not seeds or n_per_tier <= 0:
        return []
    key = (tuple(seeds), n_per_tier, tuple(families))
    if key not in _PROBLEM_CACHE:
        import inspect

        import hillclimb.problems as P

        unknown = sorted(set(families) - set(P.FAMILIES))
        if unknown:
            raise ConfigError(
                f"[data.decontaminate] unknown problems_families {unknown}; "
                f"known: {sorted(P.FAMILIES)}"
            )
        fams = list(families) or list(P.FAMILIES)
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            splits = inspect.signature(P.contamination_probes).parameters["splits"].default
            parts = [(f, s) for f in fams for s in splits]
            order = sorted(parts, key=lambda fs: P.FAMILIES[fs[0]] != "code")
            jobs = [(list(seeds), n_per_tier, f, s) for f, s in order]
            with ProcessPoolExecutor(min(workers, len(jobs))) as ex:
                done = dict(zip(order, ex.map(_part_records, jobs), strict=True))
            _PROBLEM_CACHE[key] = [r for fs in parts for r in done[fs]]
        else:
            _PROBLEM_CACHE[key] = P.contamination_probes(
                seeds=list(seeds), n_per_tier=n_per_tier, families=fams
            )
    return _PROBLEM_CACHE[key]


def _bad_file(path: str, why: str) -> ConfigError:
    return ConfigError(f"[data.decontaminate] eval file {path}: {why}")


def file_probes(path: str, text_fields: list[str]) -> tuple[list[Probe], dict[str, Any]]:
    """Probes of one JSONL(.gz) eval file: each line a JSON string, a list of strings, or an
    object whose `text_fields` hold a string or a list of strings (its `id`, if any, names it).
    Anything else is an error: a silently empty eval set would let contamination through."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        gz = p.name.lower().endswith(".gz") or raw[:2] == b"\x1f\x8b"  # `sources.is_gzip`
        data = gzip.decompress(raw) if gz else raw
        text = data.decode("utf-8-sig")  # a BOM (Windows tools) is no part of line 1's JSON
    except OSError as exc:
        raise _bad_file(path, f"cannot read it ({exc.strerror or exc})") from None
    except (EOFError, gzip.BadGzipFile) as exc:
        raise _bad_file(path, f"not valid gzip ({exc})") from None
    except UnicodeDecodeError:
        raise _bad_file(path, "not UTF-8") from None
    probes: list[Probe] = []
    origin = f"file:{p.name}"
    # JSON lines end at "\n" (and "\r\n"); `str.splitlines` would also split a string holding a
    # raw U+2028 / U+0085, which JSON allows
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise _bad_file(path, f"line {lineno} is not JSON") from None
        texts: list[str] = []
        ident = f"{p.name}:{lineno}"
        if isinstance(obj, str):
            texts = [obj]
        elif isinstance(obj, list) and all(isinstance(t, str) for t in obj):
            texts = list(obj)
        elif isinstance(obj, dict):
            if isinstance(obj.get("id"), (str, int)) and not isinstance(obj.get("id"), bool):
                ident = f"{p.name}:{obj['id']}"
            for f in text_fields:
                v = obj.get(f)
                if isinstance(v, str):
                    texts.append(v)
                elif isinstance(v, list) and all(isinstance(t, str) for t in v):
                    texts.extend(v)
            if not texts:
                raise _bad_file(
                    path, f"line {lineno} has none of the text fields {text_fields} as a string "
                    "or list of strings (set [data.decontaminate] text_fields)",
                )  # fmt: skip
        else:
            raise _bad_file(
                path, f"line {lineno} is neither a string, a list of strings nor an object"
            )
        probes += [Probe(ident, origin, t) for t in texts]
    if not probes:
        raise _bad_file(path, "holds no probe texts")
    info = {"path": str(path), "sha256": hashlib.sha256(raw).hexdigest(), "probes": len(probes)}
    return probes, info


def collect_probes(
    cfg: DecontaminateConfig, workers: int = 1
) -> tuple[list[Probe], dict[str, Any]]:
    """All probe texts of a config, in a fixed order (problems, suites, files), and what they came
    from. Eval files are read first: a bad one fails before seconds of problem generation."""
    from_files: list[Probe] = []
    files = []
    for f in cfg.files:
        fp, info = file_probes(f, cfg.text_fields)
        from_files += fp
        files.append(info)
    seeded = [s for s in cfg.suites if s in ("ifeval", "fim")]
    if seeded and not cfg.problems_seeds:
        # their items are cut per evaluation seed: no seed, no probes, and the suite's items
        # would reach the training data unlooked-for
        raise ConfigError(
            f"[data.decontaminate] suites {seeded} are probed for every seed of problems_seeds, "
            "which is empty: set problems_seeds to the evaluation seeds (problems_n_per_tier = 0 "
            "turns the problem probes off) or remove them from suites"
        )
    records = problem_probe_records(
        cfg.problems_seeds, cfg.problems_n_per_tier, cfg.problems_families, workers
    )
    probes = [Probe(r["id"], f"problems:{r['split']}", t) for r in records for t in r["texts"] if t]
    from hillclimb.eval.probes import suite_probe_records

    suite_recs = suite_probe_records(cfg.suites, cfg.problems_seeds, cfg.suite_items)
    probes += [Probe(r["id"], f"suite:{r['suite']}", t) for r in suite_recs for t in r["texts"]]
    suite_items = {s: sum(r["suite"] == s for r in suite_recs) for s in cfg.suites}
    info = {"problem_items": len(records), "suite_items": suite_items, "files": files}
    return probes + from_files, info


# ---------------------------------------------------------------------------------------------
# The index
# ---------------------------------------------------------------------------------------------


def _table(ks: list[np.ndarray], os_: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Hash arrays and their owners as one sorted table: each hash once, owned by the first probe
    that has it (a reject names the earliest probe, whatever the order of the parts)."""
    if not ks:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int32)
    keys, owners = np.concatenate(ks), np.concatenate(os_)
    order = np.lexsort((owners, keys))  # by hash, then by the first probe that owns it
    keys, owners = keys[order], owners[order]
    keep = np.ones(len(keys), dtype=bool)
    keep[1:] = keys[1:] != keys[:-1]
    return keys[keep], owners[keep]


def _skeleton_table(
    probes: list[Probe], n: int
) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    """The skeleton n-gram table of the code probes (`looks_like_code`, FIM windows excepted;
    their informative windows, `skeleton_windows`) and its counts for the card."""
    ks: list[np.ndarray] = []
    os_: list[np.ndarray] = []
    code = skipped = 0
    for i, p in enumerate(probes):
        if p.origin in _NO_SKELETON_ORIGINS or not looks_like_code(p.text):
            continue
        code += 1
        toks, kinds = code_skeleton(p.text)
        h = ngram_hashes(token_ids(toks), n)
        good = skeleton_windows(kinds, n)
        skipped += int((~good).sum())
        if good.any():
            ks.append(h[good])
            os_.append(np.full(int(good.sum()), i, dtype=np.int32))
    table = _table(ks, os_)
    stats = {
        "skeleton_ngram": n,
        "skeleton_probes": code,
        "skeleton_ngrams": len(table[0]),
        "skeleton_windows_skipped": skipped,
    }
    return table, stats


def _function_table(probes: list[Probe]) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    """The whole-function fingerprints of the code probes (the probes `_skeleton_table` takes)
    and their counts for the card."""
    ks: list[int] = []
    os_: list[int] = []
    for i, p in enumerate(probes):
        if p.origin in _NO_SKELETON_ORIGINS or not code_fingerprint.looks_like_functions(p.text):
            continue
        for h, _ in code_fingerprint.text_fingerprints(p.text):
            ks.append(h)
            os_.append(i)
    parts = ([np.array(ks, dtype=np.uint64)], [np.array(os_, dtype=np.int32)]) if ks else ([], [])
    table = _table(*parts)
    stats = {
        "function_fingerprints": len(table[0]),
        "function_min_nodes": code_fingerprint.MIN_NODES,
    }
    return table, stats


class ProbeIndex:
    """Hashed probe n-grams (length `ngram`) and whole short probes (lengths `min_tokens` ..
    `ngram - 1`), each a sorted `uint64` array with the owning probe of every hash; and the
    `skeleton_ngram`-grams of code probes' skeletons (`code_skeleton`), another such table."""

    def __init__(
        self,
        ngram: int,
        min_tokens: int,
        tables: dict[int, tuple[np.ndarray, np.ndarray]],
        labels: list[tuple[str, str]],
        stats: dict[str, Any],
        skeleton: tuple[np.ndarray, np.ndarray] | None = None,
        skeleton_ngram: int = SKELETON_NGRAM,
        functions: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self.ngram = ngram
        self.min_tokens = min_tokens
        self.tables = tables
        empty = (np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int32))
        self.skeleton = skeleton if skeleton is not None else empty
        self.skeleton_ngram = skeleton_ngram
        self.functions = functions if functions is not None else empty
        self.labels = labels  # probe index -> (id, origin)
        # canonical key order, so a fresh index and one reloaded from disk give the same card
        self.stats: dict[str, Any] = json.loads(json.dumps(stats, sort_keys=True))
        self._lengths = sorted(tables)
        self.item_ids = frozenset(pid for pid, origin in labels if origin.startswith("problems:"))
        self.origin_of = {pid: origin for pid, origin in reversed(labels)}

    @classmethod
    def build(
        cls,
        probes: list[Probe],
        ngram: int,
        min_tokens: int,
        info: dict[str, Any] | None = None,
        skeleton_ngram: int = SKELETON_NGRAM,
    ) -> ProbeIndex:
        parts: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        too_short = whole = skipped = uninformative = 0
        by_origin: Counter[str] = Counter()
        for i, p in enumerate(probes):
            by_origin[p.origin] += 1
            toks = normalize_tokens(p.text)
            ids = token_ids(toks)
            if len(ids) < min_tokens:
                too_short += 1
                continue
            length = min(len(ids), ngram)
            h = ngram_hashes(ids, length)
            vague = uninformative_windows(toks, length)
            if vague.any():
                skipped += int(vague.sum())
                h = h[~vague]
                if not len(h):
                    uninformative += 1
                    continue
            if length < ngram:
                whole += 1
            ks, os_ = parts.setdefault(length, ([], []))
            ks.append(h)
            os_.append(np.full(len(h), i, dtype=np.int32))
        tables = {length: _table(ks, os_) for length, (ks, os_) in sorted(parts.items())}
        skeleton, skel_stats = _skeleton_table(probes, skeleton_ngram)
        functions, fn_stats = _function_table(probes)
        stats = {
            "probes": len(probes),
            "too_short": too_short,
            "whole_text_probes": whole,
            "uninformative_ngrams_skipped": skipped,
            "uninformative_probes": uninformative,
            "ngrams": int(sum(len(k) for k, _ in tables.values())),
            "by_origin": dict(sorted(by_origin.items())),
            **skel_stats,
            **fn_stats,
            **(info or {}),
        }
        labels = [(p.id, p.origin) for p in probes]
        return cls(ngram, min_tokens, tables, labels, stats, skeleton, skeleton_ngram, functions)

    # ---- persistence (the work directory's cache) ------------------------------------------
    def save(self, path: Path) -> None:
        head = {
            "format": INDEX_FORMAT,
            "ngram": self.ngram,
            "min_tokens": self.min_tokens,
            "skeleton_ngram": self.skeleton_ngram,
            "labels": self.labels,
            "stats": self.stats,
        }
        arrays: dict[str, np.ndarray] = {
            "head": np.frombuffer(json.dumps(head, sort_keys=True).encode(), dtype=np.uint8)
        }
        for length, (keys, owners) in self.tables.items():
            arrays[f"keys{length}"], arrays[f"owners{length}"] = keys, owners
        arrays["skeleton_keys"], arrays["skeleton_owners"] = self.skeleton
        arrays["function_keys"], arrays["function_owners"] = self.functions
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> ProbeIndex:
        try:
            with np.load(path, allow_pickle=False) as z:
                head = json.loads(bytes(z["head"]))
                if head.get("format") != INDEX_FORMAT:
                    raise HillclimbError(
                        f"probe index {path} has an unknown format; rerun with --force"
                    )
                tables = {
                    int(k[4:]): (z[k], z[f"owners{k[4:]}"]) for k in z.files if k.startswith("keys")
                }
                skeleton = (z["skeleton_keys"], z["skeleton_owners"])
                functions = (z["function_keys"], z["function_owners"])
        except (OSError, ValueError, KeyError) as exc:
            raise HillclimbError(f"corrupt probe index {path}: {exc}; rerun with --force") from exc
        labels = [(a, b) for a, b in head["labels"]]
        return cls(
            head["ngram"],
            head["min_tokens"],
            tables,
            labels,
            head["stats"],
            skeleton,
            head["skeleton_ngram"],
            functions,
        )

    # ---- matching -------------------------------------------------------------------------
    def match(self, text: str) -> Match | None:
        """The longest-length, first-position probe match in `text`, or None if clean; when
        none, the same with its numbers written as words read as digits (`_words_to_digits`)."""
        if not self._lengths:
            return None
        toks = normalize_tokens(text)
        m = self._match_tokens(toks, toks)
        if m is None and not _NUMBER_WORDS.keys().isdisjoint(toks):
            m = self._match_number_words(toks)
        return m

    def _match_number_words(self, toks: list[str]) -> Match | None:
        """`match` with number words read as digits, on the windows that hold one: the other
        windows were judged already (a second pass over the whole document cost 35% more on
        the stdlib, where half the modules say "one" somewhere)."""
        digits, shown = _words_to_digits(toks)
        n = self.ngram
        spans: list[list[int]] = []
        for j, (d, w) in enumerate(zip(digits, shown, strict=True)):
            if d == w:
                continue
            a, b = max(0, j - n + 1), min(len(digits), j + n)
            if spans and a <= spans[-1][1]:
                spans[-1][1] = b
            else:
                spans.append([a, b])
        for a, b in spans:
            m = self._match_tokens(digits[a:b], shown[a:b])
            if m is not None:
                return m
        return None

    def _match_tokens(self, toks: list[str], shown: list[str]) -> Match | None:
        """`match` on normalised tokens; `shown[i]` is what token `i` stands for in the text."""
        if len(toks) < self._lengths[0]:
            return None
        ids = token_ids(toks)
        best: tuple[int, int, int] | None = None  # (length, position, probe)
        h = ngram_hashes(ids, self._lengths[0])
        length = self._lengths[0]
        while True:
            table = self.tables.get(length)
            if table is not None and len(h):
                keys, owners = table
                pos = np.searchsorted(keys, h)
                pos[pos == len(keys)] = 0
                hit = np.flatnonzero(keys[pos] == h)
                if len(hit):
                    i = int(hit[0])
                    best = (length, i, int(owners[pos[i]]))
            if length >= self.ngram or len(h) <= 1:
                break
            # extend every (length)-gram by the next token: (length + 1)-grams
            h = h[:-1] * _MULT + ids[length:]
            length += 1
        if best is None:
            return None
        length, i, owner = best
        pid, origin = self.labels[owner]
        return Match(pid, origin, " ".join(shown[i : i + length]), length)

    def match_skeleton(self, text: str) -> Match | None:
        """The first skeleton n-gram of `text` (`code_skeleton`) that a code probe has, or None:
        the probe's code with its names renamed. `Match.ngram` is the skeleton, names as `<k>`."""
        keys, owners = self.skeleton
        n = self.skeleton_ngram
        if not len(keys):
            return None
        toks, _ = code_skeleton(text)
        h = ngram_hashes(token_ids(toks), n)
        if not len(h):
            return None
        pos = np.searchsorted(keys, h)
        pos[pos == len(keys)] = 0
        hit = np.flatnonzero(keys[pos] == h)
        if not len(hit):
            return None
        i = int(hit[0])
        pid, origin = self.labels[int(owners[pos[i]])]
        return Match(pid, origin, "skeleton: " + " ".join(toks[i : i + n]), n)

    def match_functions(self, text: str) -> Match | None:
        """The first function of `text` whose canonical form a code probe has
        (`code_fingerprint.text_fingerprints`), or None. `Match.ngram` is that form (its first
        300 characters)."""
        keys, owners = self.functions
        if not len(keys):
            return None
        for h, form in code_fingerprint.text_fingerprints(text):
            pos = int(np.searchsorted(keys, np.uint64(h)))
            if pos < len(keys) and int(keys[pos]) == h:
                pid, origin = self.labels[int(owners[pos])]
                # the form's start: a long function's whole form would bloat the rejects file
                return Match(pid, origin, "function: " + form[:300], 0)
        return None


# Line comments (`# ...`, `// ...`) that start a line or follow whitespace: the second look at a
# document (`Decontaminator.check`) reads it without them.
_LINE_COMMENT = re.compile(r"(?m)(?:^|(?<=\s))(?:#|//)[^\n]*")


# Evaluation code as a web page shows it: entities for < > & " ', <br> for newlines, syntax
# highlighting in <span>s. A document with such markup gets a look with the tags of these names
# removed and the entities decoded (`html_to_text`).
_HTML_TAGS = (
    "a|abbr|b|big|blockquote|body|br|button|caption|code|col|dd|del|details|div|dl|dt|em|font|"
    "h[1-6]|head|hr|html|i|img|ins|kbd|label|li|mark|ol|p|pre|q|s|samp|section|small|span|"
    "strong|sub|summary|sup|table|tbody|td|tfoot|th|thead|tr|tt|u|ul|var"
)
_HTML_TAG = re.compile(rf"</?(?:{_HTML_TAGS})\b[^<>]{{0,500}}>", re.IGNORECASE)
_HTML_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_HTML_HINT = re.compile(
    rf"&(?:lt|gt|amp|quot|apos|nbsp|#\d+|#x[0-9a-f]+);|{_HTML_TAG.pattern}", re.IGNORECASE
)


def html_to_text(text: str) -> str:
    """`text` with HTML tags of common element names replaced by spaces, then character
    references decoded (`&lt;` -> `<`; only complete ones, `&name;` with its semicolon, so C's
    `&notify` stays as it is)."""
    text = _HTML_TAG.sub(" ", text)
    return _HTML_ENTITY.sub(_entity, text)


def _entity(m: re.Match[str]) -> str:
    ref = m.group(0)
    # a named reference only when the whole name is one (`&notify;` is not `&not;` + "ify;")
    known = ref[1] == "#" or ref[1:] in html.entities.html5
    return html.unescape(ref) if known else ref


# URL-encoded text (`urllib.parse.quote` / `quote_plus`, a query string): two percent-escapes in
# one run without whitespace ("jar%2C+and+7+loose+books.+How+many+books+does+he+have%3F"). A
# document with one gets a look percent-decoded; prose, with its spaces, has none.
_PERCENT_HINT = re.compile(r"%[0-9A-Fa-f]{2}[^\s%]{0,200}%[0-9A-Fa-f]{2}")


def percent_decode(text: str) -> str:
    """`text` with `%XX` escapes decoded (as UTF-8) and `+` read as a space, as a URL query
    carries text. Words are separated by any non-letter, so a literal `+` read as a space
    changes no word of the word look."""
    return urllib.parse.unquote_plus(text)


# Character escapes of a JSON or Python string: `json.dumps` (ensure_ascii, its default) and
# `ascii()` write "6 × 2" as "6 \\u00d7 2", so the escape read as a word ("u00d7") and every
# n-gram across it differed: a held-out text with any non-ASCII character, JSON-dumped into a
# document or an SFT record's tool-call arguments, got through (52 of 1,204 texts, session 21).
# `normalize_tokens` decodes them, in probes and documents alike (as a view of its own it
# doubled the cost of the 298 of 1,786 stdlib modules that hold such an escape).
_CHAR_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2})")


def decode_char_escapes(text: str) -> str:
    """`text` with `\\uXXXX`, `\\UXXXXXXXX` and `\\xXX` escapes read as their characters (a
    surrogate half, or a number beyond Unicode, as a space: neither is part of a word)."""
    return _CHAR_ESCAPE.sub(_char, text)


def _char(m: re.Match[str]) -> str:
    code = int(m.group(0)[2:], 16)
    return " " if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF else chr(code)


# A listing with line numbers, as a code viewer, a PDF or a book prints it ("  1  def f(x):",
# "2: ...", "3 | ..."): the numbers cut every run of words; held-out texts so printed were caught
# 58% of the time (session 21). Three lines numbered n, n+1, n+2 are the hint.
_LINE_NUMBER = re.compile(r"(?m)^[ \t]*(\d{1,6})(?:[.:|)\]][ \t]?|[ \t]|$)")


def numbered_listing(text: str) -> bool:
    """Whether `text` has three lines in a row numbered n, n+1, n+2 (`_LINE_NUMBER`)."""
    streak, prev, prev_end = 0, -2, -2
    for m in _LINE_NUMBER.finditer(text):
        value = int(m.group(1))
        adjacent = value == prev + 1 and text.count("\n", prev_end, m.start()) == 1
        streak = streak + 1 if adjacent else 1
        if streak >= 3:
            return True
        prev, prev_end = value, m.end()
    return False


def strip_line_numbers(text: str) -> str:
    """`text` without the number (and its separator) that starts each numbered line."""
    return _LINE_NUMBER.sub("", text)


# A word hyphenated at a line break, as text wrapped for print (and a PDF's extracted text)
# carries it: "equal-\nly" is two words where the probe has one.
_HYPHEN_BREAK = re.compile(r"(?<=[^\W\d_])-[ \t]*\r?\n[ \t]*(?=[^\W\d_])")


def join_hyphenated(text: str) -> str:
    """`text` with words hyphenated across a line break joined again ("equal-\\nly" -> "equally")."""
    return _HYPHEN_BREAK.sub("", text)


# A JSON document (an object or an array) opens with `{` or `[` after optional whitespace.
_JSON_START = re.compile(r"\s*[{\[]")


def json_strings(text: str) -> str | None:
    """The strings of `text` read as a JSON document, one after another, or None when it is not
    one. A list of lines (a Jupyter notebook's cell `source`, each line ending in `\\n`) is
    joined as the code it holds: inside the JSON its lines are string literals, so the code
    skeleton of a notebook whose names were renamed read as quotes and commas (held-out
    texts renamed and stored as a notebook's code cell: 440 of 635 caught before this view,
    565 after, session 21 — the rest are functions too short for a skeleton n-gram)."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, (dict, list)):
        return None
    parts: list[str] = []
    stack: list[Any] = [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            parts.append(v)
        elif isinstance(v, dict):
            stack.extend(reversed(list(v.values())))
        elif isinstance(v, list):
            if v and all(isinstance(x, str) for x in v) and all(x.endswith("\n") for x in v[:-1]):
                parts.append("".join(v))
            else:
                stack.extend(reversed(v))
    return "\n".join(parts)


def strip_line_comments(text: str) -> str:
    """`text` without `#` / `//` line comments, so evaluation code annotated line by line ("x = 1
    # set x") is still one run of words. A URL's `//` follows `:`, not whitespace, and stays."""
    return _LINE_COMMENT.sub("", text)


class Decontaminator:
    """Judges documents against a `ProbeIndex` (one per filter worker).

    Documents of a `generators` source are our own training problems, split from the evaluation
    items by problem key (problems/base.py). One is contaminated when it *is* an evaluation item
    (its `problem_id` is a probe's id: the split leaked). Its n-gram overlaps with probes are
    expected — sibling problems share template sentences and sub-steps ("... for 4 hours then at
    35 miles per hour for 3 hours ...") — so by default they are kept and counted
    (`generator_overlaps = "keep"`), not dropped."""

    name = FILTER_NAME

    def __init__(self, index: ProbeIndex, cfg: DecontaminateConfig, generator_sources: set[str]):
        self.index = index
        self.drop_generator_overlaps = cfg.generator_overlaps == "drop"
        self.generator_sources = frozenset(generator_sources)

    def check(self, text: str, source: str, problem_id: str | None) -> tuple[str, Match | None]:
        """("drop" | "overlap" | "clean", the match)."""
        generated = source in self.generator_sources
        if generated and problem_id is not None and problem_id in self.index.item_ids:
            origin = self.index.origin_of[problem_id]
            return "drop", Match(problem_id, origin, f"the evaluation item itself ({origin})", 0)
        m = None
        views = self._views(text)
        for view in views:
            m = self._look(view)
            if m is not None:
                break
        else:
            # renamed identifiers: code probes' skeletons, only where a `def ` hints at code
            for view in views:
                if looks_like_code(view):
                    m = self.index.match_skeleton(view)
                    if m is not None:
                        break
            else:
                # short functions with hints, names, docstrings or layout changed
                for view in views:
                    if code_fingerprint.looks_like_functions(view):
                        m = self.index.match_functions(view)
                        if m is not None:
                            break
        if m is None:
            return "clean", None
        if generated and not self.drop_generator_overlaps:
            return "overlap", m
        return "drop", m

    @staticmethod
    def _views(text: str) -> list[str]:
        """`text`, and as it reads decoded when it carries hints of an encoding: markup read as
        text (HTML-escaped held-out code was caught 1,360 of 2,877 times before, session 17),
        percent-escapes decoded (URL-encoded: 0 of 2,877, session 18), a JSON document's strings (a notebook's code cells), line numbers of
        a printed listing removed and words hyphenated at line breaks joined (session 21).
        Ordinary documents have none of the hints and pay nothing; a decoded view only ever
        adds matches."""
        views = [text]
        if ("&" in text or "<" in text) and _HTML_HINT.search(text):
            views.append(html_to_text(text))
        if "%" in text and _PERCENT_HINT.search(text):
            views.append(percent_decode(text))
        if _JSON_START.match(text) and (decoded := json_strings(text)) is not None:
            views.append(decoded)
        if numbered_listing(text):
            views.append(strip_line_numbers(text))
        if ("-\n" in text or "-\r\n" in text) and _HYPHEN_BREAK.search(text):
            views.append(join_hyphenated(text))
        return views

    def _look(self, text: str) -> Match | None:
        """The index's match in `text`, else in `text` without line comments: a probe annotated
        after every line was a different run of words and got through half the time (measured,
        session 16). The second look only ever adds matches."""
        m = self.index.match(text)
        if m is None and ("#" in text or "//" in text):
            stripped = strip_line_comments(text)
            if stripped != text:
                m = self.index.match(stripped)
        return m


def build_index(cfg: DecontaminateConfig, workers: int = 1) -> ProbeIndex:
    """The probe index of a config (`workers` processes generate the problem probes)."""
    probes, info = collect_probes(cfg, workers)
    return ProbeIndex.build(probes, cfg.ngram, cfg.min_tokens, info)


def coverage_gap(
    cfg: DecontaminateConfig,
    seed: int,
    n_per_tier: int,
    families: list[str] | None,
    suites: list[str] = (),  # type: ignore[assignment]
    suite_limit: int = 0,
) -> str | None:
    """Why the probes of `cfg` would miss items of an evaluation — its problem suite
    (`problem_suite(seed, split, n_per_tier, families)`) and the standard `suites` run with
    `suite_limit` items (0: each suite's default) — or None when they cover it (or
    decontamination is off, which is then the recipe's explicit choice). Suites are prefixes of
    longer ones, so `problems_n_per_tier >= n_per_tier` covers every split's items."""
    if not cfg.enabled:
        return None
    w = "[data.decontaminate]"
    if seed not in cfg.problems_seeds:
        return f"{w} problems_seeds {cfg.problems_seeds} lacks the evaluation seed {seed}"
    if n_per_tier > cfg.problems_n_per_tier:
        return (
            f"{w} problems_n_per_tier {cfg.problems_n_per_tier} is below the evaluation's "
            f"n_per_tier {n_per_tier}"
        )
    if cfg.problems_families:
        import hillclimb.problems as P

        missing = sorted(set(families or P.FAMILIES) - set(cfg.problems_families))
        if missing:
            return f"{w} problems_families lacks the evaluated families {missing}"
    from hillclimb.eval.probes import SUITE_PROBES, default_items

    for s in suites:
        if s in SUITE_PROBES and s not in cfg.suites:
            return f"{w} suites {cfg.suites} lacks the evaluated suite {s!r}"
    dflt = default_items()
    if "ifeval" in suites and (suite_limit or dflt["ifeval"]) > cfg.suite_items:
        return (
            f"{w} suite_items {cfg.suite_items} is below the ifeval suite's "
            f"{suite_limit or dflt['ifeval']} items"
        )
    # held-out code_function items: the completion suite's `limit` per tier, the FIM suite's
    # test items (candidates: 4 x max(1, limit // 10) per tier)
    code_n = 0
    if "completion" in suites:
        code_n = suite_limit or dflt["completion"]
    if "fim" in suites:
        per_tier = max(1, suite_limit // 10) if suite_limit else dflt["fim_test_per_tier"]
        code_n = max(code_n, 4 * per_tier)
    if code_n:
        if code_n > cfg.problems_n_per_tier:
            return (
                f"{w} problems_n_per_tier {cfg.problems_n_per_tier} is below the "
                f"{code_n} held-out code_function items per tier that the completion/fim "
                "suites evaluate"
            )
        if cfg.problems_families and "code_function" not in cfg.problems_families:
            return f"{w} problems_families lacks code_function, which the completion/fim suites use"
    return None
