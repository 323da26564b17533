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
from email.parser import HeaderParser
from pathlib import Path

UNKNOWN = "unknown"
PROPRIETARY = "LicenseRef-proprietary"

_SPDX_TAG = re.compile(r"SPDX-License-Identifier:\s*([A-Za-z0-9.+\-() ]+?)\s*(?:\*/|-->|$)", re.M)

# (spdx id, [phrases that must ALL appear]) — checked in order, first hit wins. Phrases are
# lowercase with single spaces (the text is normalised the same way before matching).
_TEXT_RULES: list[tuple[str, list[str]]] = [
    ("AGPL-3.0-or-later", ["gnu affero general public license", "or (at your option) any later"]),
    ("AGPL-3.0-only", ["gnu affero general public license"]),
    ("LGPL-2.1-or-later", ["gnu lesser general public license", "version 2.1", "any later"]),
    ("LGPL-3.0-or-later", ["gnu lesser general public license", "version 3", "any later"]),
    ("LGPL-3.0-only", ["gnu lesser general public license", "version 3"]),
    ("LGPL-2.1-only", ["gnu lesser general public license"]),
    ("LGPL-2.0-or-later", ["gnu library general public license"]),
    ("GPL-3.0-or-later", ["gnu general public license", "version 3", "any later version"]),
    ("GPL-2.0-or-later", ["gnu general public license", "version 2", "any later version"]),
    ("GPL-3.0-only", ["gnu general public license", "version 3"]),
    ("GPL-2.0-only", ["gnu general public license", "version 2"]),
    ("GPL-3.0-or-later", ["gnu general public license"]),
    ("MPL-2.0", ["mozilla public license", "2.0"]),
    ("EPL-2.0", ["eclipse public license", "2.0"]),
    ("CDDL-1.0", ["common development and distribution license"]),
    ("PSF-2.0", ["python software foundation license version 2"]),
    ("PSF-2.0", ["psf license agreement"]),
    ("Apache-2.0", ["apache license", "version 2.0"]),
    ("Apache-2.0", ["licensed under the apache license"]),
    ("BSL-1.0", ["boost software license"]),
    ("Unlicense", ["this is free and unencumbered software released into the public domain"]),
    ("CC0-1.0", ["cc0 1.0 universal"]),
    ("CC0-1.0", ["creativecommons.org/publicdomain/zero/1.0"]),
    (
        "0BSD",
        [
            "permission to use, copy, modify, and/or distribute this software for any purpose "
            "with or without fee is hereby granted",
            'the software is provided "as is" and the author disclaims',
        ],
    ),
    (
        "ISC",
        [
            "permission to use, copy, modify, and/or distribute this software for any purpose "
            "with or without fee is hereby granted, provided that the above copyright notice",
        ],
    ),
    ("ISC", ["permission to use, copy, modify, and distribute this software for any purpose"]),
    (
        "Zlib",
        [
            "this software is provided 'as-is', without any express or implied warranty",
            "permission is granted to anyone to use this software for any purpose",
        ],
    ),
    ("MIT", ["permission is hereby granted, free of charge, to any person obtaining a copy"]),
    ("MIT", ["licensed under the mit license"]),
    ("MIT", ["released under the mit license"]),
    ("MIT", ["mit license (mit)"]),
    (
        "BSD-3-Clause",
        ["redistribution and use in source and binary forms", "neither the name of"],
    ),
    (
        "BSD-3-Clause",
        ["redistribution and use in source and binary forms", "may not be used to endorse"],
    ),
    ("BSD-2-Clause", ["redistribution and use in source and binary forms"]),
    ("BSD-3-Clause", ["use of this source code is governed by a bsd-style license"]),
    (PROPRIETARY, ["proprietary and confidential"]),
    (PROPRIETARY, ["unauthorized copying of this file"]),
    (PROPRIETARY, ["confidential and proprietary"]),
    (PROPRIETARY, ["all rights reserved. no part of this"]),
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


def _norm(text: str) -> str:
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


def license_from_text(text: str) -> str:
    """Classify license text (a LICENSE file or a file header) by its canonical sentences."""
    t = _norm(text[:200_000])
    for spdx, phrases in _TEXT_RULES:
        if all(p in t for p in phrases):
            return spdx
    return UNKNOWN


def spdx_tag(text: str) -> str | None:
    """The expression after `SPDX-License-Identifier:` in `text`, normalised; None if absent."""
    m = _SPDX_TAG.search(text)
    if not m:
        return None
    return normalize_license(m.group(1).strip())


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


def license_allowed(expr: str, allow: Iterable[str], allow_unknown: bool = False) -> bool:
    """Is an SPDX expression usable under the allowlist? `A OR B`: either; `A AND B`: both."""
    allowed = {a.lower() for a in allow}
    if expr == UNKNOWN:
        return allow_unknown
    e = expr.strip()
    if e.startswith("(") and e.endswith(")") and e.count("(") == 1:
        e = e[1:-1]
    if " OR " in e:
        return any(license_allowed(p.strip(), allow, allow_unknown) for p in e.split(" OR "))
    if " AND " in e:
        return all(license_allowed(p.strip(), allow, allow_unknown) for p in e.split(" AND "))
    if " WITH " in e:
        e = e.split(" WITH ")[0]
    e = e.strip("() ")
    return e.lower() in allowed


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
