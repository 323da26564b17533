"""The grader's trusted result channel: per-test outcomes that code under test cannot forge.

Why not read the test runner's output: the code being graded writes to the same stdout, so a
patch can print `PASSED tests/x.py::test_y` (or TAP `ok 1 - name`) and exit 0. Instead the grader
puts reporters it controls into the run and accepts only records signed with a key that exists
nowhere the code under test can read by ordinary means:

- `open_channel(ws)` creates `<ws>/.hillclimb-grader-<random>/` *after* the patch is applied (so a
  patch cannot have put anything there) holding a fresh 256-bit key (`key`), a copy of
  `pytest_reporter.py` under a random module name, its `grader.json`, and `reporter.mjs` (node).
- `Channel.instrument(command, env)`: pytest is reached through the environment, whatever spells
  it (`pytest`, `python -m pytest`, `python3 -m pytest`, `pytest.main()`): `PYTEST_ADDOPTS` gets
  `-p <module>`, `PYTHONPATH` holds only the grader directory and `PYTHONSAFEPATH=1` keeps the
  workspace off sys.path until the plugin runs (it then restores all three, and `python -m`'s
  sys.path[0], for the tests). Every `node [options] --test` invocation in the command gets
  `--test-reporter=<reporter.mjs>` (plus `tap` to stdout for people, unless the command names its
  own reporters); the harness's default JavaScript command (a per-file loop, only there because
  node 20's TAP does not name files) becomes one `node --test tests/*.test.js` run (files still
  one at a time), since the reporter sees each test's file.
- The first runner that starts claims the key (rename + read + delete) before any test code
  exists in its process (pytest: `-p` plugins load before conftests and test modules; node: the
  reporter loads in the parent before test files are spawned in child processes). Each record is
  one JSON line `{"p": payload, "m": hmac_sha256(key, payload)}` appended to `records.jsonl`.
- `Channel.read()` keeps only lines whose MAC verifies (constant-time compare). Lines that do not
  verify are counted (`rejected`), never used. Unsigned `nokey` / `tampered` notes only explain a
  missing result in the grade's message.

So: printed text, fake junit/records files, early exits and unknown runners yield no accepted
records (tests missing = failed). A command that runs the test runner twice gets records only from
the first run (the key is one-shot); anything the command runs *before* the runner (a setup
script, `node --require ./x.js`) could read the key, so a test command must start the runner
first. What remains open is documented in grading.py's threat model.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hillclimb.harness import pytest_reporter
from hillclimb.harness.task import JS_TEST_COMMAND
from hillclimb.harness.testparse import SEVERITY

CHANNEL_PREFIX = ".hillclimb-grader-"
MAX_RECORD_BYTES = 32 << 20  # an honest run writes kilobytes; more is noise we do not read
# One node run for every file (the reporter names each test's file). Files run one at a time, as
# in the per-file loop: node's default (one child per CPU) would exceed the sandbox's process
# limit on a big machine. `--test-concurrency` exists from node 20.10; older nodes skip it.
SINGLE_RUN_JS_COMMAND = (
    "c=; node --test-concurrency=1 -e 0 2>/dev/null && c=--test-concurrency=1; "
    "node --test $c tests/*.test.js"
)

# node:test reporter (ES module). Loaded by the `node --test` parent before it spawns the test
# files' child processes; test code never runs in this process. Ids match testparse's TAP ids:
# `tests/x.test.js::suite::name`; a file that fails to load (node names that test by the file's
# absolute path) is recorded under the file's own id. Outcomes as parse_tap_output: fail+todo ->
# xfailed, pass+skip -> skipped, pass+todo -> passed.
NODE_REPORTER = r"""
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
function claimKey() {
  const keyPath = path.join(dir, 'key');
  const mine = `${keyPath}.${process.pid}`;
  try { fs.renameSync(keyPath, mine); } catch { return null; }
  try { return fs.readFileSync(mine, 'ascii').trim() || null; } catch { return null; }
  finally { try { fs.unlinkSync(mine); } catch {} }
}
const key = claimKey();
const fd = fs.openSync(path.join(dir, 'records.jsonl'), 'a', 0o600);
function write(obj) { try { fs.writeSync(fd, JSON.stringify(obj) + '\n'); } catch {} }
function emit(payload) {
  if (key === null) return;
  const p = JSON.stringify(payload);
  write({ p, m: crypto.createHmac('sha256', key).update(p).digest('hex') });
}
if (key === null) write({ p: JSON.stringify({ k: 'nokey', runner: 'node', pid: process.pid }), m: '' });
emit({ k: 'start', runner: 'node', pid: process.pid });

