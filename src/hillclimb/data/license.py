"""License detection: SPDX tags, license texts, package metadata → an SPDX id (or `unknown`).

Why our own matcher and not scancode-toolkit: scancode is the reference detector, but it pulls
~60 packages and scans a few files per second per core after a multi-minute index build, while
the pipeline must process a few hundred files in seconds on 2 cores (measurements and the full
argument are in docs/areas/data.md). Licenses in real code are overwhelmingly stated in one of a
few forms — an `SPDX-License-Identifier:` tag, a canonical header paragraph, a LICENSE/COPYING
file, or package metadata (PyPI `License-Expression`/`License`/trove classifiers, package.json
`license`) — and each canonical license text has distinctive sentences. We match those
sentences (whitespace- and case-normalised), order the checks from most to least specific (LGPL
before GPL, "Neither the name" to tell BSD-3 from BSD-2), and report `unknown` otherwise, which
the default policy drops. Precision matters more than recall here: a wrong "MIT" lets a GPL file
in, a missed detection only drops a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

UNKNOWN = "unknown"
PROPRIETARY = "LicenseRef-proprietary"

# The tag, then the rest of its line; the expression is the leading run of SPDX expression
# characters, so whatever comment syntax closes the line (`*/`, `-->`, `*)`, `-}`, `#}`, `"""`,
# `;`, `, see LICENSE`) ends it. Only `*/` and `-->` used to: `(* SPDX-License-Identifier:
# GPL-3.0-only *)` (OCaml) was no tag at all, and the file took its directory's licence.
_SPDX_TAG = re.compile(r"SPDX-License-Identifier:[ \t]*([^\r\n]*)", re.I)
_SPDX_EXPR = re.compile(r"[A-Za-z0-9.+\-() \t]*")

# What a license *file* says is decided by its grant, not by every license it names. CPython's
# LICENSE.txt grants the PSF License and, in its CNRI section, *mentions* "the GNU General Public
# License"; the GPL-3 text names the LGPL ("use the GNU Lesser General Public License instead");
# the MPL-2.0 text lists the GPLs as "Secondary Licenses". So each occurrence of a rule's anchor
# is either a *grant* — a sentence that only the license's own text or a statement applying it
# contains ("Permission is hereby granted, free of charge", a title line with its date, a name
# right after "licensed under the" / "under the terms of the") — or a *mention* (the bare name).
# The earliest grant in the text decides (a multi-section file's first section is its own grant;
# later sections are bundled or historical parts); with no grant at all, the first mention in
# rule order decides, most restrictive first, so a header that only names the GPL still counts.


@dataclass(frozen=True)
class _Rule:
    spdx: str
    anchor: str  # lowercase, single spaces; the match is placed at its occurrence
    also: tuple[str, ...] = ()  # must follow the anchor within `window` characters
    grant: bool = False  # True: the anchor is itself a grant sentence (never a mere mention)
    window: int = 400


# Phrases right before a license name that make the occurrence a grant.
_GRANT_LEADS = (
    "under the terms of the ",
    "under the terms of ",
    "licensed under the ",
    "licensed under ",
    "released under the ",
    "released under ",
    "subject to the terms of the ",
    "made available under the ",
)
# A license's own title line: "<name> version 2, june 1991", "<name> version 2.0, january 2004".
_TITLE_AFTER = re.compile(
    r"[ ,-]*(?:version|v\.?) ?\d+(?:\.\d+)?,? (?:\d{1,2} )?(?:january|february|march|april|may|"
    r"june|july|august|september|october|november|december) \d{4}"
)

_AGPL = "gnu affero general public license"
_LGPL = "gnu lesser general public license"
_GPL = "gnu general public license"
_ANY_LATER = "any later"

# Checked in this order among matches at the same position (more specific first).
_TEXT_RULES: list[_Rule] = [
    _Rule("AGPL-3.0-or-later", _AGPL, ("or (at your option) any later",)),
    _Rule("AGPL-3.0-only", _AGPL),
    _Rule("LGPL-2.1-or-later", _LGPL, ("version 2.1", _ANY_LATER)),
    _Rule("LGPL-3.0-or-later", _LGPL, ("version 3", _ANY_LATER)),
    _Rule("LGPL-3.0-only", _LGPL, ("version 3",)),
    _Rule("LGPL-2.1-only", _LGPL),
    _Rule("LGPL-2.0-or-later", "gnu library general public license"),
    _Rule("GPL-3.0-or-later", _GPL, ("version 3", "any later version")),
    _Rule("GPL-2.0-or-later", _GPL, ("version 2", "any later version")),
    _Rule("GPL-3.0-only", _GPL, ("version 3",)),
    _Rule("GPL-2.0-only", _GPL, ("version 2",)),
    _Rule("GPL-3.0-or-later", _GPL),
    _Rule("MPL-2.0", "mozilla public license", ("2.0",)),
    _Rule("EPL-2.0", "eclipse public license", ("2.0",)),
    _Rule("CDDL-1.0", "common development and distribution license"),
    _Rule("PSF-2.0", "python software foundation license version 2"),
    _Rule("PSF-2.0", "psf license agreement", grant=True),
    _Rule(
        "PSF-2.0", "this license agreement is between the python software foundation", grant=True
    ),
    _Rule("Apache-2.0", "apache license", ("version 2.0",)),
    _Rule("Apache-2.0", "licensed under the apache license", grant=True),
    _Rule("BSL-1.0", "boost software license"),
    _Rule(
        "BSL-1.0",
        "permission is hereby granted, free of charge, to any person or organization obtaining a "
        "copy of the software and accompanying documentation covered by this license",
        grant=True,
    ),
    _Rule(
        "Unlicense",
        "this is free and unencumbered software released into the public domain",
        grant=True,
    ),
    _Rule("CC0-1.0", "cc0 1.0 universal", grant=True),
    _Rule("CC0-1.0", "creativecommons.org/publicdomain/zero/1.0", grant=True),
    # ISC before 0BSD: the same sentence, ISC continues "provided that the above ..."
    _Rule(
        "ISC",
        "permission to use, copy, modify, and/or distribute this software for any purpose "
        "with or without fee is hereby granted, provided that the above copyright notice",
        grant=True,
    ),
    _Rule(
        "0BSD",
        "permission to use, copy, modify, and/or distribute this software for any purpose "
        "with or without fee is hereby granted",
        ('the software is provided "as is" and the author disclaims',),
        grant=True,
    ),
    _Rule(
        "ISC",
        "permission to use, copy, modify, and distribute this software for any purpose",
        grant=True,
    ),
    _Rule(
        "Zlib",
        "this software is provided 'as-is', without any express or implied warranty",
        ("permission is granted to anyone to use this software for any purpose",),
        grant=True,
    ),
    _Rule(
        "MIT",
        "permission is hereby granted, free of charge, to any person obtaining a copy",
        grant=True,
    ),
    _Rule("MIT", "licensed under the mit license", grant=True),
    _Rule("MIT", "released under the mit license", grant=True),
    _Rule("MIT", "mit license (mit)", grant=True),
    _Rule(
        "BSD-3-Clause",
        "redistribution and use in source and binary forms",
        ("neither the name of",),
        grant=True,
        window=2000,
    ),
    _Rule(
        "BSD-3-Clause",
        "redistribution and use in source and binary forms",
        ("may not be used to endorse",),
        grant=True,
        window=2000,
    ),
    _Rule("BSD-2-Clause", "redistribution and use in source and binary forms", grant=True),
    _Rule("BSD-3-Clause", "use of this source code is governed by a bsd-style license", grant=True),
    _Rule(PROPRIETARY, "proprietary and confidential", grant=True),
    _Rule(PROPRIETARY, "unauthorized copying of this file", grant=True),
    _Rule(PROPRIETARY, "confidential and proprietary", grant=True),
    _Rule(PROPRIETARY, "all rights reserved. no part of this", grant=True),
]

# Short names found in package metadata, lowercased with punctuation collapsed → SPDX.
_ALIASES: dict[str, str] = {
    "mit": "MIT",
    "mit license": "MIT",
    "the mit license": "MIT",
    "expat": "MIT",
    "mit-0": "MIT-0",
    "bsd": "LicenseRef-BSD",
    "bsd license": "LicenseRef-BSD",
    "new bsd": "BSD-3-Clause",
    "new bsd license": "BSD-3-Clause",
    "modified bsd": "BSD-3-Clause",
    "bsd 3-clause": "BSD-3-Clause",
    "bsd-3-clause": "BSD-3-Clause",
    "bsd 3 clause": "BSD-3-Clause",
    "3-clause bsd": "BSD-3-Clause",
    "3-clause bsd license": "BSD-3-Clause",
    "bsd 3-clause license": "BSD-3-Clause",
    "simplified bsd": "BSD-2-Clause",
    "bsd 2-clause": "BSD-2-Clause",
    "bsd-2-clause": "BSD-2-Clause",
    "2-clause bsd": "BSD-2-Clause",
    "0bsd": "0BSD",
    "apache": "Apache-2.0",
    "apache 2": "Apache-2.0",
    "apache 2.0": "Apache-2.0",
    "apache-2": "Apache-2.0",
    "apache-2.0": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0",
    "apache software license": "Apache-2.0",
    "apache 2.0 license": "Apache-2.0",
    "apache license": "Apache-2.0",
    "asl 2.0": "Apache-2.0",
    "isc": "ISC",
    "isc license": "ISC",
    "isc license (iscl)": "ISC",
    "psf": "PSF-2.0",
    "psf license": "PSF-2.0",
    "psf-2.0": "PSF-2.0",
    "python software foundation license": "PSF-2.0",
    "python-2.0": "Python-2.0",
    "zlib": "Zlib",
    "zlib/libpng": "Zlib",
    "zlib/libpng license": "Zlib",
    "unlicense": "Unlicense",
    "the unlicense (unlicense)": "Unlicense",
    "public domain": "LicenseRef-public-domain",
    "cc0": "CC0-1.0",
    "cc0-1.0": "CC0-1.0",
    "cc0 1.0 universal (cc0 1.0) public domain dedication": "CC0-1.0",
    "boost software license 1.0 (bsl-1.0)": "BSL-1.0",
    "mpl-2.0": "MPL-2.0",
    "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0",
    "gpl": "GPL-3.0-or-later",
    "gplv2": "GPL-2.0-only",
    "gplv2+": "GPL-2.0-or-later",
    "gplv3": "GPL-3.0-only",
    "gplv3+": "GPL-3.0-or-later",
    "gnu general public license (gpl)": "GPL-3.0-or-later",
    "gnu general public license v2 (gplv2)": "GPL-2.0-only",
    "gnu general public license v2 or later (gplv2+)": "GPL-2.0-or-later",
    "gnu general public license v3 (gplv3)": "GPL-3.0-only",
    "gnu general public license v3 or later (gplv3+)": "GPL-3.0-or-later",
    "lgpl": "LGPL-3.0-or-later",
    "gnu lesser general public license v2 (lgplv2)": "LGPL-2.0-only",
    "gnu lesser general public license v2 or later (lgplv2+)": "LGPL-2.0-or-later",
    "gnu lesser general public license v3 (lgplv3)": "LGPL-3.0-only",
    "gnu lesser general public license v3 or later (lgplv3+)": "LGPL-3.0-or-later",
    "gnu library or lesser general public license (lgpl)": "LGPL-2.0-or-later",
    "gnu affero general public license v3": "AGPL-3.0-only",
    "gnu affero general public license v3 or later (agplv3+)": "AGPL-3.0-or-later",
    "agpl": "AGPL-3.0-only",
    "proprietary": PROPRIETARY,
    "other/proprietary license": PROPRIETARY,
    "unlicensed": PROPRIETARY,  # npm's "UNLICENSED" means "no permission granted"
}

# SPDX ids we accept verbatim from tags and metadata (case-insensitive → canonical case).
_KNOWN_SPDX = {
    s.lower(): s
    for s in [
        "MIT",
        "MIT-0",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "0BSD",
        "Apache-2.0",
        "ISC",
        "PSF-2.0",
        "Python-2.0",
        "Zlib",
        "Unlicense",
        "CC0-1.0",
        "BSL-1.0",
        "HPND",
        "X11",
        "NCSA",
        "UPL-1.0",
        "MPL-2.0",
        "MPL-1.1",
        "EPL-1.0",
        "EPL-2.0",
        "CDDL-1.0",
        "Artistic-2.0",
        "CC-BY-4.0",
        "CC-BY-SA-4.0",
        "CC-BY-NC-4.0",
        "GPL-2.0",
        "GPL-2.0-only",
        "GPL-2.0-or-later",
        "GPL-2.0+",
        "GPL-3.0",
        "GPL-3.0-only",
        "GPL-3.0-or-later",
        "GPL-3.0+",
        "LGPL-2.0",
        "LGPL-2.0-only",
        "LGPL-2.0-or-later",
        "LGPL-2.1",
        "LGPL-2.1-only",
        "LGPL-2.1-or-later",
        "LGPL-2.1+",
        "LGPL-3.0",
        "LGPL-3.0-only",
        "LGPL-3.0-or-later",
        "AGPL-3.0",
        "AGPL-3.0-only",
        "AGPL-3.0-or-later",
        "SSPL-1.0",
        "BUSL-1.1",
        "WTFPL",
        "OFL-1.1",
        "Unicode-DFS-2016",
        "BlueOak-1.0.0",
        "LicenseRef-BSD",
        PROPRIETARY,
        "LicenseRef-public-domain",
    ]  # fmt: skip
}

_TROVE_PREFIX = "license ::"


# Comment leaders at the start of a line, so a sentence wrapped over `#`/`//`/` *` lines reads
# as one sentence.
_LINE_LEADER = re.compile(r"^[ \t]*(?:#+|//+|/\*+|\*+(?!/)|--|;+|%+|rem\b|<!--)[ \t]?", re.I | re.M)


def _norm(text: str) -> str:
    text = _LINE_LEADER.sub(" ", text)
    return " ".join(text.lower().replace("\u2019", "'").split())


def normalize_license(name: str | None) -> str:
    """Map a metadata license string or SPDX expression to canonical SPDX form (`unknown` if none)."""
    if not name:
        return UNKNOWN
    s = " ".join(str(name).strip().split())
    if not s or s.lower() in ("unknown", "none", "n/a", "unknown license", "license"):
        return UNKNOWN
    # SPDX expression with OR/AND: normalise each part and keep the structure.
    if re.search(r"\s(OR|AND|or|and)\s", s) and len(s) < 200:
        parts = re.split(r"(\s+(?:OR|AND|or|and)\s+|[()])", s)
        out = []
        for part in parts:
            p = part.strip()
            if not p:
                continue
            if p.upper() in ("OR", "AND"):
                out.append(f" {p.upper()} ")
            elif p in "()":
                out.append(p)
            else:
                out.append(normalize_license(p))
        return "".join(out).replace("( ", "(").replace(" )", ")")
    with_exc = re.fullmatch(r"(\(\s*)?([^\s()]+)\s+WITH\s+([^\s()]+)(\s*\))?", s, re.I)
    if with_exc and bool(with_exc.group(1)) == bool(with_exc.group(4)):
        # `GPL-2.0-only WITH Linux-syscall-note`: the licence, and its exception as written
        base = normalize_license(with_exc.group(2))
        if base == UNKNOWN:
            return UNKNOWN
        out = f"{base} WITH {with_exc.group(3)}"
        return f"({out})" if with_exc.group(1) else out
    low = s.lower().rstrip(".")
    if low in _KNOWN_SPDX:
        return _KNOWN_SPDX[low]
    if low in _ALIASES:
        return _ALIASES[low]
    if low.startswith(_TROVE_PREFIX):
        return license_from_trove([s])
    if len(s) > 60:  # a full license text pasted into a metadata field
        return license_from_text(s)
    return UNKNOWN


def _is_grant(rule: _Rule, t: str, pos: int) -> bool:
    if rule.grant:
        return True
    if any(t.startswith(lead, pos - len(lead)) for lead in _GRANT_LEADS if pos >= len(lead)):
        return True
    return _TITLE_AFTER.match(t, pos + len(rule.anchor)) is not None


def _matches(t: str) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]]:
    """(grants, mentions) as (position, rule index, spdx): every rule's first occurrence of each
    kind whose `also` phrases follow within the rule's window."""
    grants: list[tuple[int, int, str]] = []
    mentions: list[tuple[int, int, str]] = []
    for i, rule in enumerate(_TEXT_RULES):
        got_grant = got_mention = False
        pos = t.find(rule.anchor)
        while pos >= 0 and not (got_grant and (got_mention or rule.grant)):
            tail = t[pos : pos + len(rule.anchor) + rule.window]
            if all(a in tail for a in rule.also):
                if _is_grant(rule, t, pos):
                    if not got_grant:
                        grants.append((pos, i, rule.spdx))
                        got_grant = True
                elif not got_mention:
                    mentions.append((pos, i, rule.spdx))
                    got_mention = True
            pos = t.find(rule.anchor, pos + 1)
    return grants, mentions


