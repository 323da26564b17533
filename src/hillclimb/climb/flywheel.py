"""The climb's flywheel source: telemetry exports become SFT examples, with their provenance.

A model in production produces the next climb's training signal: harness episodes that resolved
their task, and answers API users accepted (`hillclimb telemetry export --served ...`,
docs/areas/server.md). A recipe names export directories per model in `[sft_data]`:

    [sft_data.code-flash]
    flywheel = ["exports/2026-12-05"]    # `telemetry export` output directories

and the sft-data stage adds their `sft.jsonl` records to that model's SFT file. What is admitted:
harness episodes (our own runs on our own tasks) on *training* tasks (the export keeps each
task's projects / template / mutation site in `meta.task`; an episode on a held-out task, or one
whose task is unknown, is refused: `harness.taskgen.common.heldout_reason`) and API answers
whose record says the account consented (`meta.consent` true — the export only writes those,
this re-checks). Consent is judged again *now*, at the climb, against the server's flywheel
database the export names (`export.json: served_db`): an account that revoked consent after the
export, a verdict changed to a rejection, or a request the database does not hold for that
account keeps the record out (`consent_revoked`); an export that names a database which is gone
(deleted to purge users' data) or none at all cannot vouch for consent (`consent_unverifiable`).
Nor can an export.json that lacks the `served_db` field (written by hand, or by a hillclimb
before session 23) or is not a JSON object: its API records are refused `consent_unverifiable`,
with the reason in the stage record — unless export.json says who vouches for them instead,
`"consent_attested_by": "<who, and on what grounds>"` (hand-made exports, tests), which the stage
record repeats (`consent_attested`). An attestation never overrides a `served_db` that names a
database. And
only the answer the server gave is trained on: an API chat whose history holds an assistant
turn — text the *client* wrote, which SFT would learn as the model's own — is refused
(`client_written_turns`). Admitted records are then decontaminated against the data build's
probe index (`probes.npz` beside its documents): a user who ran a benchmark through the
endpoint and accepted the answers must not put that benchmark into the next climb's SFT data —
and, always, against the held-out harness projects' code (`_heldout_harness_check`), which
those probes do not hold. Every admitted record keeps its `meta` (episode or request id,
account, consent) and gets `kind = "flywheel"`, so the stage record and the report
count how many training examples came from the flywheel and from where. The export's RL prompts
(unresolved / rejected tasks) are counted here; `hillclimb rl --harness EXPORT_DIR` trains on
them, and so does the climb's rl-harness stage for a model whose `[rl_harness.<model>]` names the
export (`flywheel = ["exports/DIR"]`: `flywheel_rl_tasks`, with the same held-out and
decontamination rules, task by task).

Each training event is admitted once: exports overlap (every `telemetry export` writes all the
episodes the database holds, so today's export repeats yesterday's) and a recipe may name one
twice, so a record whose episode (harness) or request (api) was already admitted — or, without
such an id, whose training content was — is refused as `duplicate`. A record the SFT encoder
could not read (messages that are not a list of messages, a `fim` without its three strings) is
refused as `malformed` here, with its line, rather than failing the SFT run that reads the
mixture later.

The stage's cache key includes a fingerprint of each export's files, so a new export re-runs
SFT data and everything after it, and an unchanged one does not.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from hillclimb.data.decontam_records import record_text
from hillclimb.errors import ConfigError, HillclimbError


def check_exports(paths: list[str], where: str, *, read: bool = False) -> None:
    """Clear errors for export directories that are not `telemetry export` outputs; with
    `read`, also for a line of their files that is not UTF-8 or not JSON. Why `read` at recipe
    load: the sft-data stage reads the export after the data build and every pre-training, and
    a damaged line stopped the climb there; what a record holds (consent, task, shape) is
    judged there, record by record, and counted."""
    for p in paths:
        d = Path(p)
        if not (d / "export.json").is_file() or not (d / "sft.jsonl").is_file():
            raise ConfigError(
                f"{where}: flywheel export {p} is not a `hillclimb telemetry export` output "
                "(needs export.json and sft.jsonl)"
            )
        if read:
            try:
                _records(d / "sft.jsonl")
                if (d / "rl_prompts.jsonl").is_file():
                    _lines(d / "rl_prompts.jsonl")
            except ConfigError as exc:
                raise ConfigError(f"{where}: flywheel export {exc}") from None


def fingerprint(paths: list[str]) -> str:
    """sha256 over the exports' sft.jsonl and rl_prompts.jsonl contents (the stage cache key)."""
    h = hashlib.sha256()
    for p in paths:
        for name in ("sft.jsonl", "rl_prompts.jsonl"):
            f = Path(p) / name
            h.update(name.encode())
            h.update(f.read_bytes() if f.is_file() else b"-")
    return h.hexdigest()[:16]