function rel(file) {
  if (!file) return '';
  return path.relative(process.cwd(), file).split(path.sep).join('/');
}

// The test suite's files as the grader installed them (`Channel.watch_tests`), checked now,
// before node starts any test file; a file that changes later (a test file rewritten on disk by
// code an earlier file loaded) fails its tests, or all tests if it is not a test file.
const root = path.dirname(dir);
let pins = {};
try { pins = JSON.parse(fs.readFileSync(path.join(dir, 'grader.json'), 'utf8')).js_tests || {}; } catch {}
function stamp(file) {
  try {
    const st = fs.lstatSync(path.join(root, file), { bigint: true });
    return `${st.ino}:${st.ctimeNs}:${st.size}`;
  } catch { return 'gone'; }
}
function digest(file) {
  try { return crypto.createHash('sha256').update(fs.readFileSync(path.join(root, file))).digest('hex'); }
  catch { return ''; }
}
const stamps = new Map();
for (const [file, sha] of Object.entries(pins)) {
  const before = stamp(file);
  stamps.set(file, digest(file) === sha && stamp(file) === before ? before : 'changed');
}
function changedFiles() {
  return [...stamps].filter(([file, st]) => st === 'changed' || stamp(file) !== st).map(([f]) => f);
}

export default async function* hillclimbReporter(source) {
  const stacks = new Map();
  const results = [];
  for await (const event of source) {
    if (key === null) continue;
    const d = event.data || {};
    const file = d.file || '';
    if (event.type === 'test:start') {
      const stack = stacks.get(file) || [];
      stack.length = d.nesting || 0;
      stack.push(String(d.name));
      stacks.set(file, stack);
    } else if (event.type === 'test:pass' || event.type === 'test:fail') {
      const name = String(d.name);
      const depth = d.nesting || 0;
      let outcome;
      if (event.type === 'test:fail') outcome = d.todo ? 'xfailed' : 'failed';
      else outcome = d.skip ? 'skipped' : 'passed';
      let id;
      if (file && depth === 0 && name === file) {
        id = rel(file);  // the file itself failed to load
      } else {
        const parents = (stacks.get(file) || []).slice(0, depth).filter((x) => x !== undefined);
        id = [rel(file), ...parents, name].filter((x) => x !== '').join('::');
      }
      results.push([id, outcome]);
    }
  }
  // reported only now, after the check: a run stopped before its end reports no test
  const changed = changedFiles();
  const bad = new Set(changed.map((f) => path.join(root, f)));
  const fileOf = (id) => path.resolve(id.split('::')[0]);
  const all = [...bad].some((f) => !results.some(([id]) => fileOf(id) === f));
  for (const [id, outcome] of results) {
    const failed = all || bad.has(fileOf(id));
    emit({ k: 'test', id, o: failed ? 'failed' : outcome });
  }
  emit({ k: 'end', runner: 'node', changed });
}
"""

# node options that take their value as the next word (so the option scan does not stop there).
_NODE_VALUE_OPTIONS = frozenset(
    {
        "--test-reporter", "--test-reporter-destination", "--test-name-pattern",
        "--test-skip-pattern", "--test-concurrency", "--test-timeout", "--test-shard", "-r",
        "--require", "--import", "--loader", "--experimental-loader", "-C", "--conditions",
        "--input-type", "--env-file", "--stack-size", "--max-old-space-size", "--title",
    }
)  # fmt: skip
_NODE_WORD = re.compile(r"(?<![^\s;&|(])(?:\S*/)?node(?=\s)")


def instrument_node_command(command: str, reporter: str) -> tuple[str, int]:
    """`command` with `reporter` added to every `node [options] --test` invocation; the count."""
    out: list[str] = []
    pos = 0
    count = 0
    for m in _NODE_WORD.finditer(command):
        if m.start() < pos:
            continue
        reporters = destinations = 0
        test_end: int | None = None
        words = re.finditer(r"\S+", command[m.end() :])
        expect_value = False
        for w in words:
            tok = w.group(0)
            if expect_value:
                expect_value = False
                continue
            if not tok.startswith("-"):
                break
            name = tok.split("=", 1)[0]
            if name == "--test-reporter":
                reporters += 1
            elif name == "--test-reporter-destination":
                destinations += 1
            if tok == "--test":
                test_end = m.end() + w.end()
            if "=" not in tok and tok in _NODE_VALUE_OPTIONS:
                expect_value = True
        if test_end is None:
            continue
        added = [
            f"--test-reporter={shlex.quote(reporter)}",
            "--test-reporter-destination=/dev/null",
        ]
        if reporters == 0:
            added += ["--test-reporter=tap", "--test-reporter-destination=stdout"]
        elif destinations == 0:
            added += ["--test-reporter-destination=stdout"] * reporters
        out.append(command[pos:test_end] + " " + " ".join(added))
        pos = test_end
        count += 1
    out.append(command[pos:])
    return "".join(out), count


def _same_command(a: str, b: str) -> bool:
    return a.split() == b.split()


@dataclass
class TrustedReport:
    """What the signed records say. `outcomes` is the only input to per-test decisions."""

    outcomes: dict[str, str] = field(default_factory=dict)
    runners: list[str] = field(default_factory=list)  # one entry per runner that held the key
    finished: int = 0  # runners that reached their end record
    exit_statuses: list[int] = field(default_factory=list)  # pytest sessions' exit statuses
    conftests: dict[str, str] = field(default_factory=dict)  # realpath -> sha256, loaded by pytest
    rejected: int = 0  # lines whose signature did not verify (forgeries or damage)
    notes: list[dict[str, Any]] = field(default_factory=list)  # unsigned nokey/tampered notes
    changed_tests: list[str] = field(default_factory=list)  # test files changed by the run
    # per watched `called_from` check (`Channel.watch_calls`): [caller ran, helper called from
    # it] during the test calls; None: no pytest end record said
    calls: list[list[bool]] | None = None

    @property
    def started(self) -> int:
        return len(self.runners)

    def summary(self, instrumented_node: int) -> dict[str, Any]:
        return {
            "runners": self.runners, "finished": self.finished, "records": len(self.outcomes),
            "rejected_lines": self.rejected, "exit_statuses": self.exit_statuses,
            "node_invocations_instrumented": instrumented_node,
            "notes": [n.get("k") for n in self.notes], "changed_tests": self.changed_tests,
        }  # fmt: skip

    def explain_missing(self) -> str:
        """Why a runner may have reported nothing (from unsigned notes: hints, not evidence)."""
        kinds = {n.get("k") for n in self.notes}
        why = []
        if "tampered" in kinds:
            mods = sorted({m for n in self.notes for m in n.get("modules", [])})[:5]
            why.append(f"workspace modules were imported before the reporter ({', '.join(mods)})")
        if "nokey" in kinds:
            why.append("a test runner started after the key was used: only the first run counts")
        return "; ".join(why)


@dataclass
class Channel:
    directory: Path
    workspace: Path
    key: str
    module: str  # the pytest plugin's module name
    reporter: Path  # node reporter
    restore_env: dict[str, str | None]

    def instrument(self, command: str, env: dict[str, str]) -> tuple[str, dict[str, str], int]:
        """(command, env, number of node invocations given the reporter) for a trusted run."""
        new_env = dict(env)
        addopts = env.get("PYTEST_ADDOPTS", "").strip()
        new_env["PYTEST_ADDOPTS"] = f"{addopts} -p {self.module}".strip()
        new_env["PYTHONPATH"] = str(self.directory)
        new_env["PYTHONSAFEPATH"] = env.get("PYTHONSAFEPATH") or "1"
        if _same_command(command, JS_TEST_COMMAND):
            command = SINGLE_RUN_JS_COMMAND
        command, n_node = instrument_node_command(command, str(self.reporter))
        return command, new_env, n_node

    def pin_tests(self, files: list[Path]) -> None:
        """Tell the pytest reporter the test files as the grader installed them (path relative
        to the workspace -> sha256 of their bytes; call after the hidden tests are rewritten).
        It compiles them before any workspace code runs and fails a test whose collected body
        is not what its file defines (`pytest_reporter._pinned_mismatch`): code under test can
        swap a test before pytest collects it, under the test file's own name."""
        self._pin("tests", files)

    def watch_tests(self, files: list[Path]) -> None:
        """Tell the node reporter the installed test suite's files (path relative to the
        workspace -> sha256 of their bytes, any language: helpers and data too). It checks them
        when it loads, before node starts any test file, notes each one's inode, change time
        and size, and at the end of the run fails the tests of a file that changed meanwhile
        (all tests, when the file is not a test file: a helper they import); it reports no test
        before that check (`NODE_REPORTER`).

        Why: node runs one test file per child process, in order, so a module the first file
        loads can rewrite a later file on disk before node starts it (its tests then pass with
        the bug in place) and the rewritten file can write the original back as it loads. Any
        write, rename or metadata change moves the inode's change time, which no process can
        set back; the grader cannot look itself, as the sandbox hands the workspace to its own
        user and back around the run (a chown, which moves every change time)."""
        self._pin("js_tests", files)

    def watch_calls(self, calls: list[dict[str, str]]) -> None:
        """Tell the pytest reporter the refactor checks to watch at run time: each
        {"module", "caller", "name"} of a `called_from` check. Its end record then says, per
        entry, whether the caller ran during the test calls and whether the helper was called
        from it (`pytest_reporter._CallWatch`; the grader's `_runtime_calls` reads it)."""
        config_path = self.directory / pytest_reporter.CONFIG_NAME
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["calls"] = calls
        config_path.write_text(json.dumps(config), encoding="utf-8")

    def _pin(self, config_key: str, files: list[Path]) -> None:
        """Writes {path relative to the workspace: sha256 of its bytes} of the plain files among
        `files` under `config_key` of the reporters' config."""
        config_path = self.directory / pytest_reporter.CONFIG_NAME
        config = json.loads(config_path.read_text(encoding="utf-8"))
        pinned = {}
        for f in files:
            if f.is_file() and not f.is_symlink():
                rel = f.resolve().relative_to(self.workspace).as_posix()
                pinned[rel] = hashlib.sha256(f.read_bytes()).hexdigest()
        config[config_key] = pinned
        config_path.write_text(json.dumps(config), encoding="utf-8")

    def read(self) -> TrustedReport:
        rep = TrustedReport()
        path = self.directory / pytest_reporter.RECORDS_NAME
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_RECORD_BYTES)
        except OSError:
            return rep
        secret = self.key.encode("ascii")
        for raw in data.splitlines():
            try:
                line = json.loads(raw)
                text, mac = line["p"], line["m"]
                payload = json.loads(text)
            except (ValueError, KeyError, TypeError):
                rep.rejected += 1
                continue
            if (
                not isinstance(text, str)
                or not isinstance(mac, str)
                or not isinstance(payload, dict)
            ):
                rep.rejected += 1
                continue
            want = hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, mac):
                if mac == "" and payload.get("k") in ("nokey", "tampered"):
                    rep.notes.append(payload)
                else:
                    rep.rejected += 1
                continue
            _apply(rep, payload)
        return rep