def license_from_text(text: str) -> str:
    """Classify license text (a LICENSE file or a file header) by its grant.

    The earliest grant wins (ties: rule order); a license the text only *mentions* counts only
    when the text grants nothing we recognise — then the most restrictive mention wins, so a
    header that just names the GPL is never read as permissive."""
    t = _norm(text[:200_000])
    grants, mentions = _matches(t)
    if grants:
        return min(grants)[2]
    if mentions:
        return min(mentions, key=lambda m: m[1])[2]
    return UNKNOWN


def spdx_tag(text: str) -> str | None:
    """The expression after `SPDX-License-Identifier:` in `text`, normalised; None if absent."""
    for m in _SPDX_TAG.finditer(text):
        expr = _SPDX_EXPR.match(m.group(1)).group(0)  # type: ignore[union-attr]
        while True:  # trailing comment punctuation: `-}` / `-->` leave "-", `.)` a stray ")"
            trimmed = expr.rstrip(" \t-.")
            if trimmed.endswith(")") and trimmed.count(")") > trimmed.count("("):
                trimmed = trimmed[:-1]
            if trimmed == expr:
                break
            expr = trimmed
        if expr:
            return normalize_license(expr)
    return None


_COMMENT_PREFIXES = ("#", "//", "/*", "*", "--", ";", "<!--", "%", "'", "rem ", "!")


