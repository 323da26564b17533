"""Terminal tasks (Terminal-Bench style): seeded data files, an instruction, a verifier script.

The agent works with the `run` tool (a sandboxed shell); grading runs the hidden verifier
(`python tests/verify.py`) on the workspace the agent's commands left behind. Each template draws
its data from the task's RNG, computes the expected result in Python at generation time and bakes
it into the verifier, and ships a reference `solution.sh` written with ordinary shell tools (the
generator checks that it passes and that the untouched workspace fails).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

REGIONS = ["north", "south", "east", "west"]
NAMES = ["ada", "bob", "cy", "dee", "eve", "fay", "gus", "hal", "ivy", "jo", "kai", "lu"]
LEVELS = ["INFO", "WARN", "ERROR", "DEBUG"]


@dataclass
class TerminalTask:
    name: str
    instruction: str
    files: dict[str, str]  # the repo
    verify: str  # tests/verify.py
    solution: str  # solution.sh


def _verifier(body: str) -> str:
    return (
        "import json\nimport pathlib\nimport sys\n\n\ndef fail(msg):\n    print('FAIL:', msg)\n"
        "    sys.exit(1)\n\n\n" + body + "\nprint('OK')\n"
    )


def count_rows(rng: random.Random) -> TerminalTask:
    rows = [(rng.choice(REGIONS), rng.randint(1, 500)) for _ in range(rng.randint(15, 40))]
    region = rng.choice(REGIONS)
    csv = "region,amount\n" + "".join(f"{r},{a}\n" for r, a in rows)
    n = sum(1 for r, _ in rows if r == region)
    verify = _verifier(
        "p = pathlib.Path('answer.txt')\nif not p.is_file():\n    fail('answer.txt missing')\n"
        f"if p.read_text().strip() != {str(n)!r}:\n    fail('wrong count: ' + p.read_text().strip())\n"
    )
    return TerminalTask(
        "count_rows",
        f"`data/sales.csv` has a header and one sale per line. Write the number of sales in the "
        f"`{region}` region to a file `answer.txt` in the repository root (just the number).",
        {"data/sales.csv": csv},
        verify,
        f"awk -F, 'NR>1 && $1==\"{region}\"' data/sales.csv | wc -l | tr -d ' ' > answer.txt\n",
    )


def sum_column(rng: random.Random) -> TerminalTask:
    rows = [(rng.choice(REGIONS), rng.randint(1, 999)) for _ in range(rng.randint(10, 30))]
    csv = "region,amount\n" + "".join(f"{r},{a}\n" for r, a in rows)
    total = sum(a for _, a in rows)
    verify = _verifier(
        "p = pathlib.Path('total.txt')\nif not p.is_file():\n    fail('total.txt missing')\n"
        f"if p.read_text().strip() != {str(total)!r}:\n    fail('wrong total')\n"
    )
    return TerminalTask(
        "sum_column",
        "Compute the sum of the `amount` column of `data/sales.csv` (it has a header row) and "
        "write it, as an integer, to `total.txt` in the repository root.",
        {"data/sales.csv": csv},
        verify,
        "awk -F, 'NR>1 {s += $2} END {print s}' data/sales.csv > total.txt\n",
    )


def sort_unique(rng: random.Random) -> TerminalTask:
    names = [rng.choice(NAMES) for _ in range(rng.randint(12, 30))]
    expected = sorted(set(names))
    verify = _verifier(
        "p = pathlib.Path('sorted_names.txt')\nif not p.is_file():\n    fail('sorted_names.txt missing')\n"
        f"if p.read_text().split() != {expected!r}:\n    fail('wrong content')\n"
        f"if pathlib.Path('names.txt').read_text().split() != {names!r}:\n    fail('names.txt was modified')\n"
    )
    return TerminalTask(
        "sort_unique",
        "`names.txt` has one name per line, with repeats. Write the distinct names, sorted "
        "alphabetically, one per line, to `sorted_names.txt`. Leave `names.txt` unchanged.",
        {"names.txt": "".join(n + "\n" for n in names)},
        verify,
        "LC_ALL=C sort -u names.txt > sorted_names.txt\n",
    )


def rename_ext(rng: random.Random) -> TerminalTask:
    k = rng.randint(2, 5)
    stems = rng.sample(NAMES, k)
    files = {f"notes/{s}.txt": f"notes about {s}: {rng.randint(0, 10**6)}\n" for s in stems}
    files["notes/keep.rst"] = "not a txt file\n"
    expect = {f"notes/{s}.md": files[f"notes/{s}.txt"] for s in stems}
    verify = _verifier(
        f"expect = {json.dumps(expect)}\n"
        "if list(pathlib.Path('notes').glob('*.txt')):\n    fail('.txt files remain')\n"
        "for path, text in expect.items():\n    p = pathlib.Path(path)\n"
        "    if not p.is_file() or p.read_text() != text:\n        fail('missing or changed ' + path)\n"
        "if pathlib.Path('notes/keep.rst').read_text() != 'not a txt file\\n':\n    fail('keep.rst changed')\n"
    )
    return TerminalTask(
        "rename_ext",
        "Rename every `.txt` file in `notes/` to the same name with a `.md` extension, keeping "
        "the contents. Do not touch other files.",
        files,
        verify,
        'for f in notes/*.txt; do mv "$f" "${f%.txt}.md"; done\n',
    )


def grep_errors(rng: random.Random) -> TerminalTask:
    lines = [f"2024-05-{rng.randint(1, 28):02d} {rng.choice(LEVELS)} worker-{rng.randint(1, 9)} "
             f"event {rng.randint(1000, 9999)}" for _ in range(rng.randint(20, 40))]  # fmt: skip
    if not any(" ERROR " in ln for ln in lines):
        lines[rng.randrange(len(lines))] = "2024-05-01 ERROR worker-1 event 1234"
    expected = [ln for ln in lines if " ERROR " in ln]
    verify = _verifier(
        "p = pathlib.Path('errors.log')\nif not p.is_file():\n    fail('errors.log missing')\n"
        f"if p.read_text().splitlines() != {expected!r}:\n    fail('wrong lines')\n"
    )
    return TerminalTask(
        "grep_errors",
        "Copy every line of `logs/app.log` whose level is `ERROR` into `errors.log` (same order, "
        "nothing else).",
        {"logs/app.log": "\n".join(lines) + "\n"},
        verify,
        "grep ' ERROR ' logs/app.log > errors.log\n",
    )


def json_value(rng: random.Random) -> TerminalTask:
    port = rng.randint(1024, 65000)
    host = rng.choice(["alpha", "beta", "gamma", "delta"]) + ".internal"
    cfg = {"service": {"name": rng.choice(NAMES), "listen": {"host": host, "port": port}},
           "debug": rng.choice([True, False])}  # fmt: skip
    verify = _verifier(
        "p = pathlib.Path('port.txt')\nif not p.is_file():\n    fail('port.txt missing')\n"
        f"if p.read_text().strip() != {str(port)!r}:\n    fail('wrong port')\n"
    )
    return TerminalTask(
        "json_value",
        "Write the port the service listens on (from `config/app.json`, key "
        "`service.listen.port`) to `port.txt`.",
        {"config/app.json": json.dumps(cfg, indent=2) + "\n"},
        verify,
        "python -c \"import json; print(json.load(open('config/app.json'))['service']['listen']['port'])\" > port.txt\n",
    )


TEMPLATES = [count_rows, sum_column, sort_unique, rename_ext, grep_errors, json_value]