def _refusal(rec: Any, source: Any) -> str | None:
    """Why an export record may not be trained on, or None."""
    from hillclimb.harness.taskgen.common import heldout_reason

    meta = rec.get("meta") if isinstance(rec, dict) else None
    if source == "harness":
        task = meta.get("task") if isinstance(meta, dict) else None
        if not isinstance(task, dict):
            return "task_unknown"  # an export written before task metadata was kept, or edited
        return "evaluation_only_task" if heldout_reason(task) else None
    if source == "api" and meta.get("consent") is True:
        return None
    return "no_consent"


def _client_written(rec: dict[str, Any]) -> str | None:
    """`client_written_turns` when an API chat record's history holds an assistant turn (text
    the client sent, which SFT would learn as the model's own: `telemetry.client_written_turns`),
    else None. The export leaves such records out; this catches older or edited exports."""
    from hillclimb.harness.telemetry import client_written_turns

    return "client_written_turns" if client_written_turns(rec) else None


def _source(rec: Any) -> Any:
    """A record's `meta.source` (`harness` | `api`), or None."""
    meta = rec.get("meta") if isinstance(rec, dict) else None
    return meta.get("source") if isinstance(meta, dict) else None


def _consented(rec: Any, consent: _ServedConsent) -> str | None:
    """Why a record may not be trained on for what it is (`_refusal`) or for its account's
    consent now (`_ServedConsent.refusal`), or None."""
    meta = rec.get("meta") if isinstance(rec, dict) else None
    source = meta.get("source") if isinstance(meta, dict) else None
    why = _refusal(rec, source)
    if why is None and source == "api":
        why = consent.refusal(meta)  # type: ignore[arg-type]
    return why