def leading_comment_block(lines: list[str]) -> list[str]:
    """The lines of a source file's leading comment block and/or module docstring (blank lines
    included), up to the first line of code. A license header lives there; license *phrases*
    further down (string literals, code) are data, not a license statement."""
    out: list[str] = []
    quote: str | None = None
    for line in lines:
        s = line.strip()
        if quote is not None:  # inside a leading docstring
            out.append(line)
            if quote in s:
                quote = None
            continue
        if not s or s.lower().startswith(_COMMENT_PREFIXES) or s.endswith("*/"):
            out.append(line)
            continue
        q = next((q for q in ('"""', "'''") if s.lstrip("rRbBuU").startswith(q)), None)
        if q is not None:
            out.append(line)
            body = s.lstrip("rRbBuU")[3:]
            if q not in body:
                quote = q
            continue
        break
    return out


def license_from_header(text: str, header_lines: int = 40, code: bool = False) -> str | None:
    """License stated in a file's header (SPDX tag or license paragraph), or None.

    For source code (`code=True`) license paragraphs are only looked for in the leading comment
    block / module docstring, so a file that merely *mentions* license texts in its code (a
    license detector, a test) is not taken for that license. SPDX tags count anywhere in the
    first `header_lines` lines."""
    lines = text.splitlines()[:header_lines]
    head = "\n".join(lines)
    tag = spdx_tag(head)
    if tag is not None and tag != UNKNOWN:
        return tag
    found = license_from_text("\n".join(leading_comment_block(lines)) if code else head)
    if found == UNKNOWN and tag == UNKNOWN:
        # the file names its licence and we cannot read it (`LicenseRef-Foo`, an id we do not
        # know): its licence is unknown, not its directory's, which it overrides
        return UNKNOWN
    return None if found == UNKNOWN else found


