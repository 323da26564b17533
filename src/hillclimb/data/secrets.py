"""Secret and PII redaction: e-mails, API keys/tokens, private key blocks, passwords in code.

Why redact in place instead of dropping: a file with one leaked key is otherwise good code, and
dropping would bias the corpus against exactly the configuration-heavy code an IDE assistant must
read. Every match is replaced by a typed placeholder (`<EMAIL>`, `<KEY>`, `<PRIVATE_KEY>`,
`<PASSWORD>`, as BigCode's StarCoder PII pipeline does), so the model learns the shape of the code
without the value, and each kind is counted in the data card.

Detection is precise patterns for issuers with fixed formats (AWS, GitHub, Slack, Google,
OpenAI-style, Stripe, JWTs) plus an entropy test for generic `*key|secret|token = "..."`
assignments, because English words and identifiers assigned to such names (`token = "NAME"`) are
common in code and must not be redacted.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from hillclimb.data.config import SecretsConfig

EMAIL = "<EMAIL>"
KEY = "<KEY>"
PRIVATE_KEY = "<PRIVATE_KEY>"
PASSWORD = "<PASSWORD>"

_EMAIL_RE = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24})\b"
)
# The block stops at the next BEGIN line (a key holds none): with a plain `.*?` every header
# whose END never comes scanned to the end of the text, quadratic in the number of such headers
# (4,000 in 144 KB: 6.8 s); those are left to `_OPEN_PRIVATE_KEY_RE` below.
_PRIVATE_KEY_RE = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY((?: BLOCK)?)-----"
    r"(?:(?!-----BEGIN ).)*?-----END \1PRIVATE KEY\2-----",
    re.S,
)
# A BEGIN line whose END never comes (a key pasted in part, a file cut short, a reject's text cut
# at `rejects_text_chars`): the block above does not match, so the key body would stay. This one
# takes the BEGIN line and the key lines after it: base64 runs (8+ characters or `=`-padded),
# RFC 1421 headers (`Proc-Type: ...`) and blank lines, over real or JSON-escaped (`\n`) newlines.
_OPEN_PRIVATE_KEY_RE = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:(?:\r?\n|(?:\\r)?\\n)[ \t]*"
    r"(?:[A-Za-z0-9+/]{8,}={0,2}|[A-Za-z0-9+/]*={1,2}|[A-Za-z][A-Za-z-]*: [^\r\n\\]*)?)*"
)
# (kind, cheap substring that must be present, pattern): the substring test skips the regex
# scan on the vast majority of files, which contain no token of that issuer at all.
_TOKEN_RES: list[tuple[str, tuple[str, ...], re.Pattern[str]]] = [
    (
        "aws_access_key",
        ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA"),
        re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b"),
    ),
    ("github_token", ("gh",), re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b")),
    ("github_token", ("github_pat_",), re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b")),
    ("slack_token", ("xox",), re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,200}\b")),
    (
        "slack_webhook",
        ("hooks.slack.com",),
        re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,}"),
    ),
    ("google_api_key", ("AIza",), re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("openai_key", ("sk-",), re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b")),
    ("stripe_key", ("_live_",), re.compile(r"\b[rs]k_live_[A-Za-z0-9]{20,}\b")),
    (
        "jwt",
        ("eyJ",),
        re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b"),
    ),
]
# `aws_secret_access_key = "..."`, `API_KEY: '...'`, `"client_secret": "..."` (value quoted).
# The pattern starts at the keyword (no leading `[\w]*`, which would make the scan quadratic);
# only the value is replaced. The name's tail after the keyword is bounded and possessive
# (`[\w-]{0,64}+`, in every pattern here): unbounded, each keyword inside a long name
# (`_token_token...`, 30 KB) ran to the name's end again, 5.5 s per 30 KB and hours per MiB.
_KEY_WORDS = ("key", "secret", "token")
_ASSIGN_RE = re.compile(
    r"""(?ix)
    (?:api[_-]?key|secret|token|access[_-]?key|auth[_-]?key|private[_-]?key)[\w-]{0,64}+
    (?P<sep>["']?\s*(?::=|=>|[:=])\s*)
    (?P<q>["'])(?P<val>[^"'\s]{12,200})(?P=q)
    """
)
# The same names assigned without quotes, as config lines are (`export AWS_SECRET_ACCESS_KEY=...`
# in a shell script, `ENV ...=...` in a Dockerfile, `api_token: ...` in YAML): the value must be
# the rest of the line (a trailing `#` comment allowed) and made of key characters only - no
# dots, brackets or quotes, so code (`secret = self.settings.key`, `token = f(x)`) never matches
# - and the name must start a word (`LayoutLMv3TokenizerFast = ...` is code). Measured: 0 hits
# besides real-looking keys on 50,962 source/config files (stdlib, site-packages, /usr/include,
# /usr/share), 3 without the word-start rule.
_BARE_ASSIGN_RE = re.compile(
    r"""(?imx)
    (?<![a-z0-9])(?:api[_-]?key|secret|token|access[_-]?key|auth[_-]?key|private[_-]?key)[\w-]{0,64}+
    (?P<sep>[ \t]*[:=][ \t]*)
    (?P<val>[A-Za-z0-9+/_-]{16,200}={0,2})
    (?=[ \t]*(?:\#.*)?\r?$)
    """
)
_PW_WORDS = ("pass", "pwd")
_PASSWORD_RE = re.compile(
    r"""(?ix)
    (?:password|passwd|pwd)\b[\w-]{0,64}+
    (?P<sep>["']?\s*(?::=|=>|[:=])\s*)
    (?P<q>["'])(?P<val>[^"'\n]{4,200})(?P=q)
    """
)
_PLACEHOLDERS = {
    "password", "passwd", "changeme", "secret", "xxxx", "xxxxxx", "xxxxxxxx", "********",
    "your_password", "yourpassword", "your-password", "<password>", "none", "null", "example",
    "test", "dummy", "placeholder",
}  # fmt: skip


def shannon_entropy(s: str) -> float:
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _looks_like_key(val: str, min_entropy: float) -> bool:
    if val.startswith(("<", "$", "{", "%")) or val.lower() in _PLACEHOLDERS:
        return False
    has_digit = any(ch.isdigit() for ch in val)
    has_alpha = any(ch.isalpha() for ch in val)
    if not (has_digit and has_alpha):
        return False
    if re.fullmatch(r"[a-z_]+[0-9]*|[A-Z_]+[0-9]*", val):  # identifiers / env var names
        return False
    return shannon_entropy(val) >= min_entropy


def _replace_value(m: re.Match[str], placeholder: str) -> str:
    whole, start = m.group(0), m.start()
    return whole[: m.start("val") - start] + placeholder + whole[m.end("val") - start :]


@dataclass
class Redactor:
    cfg: SecretsConfig = field(default_factory=SecretsConfig)

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """Return (redacted text, counts per kind)."""
        counts: Counter[str] = Counter()
        cfg = self.cfg
        if cfg.private_keys and "PRIVATE KEY" in text:
            text, n = _PRIVATE_KEY_RE.subn(PRIVATE_KEY, text)
            counts["private_key"] += n
            if "PRIVATE KEY" in text:
                text, n = _OPEN_PRIVATE_KEY_RE.subn(PRIVATE_KEY, text)
                counts["private_key"] += n
        if cfg.keys:
            for kind, needles, rx in _TOKEN_RES:
                if any(n in text for n in needles):
                    text, n = rx.subn(KEY, text)
                    counts[kind] += n

            def _assign(m: re.Match[str]) -> str:
                if not _looks_like_key(m["val"], cfg.min_entropy):
                    return m.group(0)
                counts["generic_key"] += 1
                return _replace_value(m, KEY)

            def _bare(m: re.Match[str]) -> str:
                val = m["val"]
                if val.isidentifier() and "_" in val:  # a snake_case name: code, not a key
                    return m.group(0)
                return _assign(m)

            lower = text.lower()
            if any(w in lower for w in _KEY_WORDS):
                text = _ASSIGN_RE.sub(_assign, text)
                text = _BARE_ASSIGN_RE.sub(_bare, text)
        if cfg.passwords:

            def _pw(m: re.Match[str]) -> str:
                v = m["val"]
                if v.lower() in _PLACEHOLDERS or v.startswith(("<", "$", "{", "%")) or " " in v:
                    return m.group(0)
                counts["password"] += 1
                return _replace_value(m, PASSWORD)

            lower = text.lower()
            if any(w in lower for w in _PW_WORDS):
                text = _PASSWORD_RE.sub(_pw, text)
        if cfg.emails and "@" in text:
            allow = {d.lower() for d in cfg.email_allow_domains}

            def _email(m: re.Match[str]) -> str:
                dom = m.group(1).lower()
                if dom in allow or any(dom.endswith("." + a) for a in allow):
                    return m.group(0)
                counts["email"] += 1
                return EMAIL

            text = _EMAIL_RE.sub(_email, text)
        return text, +counts
