"""Unit tests of the license matcher, secret redaction and the per-document filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from hillclimb.data.config import (
    AIContentConfig,
    BlocklistConfig,
    LicenseConfig,
    QualityConfig,
    SecretsConfig,
)
from hillclimb.data.document import Document
from hillclimb.data.filters import (
    AIContentFilter,
    BlocklistFilter,
    LicenseFilter,
    QualityFilter,
    text_words,
)
from hillclimb.data.license import (
    license_allowed,
    license_from_header,
    license_from_package_json,
    license_from_pkg_metadata,
    license_from_text,
    license_from_trove,
    normalize_license,
)
from hillclimb.data.secrets import Redactor


@pytest.mark.parametrize(
    ("text", "spdx"),
    [
        ("# SPDX-License-Identifier: MIT\nimport os\n", "MIT"),
        ("/* SPDX-License-Identifier: GPL-2.0-only */\nint x;\n", "GPL-2.0-only"),
        ("// SPDX-License-Identifier: Apache-2.0 OR MIT\n", "Apache-2.0 OR MIT"),
        ('# Licensed under the Apache License, Version 2.0 (the "License");\n', "Apache-2.0"),
        (
            "/* This library is free software; you can redistribute it under the terms of the\n"
            " * GNU Lesser General Public License as published by the Free Software Foundation;\n"
            " * either version 2.1 of the License, or (at your option) any later version. */",
            "LGPL-2.1-or-later",
        ),
        (
            "# GNU General Public License version 2 as published by the FSF.\n",
            "GPL-2.0-only",
        ),
        (
            "Redistribution and use in source and binary forms, with or without\n"
            "modification, are permitted ... Neither the name of the copyright holder",
            "BSD-3-Clause",
        ),
        ("Redistribution and use in source and binary forms, with or without", "BSD-2-Clause"),
        (
            "# Copyright Acme. Proprietary and confidential. Do not distribute.",
            "LicenseRef-proprietary",
        ),
    ],
)
def test_header_detection(text, spdx):
    assert license_from_header(text) == spdx


def test_header_none_for_plain_code():
    assert license_from_header("import os\n\ndef f():\n    return 1\n") is None


def test_license_texts_and_names():
    assert (
        license_from_text(
            "Permission is hereby granted, free of charge, to any person obtaining a copy"
        )
        == "MIT"
    )
    assert license_from_text("just some words") == "unknown"
    assert normalize_license("Apache 2.0") == "Apache-2.0"
    assert normalize_license("BSD 3-Clause License") == "BSD-3-Clause"
    assert normalize_license("mit") == "MIT"
    assert normalize_license("MIT OR Apache-2.0") == "MIT OR Apache-2.0"
    assert normalize_license("") == "unknown"
    assert license_from_trove(["License :: OSI Approved :: MIT License"]) == "MIT"
    assert (
        license_from_trove(["License :: OSI Approved :: GNU General Public License v3 (GPLv3)"])
        == "GPL-3.0-only"
    )
    assert license_from_trove(["Programming Language :: Python"]) == "unknown"


def test_allowlist_expressions():
    allow = LicenseConfig().allow
    assert license_allowed("MIT", allow)
    assert license_allowed("GPL-2.0-only OR MIT", allow)
    assert not license_allowed("MPL-2.0 AND MIT", allow)
    assert not license_allowed("GPL-3.0-or-later", allow)
    assert not license_allowed("unknown", allow)
    assert license_allowed("unknown", allow, allow_unknown=True)
    assert license_allowed("(Apache-2.0 OR BSD-3-Clause)", allow)
    # parentheses and precedence: splitting on " OR " first allowed the GPL part here
    assert not license_allowed("(MIT OR Apache-2.0) AND GPL-3.0-only", allow)
    assert license_allowed("MIT AND (GPL-3.0-only OR Apache-2.0)", allow)
    assert license_allowed("MIT OR GPL-3.0-only AND LGPL-2.1-only", allow)  # AND binds tighter
    assert license_allowed("Apache-2.0 WITH LLVM-exception", allow)
    assert not license_allowed("(MIT", allow) and not license_allowed("MIT AND", allow)


def test_package_metadata(tmp_path):
    d = tmp_path / "x-1.0.dist-info"
    d.mkdir()
    (d / "METADATA").write_text(
        "Metadata-Version: 2.4\nName: x\nLicense-Expression: BSD-3-Clause\n\nbody\n"
    )
    assert license_from_pkg_metadata(d) == "BSD-3-Clause"
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: x\nLicense: Apache 2.0\n")
    assert license_from_pkg_metadata(d) == "Apache-2.0"
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: x\n")
    (d / "licenses").mkdir()
    (d / "licenses" / "LICENSE").write_text(
        "Permission is hereby granted, free of charge, to any person obtaining a copy"
    )
    assert license_from_pkg_metadata(d) == "MIT"
    pj = tmp_path / "package.json"
    pj.write_text('{"license": {"type": "ISC"}}')
    assert license_from_package_json(pj) == "ISC"
    pj.write_text('{"license": "UNLICENSED"}')
    assert license_from_package_json(pj) == "LicenseRef-proprietary"


def test_license_filter_header_overrides_directory():
    f = LicenseFilter(LicenseConfig())
    doc = Document(
        text="# SPDX-License-Identifier: GPL-3.0-only\nx = 1\n", source="s", license="MIT"
    )
    assert f.apply(doc) == "gpl-family:GPL-3.0-only"
    ok = Document(text="x = 1\n", source="s", license="MIT")
    assert f.apply(ok) is None and ok.license == "MIT"


def test_redaction_kinds():
    r = Redactor(SecretsConfig())
    key = "AKIA" + "ABCDEFGHIJKLMNOP"
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY-----"
    text = (
        f'aws = "{key}"\nslack = "xoxb-123456789012-abcdefghij"\n'
        f'api_key = "q8Zr2Lm9Xc4Vb7Nn1Pq0"\n{pem}\n'
        'password = "s3cr3t!pass"\ncontact = "bob@realcorp.com"\nsample = "me@example.com"\n'
    )
    out, counts = r.redact(text)
    assert key not in out and "xoxb-" not in out and "q8Zr2" not in out and "MIIEow" not in out
    assert "s3cr3t" not in out and "bob@realcorp.com" not in out
    assert "me@example.com" in out  # documentation domains are kept
    assert counts == {
        "aws_access_key": 1, "slack_token": 1, "generic_key": 1, "private_key": 1,
        "password": 1, "email": 1,
    }  # fmt: skip


def test_redaction_leaves_ordinary_code_alone():
    r = Redactor(SecretsConfig())
    code = (
        'token = "NAME"\nsecret_name = "database_connection_string"\n'
        'password = ""\npassword = getpass.getpass()\n@property\ndef key(self): pass\n'
    )
    out, counts = r.redact(code)
    assert out == code and not counts


def test_blocklist():
    f = BlocklistFilter(BlocklistConfig(domains=["spam.example"], path_patterns=["*/generated/*"]))
    assert f.apply(Document("t", "s", url="https://www.spam.example/a")) == "domain:spam.example"
    assert f.apply(Document("t", "s", url="https://chatgpt.com/share/x")) == "domain:chatgpt.com"
    assert f.apply(Document("t", "s", url="https://notchatgpt.com/x")) is None
    assert f.apply(Document("t", "s", path="pkg/_vendor/x.py")) == "path:vendored"
    assert f.apply(Document("t", "s", path="web/app.min.js")) == "path:minified"
    assert f.apply(Document("t", "s", path="api/msg_pb2.py")) == "path:generated"
    assert f.apply(Document("t", "s", path="a/generated/b.py")) == "path:custom"
    assert f.apply(Document("t", "s", path="src/main.py")) is None


def test_ai_markers():
    f = AIContentFilter(AIContentConfig())
    assert f.apply(Document("As an AI language model, I can't.", "s")).startswith("marker:")
    assert f.apply(Document("# This code was generated by ChatGPT\nx=1", "s")).startswith("marker:")
    assert f.apply(Document("// Generated by GitHub Copilot\n", "s")).startswith("marker:")
    assert f.apply(Document("The model was generated by our own generator script.", "s")) is None


def test_quality_code_and_text():
    q = QualityFilter(QualityConfig())
    good = "def f(x):\n    return x + 1\n\n\nprint(f(2))\n"
    assert q.apply(Document(good, "s", language="python")) is None
    assert (
        q.apply(Document("x = [" + "1, " * 400 + "]\n", "s", language="python"))
        == "max_line_length"
    )
    assert (
        q.apply(Document(("a = '" + "z y " * 40 + "'\n") * 5, "s", language="python"))
        == "mean_line_length"
    )
    assert q.apply(Document("{}[]();;,,..\n" * 20, "s", language="c")) == "alnum_fraction"
    auto = "# This file is auto-generated. DO NOT EDIT.\n" + good
    assert q.apply(Document(auto, "s", language="python")) == "autogenerated"
    blob = "data = '" + "ab12" * 300 + "'\n"
    assert q.apply(Document(blob, "s", language="python")) == "encoded_data"
    prose = " ".join(["The quick brown fox jumps over the lazy dog again."] * 5)
    assert q.apply(Document(prose, "s", language="markdown")) is None
    assert (
        q.apply(Document("too few words here but long enough", "s", language="text"))
        == "too_few_words"
    )
    nums = " ".join(["123 456 789 1011"] * 10)
    assert q.apply(Document(nums, "s", language="text")) in ("alpha_words", "mean_word_length")


def test_quality_keeps_cjk_prose():
    """Chinese and Japanese have no spaces between words: each ideograph/kana is a word (was:
    a paragraph was one word → `too_few_words`); English and Korean count as before."""
    q = QualityFilter(QualityConfig())
    zh = "北京是中华人民共和国的首都，也是全国的政治和文化中心。这座城市有三千多年的历史。\n" * 3
    ja = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。\n" * 3
    ko = "대한민국은 동아시아의 한반도 남부에 위치한 민주공화국이다. 수도는 서울특별시이다. " * 4
    for text in (zh, ja, ko, zh + "Python 3.12 的 API 文档。"):
        assert q.apply(Document(text, "s", language="markdown")) is None, text
    words, n_cjk = text_words("中文，テスト API。")
    assert words == ["中", "文", "テ", "ス", "ト", "API。"] and n_cjk == 5
    assert q.apply(Document("短い。" * 6, "s", language="text")) == "too_few_words"
    assert q.apply(Document("中。，！" * 15, "s", language="text")) == "too_few_words"  # 15 words
    assert text_words("plain words, here.") == (["plain", "words,", "here."], 0)


def test_code_mentioning_license_texts_is_not_that_license():
    """A license detector (or a test) that *quotes* GPL phrases in code keeps its real license;
    the same phrases in the leading comment block or docstring still count."""
    src = (
        '"""A module about licenses."""\n\nimport re\n\nPHRASES = [\n'
        '    ("AGPL-3.0", ["gnu affero general public license", "or (at your option) any later"]),\n]\n'
    )
    assert license_from_header(src, code=True) is None
    header = (
        "#!/usr/bin/env python\n# This program is free software: you can redistribute it under the\n"
        "# terms of the GNU Affero General Public License ... or (at your option) any later version.\n"
        "import os\n"
    )
    assert license_from_header(header, code=True) == "AGPL-3.0-or-later"
    doc = '"""\nThis program is free software under the GNU Affero General Public License,\n' \
          'or (at your option) any later version.\n"""\nimport os\n'  # fmt: skip
    assert license_from_header(doc, code=True) == "AGPL-3.0-or-later"
    tagged = "import os\n# SPDX-License-Identifier: MIT\n"
    assert license_from_header(tagged, code=True) == "MIT"
    # our own detector module is no longer dropped as AGPL
    from pathlib import Path

    import hillclimb.data.license as lic

    assert license_from_header(Path(lic.__file__).read_text(), code=True) is None


# --- license files with several sections: the grant decides, not every license named ---------

_FIXTURES = Path(__file__).parent / "fixtures" / "licenses"


def test_cpython_license_file_is_psf():
    """CPython's LICENSE.txt grants the PSF License; its CNRI section only *mentions* the GPL
    (it used to be read as GPL-2.0-only, which dropped the whole standard library)."""
    text = (_FIXTURES / "cpython-3.11-LICENSE.txt").read_text(encoding="utf-8")
    assert "GNU General Public License" in text  # the mention is really there
    assert license_from_text(text) == "PSF-2.0"


def test_interpreter_license_file_is_psf():
    import sysconfig

    f = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    if not f.is_file():
        pytest.skip(f"no {f} on this machine")
    assert license_from_text(f.read_text(encoding="utf-8", errors="replace")) == "PSF-2.0"


_BSD3 = (
    "Copyright (c) 2019, Acme\nAll rights reserved.\n\n"
    "Redistribution and use in source and binary forms, with or without\n"
    "modification, are permitted provided that the following conditions are met:\n"
    "1. Redistributions of source code must retain the above copyright notice.\n"
    "2. Redistributions in binary form must reproduce the above copyright notice.\n"
    "3. Neither the name of the copyright holder nor the names of its contributors may be\n"
    "   used to endorse or promote products derived from this software.\n"
)
_MIT = (
    "MIT License\n\nCopyright (c) 2021 Acme\n\n"
    "Permission is hereby granted, free of charge, to any person obtaining a copy\n"
    'of this software and associated documentation files (the "Software"), to deal\n'
    "in the Software without restriction.\n"
)
_GPL2_NOTICE = (
    "This program is free software; you can redistribute it and/or modify\n"
    "it under the terms of the GNU General Public License as published by\n"
    "the Free Software Foundation; either version 2 of the License, or\n"
    "(at your option) any later version.\n"
)


@pytest.mark.parametrize(
    ("text", "spdx"),
    [
        # a BSD file whose comment quotes the GPL's name (before and after the grant)
        (
            "# Note: unlike the GNU General Public License version 2, this license does not\n"
            "# require derived works to be released as source.\n" + _BSD3,
            "BSD-3-Clause",
        ),
        (
            _BSD3 + "\n# (The GNU General Public License, version 3, is not used here.)\n",
            "BSD-3-Clause",
        ),
        # an MIT file that mentions Apache
        (
            _MIT + "\nThe file util/vendored.py was adapted from a project under the\n"
            "Apache License, Version 2.0; it was rewritten before inclusion.\n",
            "MIT",
        ),
        # a real GPL notice is still GPL, even with other licenses named after it
        (_GPL2_NOTICE, "GPL-2.0-or-later"),
        (
            _GPL2_NOTICE
            + "\nSee also the GNU Lesser General Public License and the MIT license.\n",
            "GPL-2.0-or-later",
        ),
        # grants in order: the first section is the file's own license
        (_MIT + "\n---\nThird-party notice:\n" + _BSD3, "MIT"),
        # only a mention and nothing granted: the named license counts (headers that name the GPL)
        ("Distributed under the GNU General Public License, version 3.\n", "GPL-3.0-only"),
        # ISC and 0BSD share their first sentence; ISC goes on "provided that ..."
        (
            "Permission to use, copy, modify, and/or distribute this software for any purpose\n"
            "with or without fee is hereby granted, provided that the above copyright notice\n"
            "and this permission notice appear in all copies.\n\n"
            'THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES\n',
            "ISC",
        ),
        (
            "Permission to use, copy, modify, and/or distribute this software for any purpose\n"
            "with or without fee is hereby granted.\n\n"
            'THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES\n',
            "0BSD",
        ),
        # a sentence wrapped over comment lines reads as one sentence
        (
            "# Redistribution and use in source and\n# binary forms, with or without modification\n",
            "BSD-2-Clause",
        ),
    ],
)
def test_multi_section_license_texts(text, spdx):
    assert license_from_text(text) == spdx


@pytest.mark.parametrize(
    ("name", "spdx"),
    [
        # full license texts that name other licenses in their body
        ("GPL-2", "GPL-2.0-only"),  # names the LGPL ("covered by the ... instead")
        ("GPL-3", "GPL-3.0-only"),  # names the LGPL at its end
        ("LGPL-2.1", "LGPL-2.1-only"),  # names the GPL throughout
        ("MPL-2.0", "MPL-2.0"),  # lists the GPLs as "Secondary Licenses"
        ("Apache-2.0", "Apache-2.0"),
    ],
)
def test_system_license_texts(name, spdx):
    f = Path("/usr/share/common-licenses") / name
    if not f.is_file():
        pytest.skip(f"no {f} on this machine")
    assert license_from_text(f.read_text(encoding="utf-8", errors="replace")) == spdx