def license_from_trove(classifiers: Iterable[str]) -> str:
    """PyPI `License :: ...` classifiers → SPDX (several → `A OR B`, as dual licensing means)."""
    found: list[str] = []
    for c in classifiers:
        parts = [p.strip() for p in c.split("::")]
        if len(parts) < 2 or parts[0].lower() != "license":
            continue
        leaf = parts[-1]
        spdx = _ALIASES.get(leaf.lower()) or _KNOWN_SPDX.get(leaf.lower())
        if spdx is None and parts[1].lower() == "public domain":
            spdx = "LicenseRef-public-domain"
        if spdx is None and leaf.lower().startswith("osi approved"):
            continue
        if spdx and spdx not in found:
            found.append(spdx)
    if not found:
        return UNKNOWN
    return found[0] if len(found) == 1 else "(" + " OR ".join(found) + ")"


def license_from_pkg_metadata(dist_info: Path) -> str:
    """License of an installed Python distribution from its `.dist-info`/`.egg-info` directory."""
    meta_file = dist_info / "METADATA"
    if not meta_file.is_file():
        meta_file = dist_info / "PKG-INFO"
    if meta_file.is_file():
        try:
            raw = meta_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            raw = ""
        msg = HeaderParser().parsestr(raw.split("\n\n", 1)[0] + "\n")
        expr = msg.get("License-Expression")
        if expr:
            lic = normalize_license(expr)
            if lic != UNKNOWN:
                return lic
        trove = license_from_trove(msg.get_all("Classifier") or [])
        if trove != UNKNOWN:
            return trove
        lic = normalize_license(msg.get("License"))
        if lic != UNKNOWN:
            return lic
    # License files shipped inside the dist-info (PEP 639 puts them under licenses/).
    for cand in sorted(dist_info.rglob("*")):
        if cand.is_file() and _is_license_filename(cand.name):
            lic = license_from_file(cand)
            if lic != UNKNOWN:
                return lic
    return UNKNOWN


