"""The arena's HTML, rendered on the server: no JavaScript, no build step, no template engine.

Why plain functions over f-strings: five small pages do not need a template language, and every
value that came from a user or a model goes through one escape function (`e`) — answers are
untrusted text, shown with `white-space: pre-wrap`, never as markup. The pages' Content Security
Policy (set in app.py) forbids scripts altogether, so an answer that contains `<script>` is text
twice over.

Blindness: a battle page before the vote contains the prompt, the two answers and the vote form —
no model name, path, URL or anything derived from them (ids are random). Names appear only on the
reveal after the vote and on the results page.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from hillclimb.eval.arena.ratings import ModelRating
from hillclimb.eval.arena.store import Battle

VOTE_LABELS = {
    "left": "Left is better",
    "right": "Right is better",
    "tie": "Tie",
    "both_bad": "Both are bad",
}

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}
header{display:flex;gap:1em;align-items:center;border-bottom:1px solid #ccc;margin-bottom:1em}
header h1{font-size:1.3em;margin:.4em 0;flex:1}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:1em}
.answer{border:1px solid #bbb;border-radius:6px;padding:.8em;white-space:pre-wrap;
  overflow-wrap:anywhere;font-family:ui-monospace,monospace;font-size:.9em;min-height:4em}
.prompt{background:#f4f4f4;padding:.8em;border-radius:6px;white-space:pre-wrap}
.votes button{margin:.3em;padding:.5em 1em;font-size:1em}
.error{background:#fee;border:1px solid #c66;padding:.8em;border-radius:6px}
.reveal{background:#eef7ee;border:1px solid #6a6;padding:.8em;border-radius:6px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
td.name,th.name{text-align:left}textarea{width:100%;font-family:inherit}
form.inline{display:inline}
"""


def e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _csrf(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(token)}">'


def layout(title: str, body: str, *, csrf: str | None = None, voter: str | None = None) -> str:
    nav = ""
    if voter is not None and csrf is not None:
        nav = (
            '<a href="/">New battle</a> <a href="/results">Results</a> '
            f"<span>{e(voter)}</span> "
            f'<form class="inline" method="post" action="/logout">{_csrf(csrf)}'
            '<button id="logout">Log out</button></form>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)} · hillclimb arena</title><style>{_CSS}</style></head><body>"
        f"<header><h1>hillclimb arena</h1>{nav}</header><main>{body}</main></body></html>"
    )


def login_page(csrf: str, error: str | None = None) -> str:
    err = f'<p class="error" id="error">{e(error)}</p>' if error else ""
    body = (
        f"{err}<p>Log in with your API key (the key `hillclimb keys create` gave you). "
        "Your votes are recorded under its account, one vote per prompt and pair of models.</p>"
        f'<form method="post" action="/login">{_csrf(csrf)}'
        '<label>API key <input id="key" name="key" type="password" autocomplete="off" size="50">'
        '</label> <button id="login">Log in</button></form>'
    )
    return layout("Log in", body)


def home_page(csrf: str, voter: str, n_prompts: int, error: str | None = None) -> str:
    err = f'<p class="error" id="error">{e(error)}</p>' if error else ""
    body = (
        f"{err}<p>Type a prompt, or draw one of {n_prompts} from the prompt set. Two anonymous "
        "models answer it side by side; vote for the better answer, then see who they were.</p>"
        f'<form method="post" action="/battle">{_csrf(csrf)}'
        '<textarea id="prompt" name="prompt" rows="6" maxlength="8000"></textarea><p>'
        '<button id="ask" name="action" value="ask">Ask both models</button> '
        '<button id="draw" name="action" value="draw">Draw a prompt</button></p></form>'
    )
    return layout("New battle", body, csrf=csrf, voter=voter)


def _answer(label: str, text: str, finish: str) -> str:
    note = ""
    if finish == "length":
        note = "<p><em>(cut off at the token limit)</em></p>"
    elif finish == "prompt_too_long":
        note = "<p><em>(the prompt did not fit this model's context)</em></p>"
    shown = text if text.strip() else "(empty answer)"
    return (
        f'<div><h2>{label}</h2><div class="answer" id="answer-{label.lower()}">{e(shown)}</div>'
        f"{note}</div>"
    )


def battle_page(b: Battle, csrf: str, voter: str) -> str:
    parts = [
        f'<h2>Prompt</h2><div class="prompt" id="battle-prompt">{e(b.prompt)}</div>',
        '<div class="cols">',
        _answer("Left", b.answer_left, b.finish_left),
        _answer("Right", b.answer_right, b.finish_right),
        "</div>",
    ]
    if b.outcome is None:
        buttons = "".join(
            f'<button id="vote-{k}" name="vote" value="{k}">{e(v)}</button>'
            for k, v in VOTE_LABELS.items()
        )
        parts.append(
            f'<form class="votes" method="post" action="/battle/{e(b.id)}/vote">'
            f"{_csrf(csrf)}{buttons}</form>"
        )
    else:
        parts.append(
            f'<div class="reveal" id="reveal"><p>You voted: <b>{e(VOTE_LABELS[b.outcome])}</b>.'
            f'</p><p>Left was <b id="model-left">{e(b.model_left)}</b>, right was '
            f'<b id="model-right">{e(b.model_right)}</b>.</p>'
            '<p><a id="next" href="/">Next battle</a> · <a id="results" href="/results">'
            "Results</a></p></div>"
        )
    return layout("Battle", "".join(parts), csrf=csrf, voter=voter)


def _ci(r: ModelRating) -> str:
    text = r.interval_text(" – ")
    return "–" if text == "-" else text


def results_page(
    ratings: Sequence[ModelRating],
    n_votes: int,
    *,
    csrf: str,
    voter: str,
    confidence: float,
    n_bootstrap: int,
    prior: float,
) -> str:
    if n_votes == 0:
        body = '<p id="no-votes">No votes yet.</p>'
        return layout("Results", body, csrf=csrf, voter=voter)
    rows = "".join(
        f'<tr><td>{r.rank}</td><td class="name">{e(r.model)}</td><td>{r.rating:.0f}</td>'
        f"<td>{_ci(r)}</td><td>{r.games}</td><td>{r.wins}</td><td>{r.ties}</td>"
        f"<td>{r.both_bad}</td><td>{r.losses}</td></tr>"
        for r in ratings
    )
    body = (
        f'<p id="n-votes">{n_votes} vote{"s" if n_votes != 1 else ""}.</p>'
        '<table id="ratings"><thead><tr><th>rank</th><th class="name">model</th>'
        f"<th>rating</th><th>{confidence:.0%} interval</th><th>votes</th><th>wins</th>"
        "<th>ties</th><th>both bad</th><th>losses</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        "<p>Bradley–Terry fit (MM) on the Elo scale, mean 1000; ties and both-bad votes count as "
        f"half a win each; {prior:g} virtual tie game(s) per pair keep the fit finite. Interval: "
        f"percentile bootstrap over votes, {n_bootstrap} resamples — the sampling error of these "
        "votes only.</p>"
    )
    return layout("Results", body, csrf=csrf, voter=voter)


def error_page(message: str, *, csrf: str | None = None, voter: str | None = None) -> str:
    body = f'<p class="error" id="error">{e(message)}</p><p><a href="/">Back</a></p>'
    return layout("Error", body, csrf=csrf, voter=voter)