def _apply(rep: TrustedReport, payload: dict[str, Any]) -> None:
    kind = payload.get("k")
    if kind == "test":
        tid, got = payload.get("id"), payload.get("o")
        if isinstance(tid, str) and tid and got in SEVERITY:
            prev = rep.outcomes.get(tid)
            if prev is None or SEVERITY[got] > SEVERITY[prev]:
                rep.outcomes[tid] = got
    elif kind == "start":
        rep.runners.append(str(payload.get("runner")))
    elif kind == "end":
        rep.finished += 1
        if isinstance(payload.get("exitstatus"), int):
            rep.exit_statuses.append(payload["exitstatus"])
        calls = payload.get("calls")
        if isinstance(calls, list) and all(
            isinstance(c, list) and len(c) == 2 and all(isinstance(b, bool) for b in c)
            for c in calls
        ):
            rep.calls = [list(c) for c in calls]
        changed = payload.get("changed")
        if isinstance(changed, list):
            rep.changed_tests += [str(c) for c in changed]
        for item in payload.get("conftests") or []:
            if isinstance(item, list) and len(item) == 2:
                rep.conftests[str(item[0])] = str(item[1])


def open_channel(ws: Path, task_env: dict[str, str]) -> Channel:
    """Create the grader directory in `ws` (call after the patch and hidden tests are in place)."""
    token = secrets.token_hex(8)
    directory = ws / f"{CHANNEL_PREFIX}{token}"
    directory.mkdir()  # fresh: never an existing (agent-made) directory
    module = f"hillclimb_grader_{token}"
    source = Path(pytest_reporter.__file__).read_text(encoding="utf-8")
    (directory / f"{module}.py").write_text(source, encoding="utf-8")
    restore = {name: task_env.get(name) for name in pytest_reporter.PROTECTED_ENV}
    pythonpath = [p for p in (task_env.get("PYTHONPATH") or "").split(os.pathsep) if p]
    config = {
        "env": restore,
        "pythonpath": pythonpath,
        "safe_path_added": not task_env.get("PYTHONSAFEPATH"),
    }
    (directory / pytest_reporter.CONFIG_NAME).write_text(json.dumps(config), encoding="utf-8")
    reporter = directory / "reporter.mjs"
    reporter.write_text(NODE_REPORTER, encoding="utf-8")
    key = secrets.token_hex(32)
    (directory / pytest_reporter.KEY_NAME).write_text(key, encoding="ascii")
    return Channel(directory.resolve(), ws.resolve(), key, module, reporter.resolve(), restore)