def license_from_package_json(path: Path) -> str | None:
    """The `license` of an npm package.json (string, SPDX expression, or legacy object)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict):
        return None
    lic = meta.get("license")
    if isinstance(lic, dict):
        lic = lic.get("type")
    if lic is None and isinstance(meta.get("licenses"), list) and meta["licenses"]:
        first = meta["licenses"][0]
        lic = first.get("type") if isinstance(first, dict) else first
    if not isinstance(lic, str):
        return None
    if lic.upper().startswith("SEE LICENSE IN"):
        return None  # the tree's LICENSE file decides
    return normalize_license(lic)


_LICENSE_NAMES = re.compile(r"^(licen[sc]e|copying|unlicense|copyright)([._-].*)?$", re.I)


def _is_license_filename(name: str) -> bool:
    if not _LICENSE_NAMES.match(name):
        return False
    from hillclimb.data.document import language_for_path

    # `license.py` or `copyright.h` are code, not license texts
    return language_for_path(name) in (None, "text", "markdown", "rst")


def license_from_file(path: Path) -> str:
    try:
        return license_from_text(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return UNKNOWN


def is_license_file(name: str) -> bool:
    """LICENSE, COPYING, LICENCE.txt, license.md, ... (also used to skip them as documents)."""
    return _is_license_filename(name)


_SPDX_TOKEN = re.compile(r"[()]|[^\s()]+")


def license_allowed(expr: str, allow: Iterable[str], allow_unknown: bool = False) -> bool:
    """Is an SPDX expression usable under the allowlist? `A OR B`: either; `A AND B`: both.

    Parsed with SPDX precedence (WITH binds tightest, then AND, then OR) and parentheses. Why a
    parser: splitting on " OR " first read `(MIT OR Apache-2.0) AND GPL-3.0-only` as `(MIT` OR
    `…`, allowing a GPL document. An expression that does not parse is not allowed.
    """
    allowed = {a.lower() for a in allow}
    if expr == UNKNOWN:
        return allow_unknown
    toks = _SPDX_TOKEN.findall(expr)
    pos = 0

    def take(tok: str) -> bool:
        nonlocal pos
        if pos < len(toks) and toks[pos] == tok:
            pos += 1
            return True
        return False

    def term() -> bool:  # license [WITH exception] | "(" expr ")"
        nonlocal pos
        if take("("):
            ok = any_of()
            if not take(")"):
                raise ValueError("unbalanced parentheses")
            return ok
        if pos >= len(toks) or toks[pos] in ("(", ")", "AND", "OR", "WITH"):
            raise ValueError("license id expected")
        name = toks[pos].lower()
        pos += 1
        if take("WITH"):
            if pos >= len(toks) or toks[pos] in ("(", ")", "AND", "OR", "WITH"):
                raise ValueError("exception id expected")
            pos += 1
        return allow_unknown if name == UNKNOWN else name in allowed

    def all_of() -> bool:
        ok = term()
        while take("AND"):
            ok = term() and ok
        return ok

    def any_of() -> bool:
        ok = all_of()
        while take("OR"):
            ok = all_of() or ok
        return ok

    try:
        ok = any_of()
    except ValueError:
        return False
    return ok and pos == len(toks)


def license_family(expr: str) -> str:
    """Coarse class used in drop reasons and data cards: gpl-family, proprietary, unknown, other."""
    if expr == UNKNOWN:
        return "unknown"
    up = expr.upper()
    if "GPL" in up:  # GPL, LGPL, AGPL
        return "gpl-family"
    if expr == PROPRIETARY or "NC-" in up:
        return "proprietary"
    return "other"


def permissiveness(expr: str, allow: Iterable[str]) -> int:
    """Rank for dedup's "keep the permissive copy": 0 all-permissive, 1 allowed, 2 not allowed."""
    from hillclimb.data.config import DEFAULT_ALLOW

    if license_allowed(expr, DEFAULT_ALLOW):
        return 0
    if license_allowed(expr, allow):
        return 1
    return 2