def _summary(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(export.json parsed, "") or (None, why it cannot say which database vouches for
    consent). A damaged export.json used to mean "written by hand": consent taken at its word."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{path} cannot be read as JSON ({exc}); it names no served database"
    if not isinstance(summary, dict):
        return None, f"{path} is not a JSON object; it names no served database"
    return summary, ""


def _rules_over(con: sqlite3.Connection) -> Any:
    """The server's consent and ownership rules (`serve.flywheel.ConsentRules`) over a
    read-only connection."""
    from hillclimb.serve.flywheel import ConsentRules

    class _Rules(ConsentRules):
        def query(self, sql: str, params: tuple = ()) -> list[tuple]:
            return con.execute(sql, params).fetchall()

    return _Rules()


class _ServedConsent:
    """Consent of an export's API records, judged now against the served database it names.

    Why at the climb and not only at export: an export directory is kept and named by recipes
    for later climbs, so a user who opts out (`keys consent --off`) or rejects an answer after
    the export would otherwise still be trained on by every climb that reads it. The database
    is opened read-only; the checks are those of `FlywheelStore.training_records` (the request
    was served to this account with consent, the account consents now, its latest verdict on
    the request accepts it)."""

    def __init__(self, export_dir: Path) -> None:
        self.con: sqlite3.Connection | None = None
        self.unverifiable: str | None = None
        self.trust_export = False
        self.attested_by: str | None = None
        self.keyed = False
        summary, problem = _summary(export_dir / "export.json")
        if summary is None:
            self.unverifiable = problem
            return
        db = summary.get("served_db")
        if db is None:  # absent, or null: `telemetry export` without `--served`
            self._without_database(summary, "served_db" in summary)
            return
        if not isinstance(db, str) or not db:
            self.unverifiable = f"export.json's served_db is not a path: {db!r}"
            return
        path = Path(db)
        if not path.is_absolute():  # older exports wrote the path as given on the command line
            path = (export_dir / path) if (export_dir / path).is_file() else path
        try:
            if not path.is_file():
                raise sqlite3.OperationalError(f"{db} does not exist")
            self.con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            self.con.execute("SELECT 1 FROM served, consent, feedback LIMIT 1").fetchall()
            cols = {r[1] for r in self.con.execute("PRAGMA table_info(served)")}
            self.keyed = "key_id" in cols
        except (OSError, sqlite3.Error) as exc:
            self.close()
            self.unverifiable = f"served database {db}: {exc}"

    def _without_database(self, summary: dict[str, Any], named: bool) -> None:
        """No served database to re-check against: the export's `meta.consent` counts only when
        export.json names who vouches for it (`consent_attested_by`). Why not take an export
        without `served_db` at its word, as before: an export written by a hillclimb older than
        the field, or an export directory copied away from its server, holds API records whose
        consent nothing here can confirm, and they were trained on silently."""
        by = summary.get("consent_attested_by")
        if isinstance(by, str) and by.strip():
            self.trust_export, self.attested_by = True, by.strip()
        elif named:
            self.unverifiable = "the export was written without a served database"
        else:
            self.unverifiable = (
                "export.json names no served database (`served_db`): written by hand or by a "
                "hillclimb before session 23, it holds none of the server's consent verdicts; "
                "re-export with `hillclimb telemetry export --served STATE_DIR/flywheel.sqlite`, "
                'or add "consent_attested_by": "<who, and on what grounds>" to export.json'
            )

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    def refusal(self, meta: dict[str, Any]) -> str | None:
        """Why this API record's consent does not hold now, or None."""
        if self.trust_export:
            return None
        if self.con is None:
            return "consent_unverifiable"
        account, rid = meta.get("account"), meta.get("request_id")
        if not (isinstance(account, str) and account and isinstance(rid, str) and rid):
            return "consent_revoked"  # no key to hold an opt-in: nothing can vouch for it
        rules = _rules_over(self.con)
        # by key where the file records one (schema v2), as the server judges; a v1 file that
        # no server has migrated yet is judged by name
        key = "key_id" if self.keyed else "NULL"
        served = rules.query(
            f"SELECT account, consent, {key} FROM served WHERE request_id=?", (rid,)
        )
        verdict = rules.query(
            f"SELECT accepted, account, {key} FROM feedback WHERE request_id=?"
            " ORDER BY id DESC LIMIT 1",
            (rid,),
        )
        ok = bool(
            served
            and served[0][0] == account
            and served[0][1] == 1
            and rules.consent(account, key_id=served[0][2])
            and verdict
            and verdict[0][0] == 1
            and rules._owns(account, served[0][2], verdict[0][1], verdict[0][2])
        )
        return None if ok else "consent_revoked"


FIM_KEYS = ("prefix", "middle", "suffix")


def _malformed(rec: dict[str, Any], where: str) -> str | None:
    """Why the SFT encoder (`train.sft_data.encode_record`) could not train on `rec`, or None."""
    from hillclimb.train.sft_data import normalize_chat

    if "messages" in rec:
        try:
            normalize_chat(rec, where)  # also refuses a chat with no assistant turn to learn
        except HillclimbError as exc:
            return str(exc)
        return None
    if "fim" in rec:
        f = rec["fim"]
        ok = isinstance(f, dict) and all(isinstance(f.get(k), str) for k in FIM_KEYS)
        return None if ok else f"{where}: fim must hold the strings {list(FIM_KEYS)}"
    if "text" in rec:
        return None if isinstance(rec["text"], str) else f"{where}: text must be a string"
    return f"{where}: none of messages / fim / text"


@functools.cache
def _heldout_harness_check() -> Any:
    """A decontaminator whose probes are the held-out harness projects' files (`taskgen` projects
    marked `.hillclimb-heldout`), less every line that also occurs in a training project (shared
    boilerplate such as `const test = require('node:test')` is no evidence).

    Why here and not only in the data build's probes: those hold problems and suites, not the
    harness's held-out code, which the data build keeps out of pre-training by the marker. A
    consenting API user who ran held-out harness tasks through the endpoint and accepted the
    answers would otherwise put the harness suite's unseen projects into SFT. Always on: a
    dozen small files, built in well under a second."""
    from hillclimb.data.config import DecontaminateConfig
    from hillclimb.data.decontam import Decontaminator, Probe, ProbeIndex
    from hillclimb.harness.taskgen.common import HELDOUT_PROJECTS
    from hillclimb.harness.taskgen.corpus import JS_PROJECTS, PROJECTS

    projects = {**PROJECTS, **JS_PROJECTS}
    shared = {
        line.strip()
        for name, files in projects.items()
        if name not in HELDOUT_PROJECTS
        for text in files.values()
        for line in text.splitlines()
    }
    probes = [
        Probe(
            f"harness-heldout/{name}/{path}",
            "harness:heldout",
            "\n".join(ln for ln in text.splitlines() if ln.strip() not in shared),
        )
        for name, files in sorted(projects.items())
        if name in HELDOUT_PROJECTS
        for path, text in sorted(files.items())
    ]
    cfg = DecontaminateConfig()
    return Decontaminator(ProbeIndex.build(probes, cfg.ngram, cfg.min_tokens), cfg, set())


def _event_key(rec: dict[str, Any], source: Any) -> str:
    """What makes two records the same training event: the episode (ids carry a uuid) or the
    account's request (a client may choose its request ids) they came from, else (a record
    without one) their training content."""
    meta = rec.get("meta") or {}
    rid = meta.get("episode_id") if source == "harness" else meta.get("request_id")
    if isinstance(rid, str) and rid:
        return json.dumps([source, meta.get("account") if source == "api" else None, rid])
    body = json.dumps({k: v for k, v in rec.items() if k != "meta"}, sort_keys=True)
    return "content:" + hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the file's non-blank lines, split at newlines only; a line that is
    not UTF-8 is a ConfigError naming it. Why not `str.splitlines`: it also breaks at U+2028,
    U+2029, U+0085 and a few control characters, which JSON keeps raw inside strings — and
    `telemetry export` writes API answers with `ensure_ascii=False`, so an answer holding one
    was two halves that were "not JSON", failing the climb after pre-training."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the export ({exc})") from None
    out = []
    for n, line in enumerate(raw.split(b"\n"), 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}:{n}: not UTF-8 text ({exc}); is it a telemetry export?"
            ) from None
        if text.strip():
            out.append((n, text))
    return out


def _records(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed JSON) of an export file's lines; ConfigError naming a line that is
    not JSON."""
    out = []
    for n, line in _lines(path):
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}: not JSON ({exc})") from None
    return out


def flywheel_records(
    paths: list[str], probes: Any | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(SFT records admitted from the exports, counts and provenance for the stage record).

    `probes` (the data build's `ProbeIndex`, `probes.npz` beside its documents) drops records
    that contain an evaluation item — an API user who ran a benchmark through the endpoint and
    accepted the answers — exactly as the data build drops such documents."""
    check_exports(paths, "[sft_data] flywheel")
    records: list[dict[str, Any]] = []
    counts: dict[str, Any] = {
        "exports": [],
        "sft_examples": 0,
        "by_source": {},
        "refused_no_consent": 0,
        "refused": {},
        "decontaminated": 0,
        "decontamination": "probes of the data build"
        if probes is not None
        else "off (no probes.npz in the corpus)",
        # always, with or without probes.npz: `_heldout_harness_check`
        "heldout_harness_decontamination": "on",
        "contaminated_examples": [],
        "malformed_examples": [],
        "rl_prompts_available": 0,
    }
    seen: set[str] = set()
    decon = None
    if probes is not None:
        from hillclimb.data.config import DecontaminateConfig
        from hillclimb.data.decontam import Decontaminator

        decon = Decontaminator(probes, DecontaminateConfig(), set())
    for p in paths:
        d = Path(p)
        admitted = refused = 0
        consent = _ServedConsent(d)
        try:
            lines = _records(d / "sft.jsonl")
            verdicts = [_consented(rec, consent) for _, rec in lines]
        finally:
            consent.close()
        if consent.unverifiable and any(v == "consent_unverifiable" for v in verdicts):
            counts.setdefault("consent_unverifiable", []).append(
                {"export": str(d), "why": consent.unverifiable}
            )
        if consent.attested_by is not None:
            n_api = sum(_source(rec) == "api" for _, rec in lines)
            if n_api:
                counts.setdefault("consent_attested", []).append(
                    {"export": str(d), "by": consent.attested_by, "api_records": n_api}
                )
        for (n, rec), why in zip(lines, verdicts, strict=True):
            meta = rec.get("meta") if isinstance(rec, dict) else None
            source = meta.get("source") if isinstance(meta, dict) else None
            if why is None and (bad := _malformed(rec, f"{d / 'sft.jsonl'}:{n}")):
                why = "malformed"
                if len(counts["malformed_examples"]) < 5:
                    counts["malformed_examples"].append(bad)
            if why is None and _event_key(rec, source) in seen:
                why = "duplicate"
            for check in (decon, _heldout_harness_check()):
                if why is not None or check is None:
                    continue
                verdict, m = check.check(record_text(rec), "flywheel", None)
                if verdict != "clean":
                    why = "contaminated"
                    counts["decontaminated"] += 1
                    if len(counts["contaminated_examples"]) < 5:
                        counts["contaminated_examples"].append(
                            {"export": str(d), "line": n, "probe": m.probe, "match": m.ngram}
                        )
            if why is None and source == "api":
                why = _client_written(rec)
            if why is None:
                seen.add(_event_key(rec, source))
                rec["kind"], rec["source"] = "flywheel", f"flywheel/{source}"
                records.append(rec)
                admitted += 1
                counts["by_source"][source] = counts["by_source"].get(source, 0) + 1
            else:
                refused += 1
                counts["refused"][why] = counts["refused"].get(why, 0) + 1
                counts["refused_no_consent"] += why == "no_consent"
        rl = d / "rl_prompts.jsonl"
        n_rl = len(_lines(rl)) if rl.is_file() else 0
        counts["exports"].append(
            {"path": str(d), "sft_examples": admitted, "refused": refused, "rl_prompts": n_rl}
        )
        counts["sft_examples"] += admitted
        counts["rl_prompts_available"] += n_rl
    return records, counts


# ---- harness RL: an export's tasks (`[rl_harness.<model>] flywheel`) ---------------------------

RL_PROMPTS = "rl_prompts.jsonl"


def _task_dir(ref: Any, export: Path) -> Path | None:
    """The task directory a `rl_prompts.jsonl` line names, or None when it names none. A relative
    path is read as `hillclimb rl --harness` reads it (from the working directory), else beside
    the export (an export directory moved with its tasks)."""
    raw = ref.get("task_dir") if isinstance(ref, dict) else None
    if not isinstance(raw, str) or not raw:
        return None
    p = Path(raw)
    if not p.is_absolute() and not p.is_dir() and (export / p).is_dir():
        p = export / p
    return p.resolve()


def _task_refs(export: Path, where: str) -> list[tuple[int, Path]]:
    """(line, absolute task directory) of each task an export's `rl_prompts.jsonl` names; a
    ConfigError naming the line for one that is not a task reference or whose directory is
    gone. Why an error and not a refusal: the export names these tasks as its RL signal, and a
    climb that silently trained on fewer than the recipe names would hide a moved task tree."""
    refs = export / RL_PROMPTS
    if not refs.is_file():
        raise ConfigError(
            f"{where}: flywheel export {export} has no {RL_PROMPTS} (the tasks harness RL trains "
            "on; `hillclimb telemetry export` writes it)"
        )
    try:
        lines = _records(refs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: flywheel export {exc}") from None
    out = []
    for n, ref in lines:
        task_dir = _task_dir(ref, export)
        if task_dir is None:
            raise ConfigError(
                f'{where}: {refs}:{n}: not a task reference (expected {{"task_id", "task_dir"}})'
            )
        if not (task_dir / "task.toml").is_file():
            raise ConfigError(
                f"{where}: {refs}:{n}: task directory {task_dir} does not exist (or holds no "
                "task.toml); restore the tasks the export was made from, or re-export"
            )
        out.append((n, task_dir))
    return out


def check_rl_exports(paths: list[str], where: str) -> None:
    """Clear errors at recipe load for `[rl_harness.<model>] flywheel` exports: not an export,
    a damaged line, a task reference whose task is gone — found before the data build and every
    training stage, not when the rl-harness stage starts."""
    check_exports(paths, where, read=True)
    for p in paths:
        _task_refs(Path(p), where)


def _task_text(task: Any) -> str:
    """What a task shows the model: its instruction and its repository's text files (what the
    held-out and evaluation probes are matched against)."""
    parts = [task.instruction]
    for f in sorted(task.repo.rglob("*")):
        if f.is_file() and f.stat().st_size < 1_000_000:
            try:
                parts.append(f.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                continue
    return "\n".join(parts)


def flywheel_rl_tasks(
    paths: list[str], probes: Any | None = None, exclude: list[Path] | None = None
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """(task references `{"task_id", "task_dir"}` admitted from the exports' `rl_prompts.jsonl`,
    counts for the stage record).

    The SFT path's rules, as they apply to a task (episodes are run afresh by the RL stage; no
    export text is trained on): a held-out task — by its `task.toml` meta, `heldout_reason` — is
    refused `evaluation_only_task`; a task whose instruction or repository contains held-out
    harness project code (`_heldout_harness_check`: meta can be edited) or an evaluation item of
    the data build's probes is refused `contaminated`; a task named twice (exports overlap) or
    already among `exclude` (the stage's generated tasks) is refused `duplicate`. Consent does
    not arise: `rl_prompts.jsonl` names only harness tasks (our generator's tasks, on which an
    episode failed or a user rejected one), never an API user's text."""
    from hillclimb.harness.task import load_task
    from hillclimb.harness.taskgen.common import heldout_reason

    check_exports(paths, "[rl_harness] flywheel")
    counts: dict[str, Any] = {
        "exports": [],
        "tasks": 0,
        "refused": {},
        "decontamination": "probes of the data build"
        if probes is not None
        else "off (no probes.npz in the corpus)",
        "heldout_harness_decontamination": "on",
        "contaminated_examples": [],
        "task_ids": [],
    }
    decon = None
    if probes is not None:
        from hillclimb.data.config import DecontaminateConfig
        from hillclimb.data.decontam import Decontaminator

        decon = Decontaminator(probes, DecontaminateConfig(), set())
    seen = {Path(p).resolve() for p in exclude or []}
    admitted: list[dict[str, str]] = []
    for p in paths:
        d = Path(p)
        refs = _task_refs(d, "[rl_harness] flywheel")
        kept = 0
        for n, task_dir in refs:
            try:
                task = load_task(task_dir)
            except HillclimbError as exc:
                raise ConfigError(f"{d / RL_PROMPTS}:{n}: {exc}") from None
            why = "duplicate" if task_dir in seen else None
            if why is None and heldout_reason(task.meta):
                why = "evaluation_only_task"
            for check in (decon, _heldout_harness_check()):
                if why is not None or check is None:
                    continue
                verdict, m = check.check(_task_text(task), "flywheel", None)
                if verdict != "clean":
                    why = "contaminated"
                    if len(counts["contaminated_examples"]) < 5:
                        counts["contaminated_examples"].append(
                            {"export": str(d), "line": n, "probe": m.probe, "match": m.ngram}
                        )
            if why is not None:
                counts["refused"][why] = counts["refused"].get(why, 0) + 1
                continue
            seen.add(task_dir)
            admitted.append({"task_id": task.id, "task_dir": str(task_dir)})
            kept += 1
        counts["exports"].append(
            {"path": str(d), "rl_prompts": len(refs), "tasks": kept, "refused": len(refs) - kept}
        )
    counts["tasks"] = len(admitted)
    counts["task_ids"] = sorted(t["task_id"] for t in admitted)
    return admitted, counts
