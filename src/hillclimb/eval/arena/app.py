"""The arena web app (FastAPI, server-rendered HTML): log in with an API key, ask or draw a
prompt, read two anonymous answers side by side, vote, see who they were; results page.

Why these choices:
- Voters are the server's accounts: the API key `hillclimb keys create` issued is checked against
  the usage database (`serve.billing.UsageDB`), read-only — the arena never creates, changes or
  bills accounts. A voter is the account id, so one person cannot vote twice on a prompt and
  pair under two browser sessions. Without any account in that database the arena refuses to
  start (it could not tell voters apart).
- Sessions are server-side (store.py): an opaque random cookie (HttpOnly, SameSite=Strict), a
  new one on log-in (no session fixation). Every POST carries the session's CSRF token in a
  hidden field; a missing or wrong token is 403 before anything else is read or written.
- Blind: left/right order is drawn at random per battle, battle ids are random, and the battle
  page names no model until the vote is stored; the reveal is the same page after the vote.
- Forms are parsed here from `application/x-www-form-urlencoded` bodies (64 KiB cap), so the
  app needs no multipart dependency.
- FastAPI is imported at module level (unlike the CLI modules): route signatures are resolved
  from this module's globals; only `hillclimb arena` and tests import this module.
- Generation runs in worker threads (both answers at once); a failing model shows an error page
  and stores nothing.
"""

from __future__ import annotations

import concurrent.futures
import hmac
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from hillclimb.errors import HillclimbError
from hillclimb.eval.arena import pages
from hillclimb.eval.arena.models import MAX_PROMPT_CHARS, Contender, GenerationConfig, battle_seed
from hillclimb.eval.arena.ratings import Game, ModelRating, RatingConfig, rate
from hillclimb.eval.arena.store import AlreadyVoted, ArenaStore, Session, pair_key
from hillclimb.serve.billing import UsageDB

COOKIE = "hc_arena"
# Sized from the prompt limit, not a round number: form encoding turns a character into up to 12
# bytes (4 UTF-8 bytes, each `%XX`), so a fixed 64 KiB refused legal prompts of 8000 CJK
# characters (72 KB encoded) with a 413 — non-Latin voters got a lower limit than the page says.
MAX_FORM_BYTES = 12 * MAX_PROMPT_CHARS + 4096
OUTCOME_TO_GAME = {"left": "a", "right": "b", "tie": "tie", "both_bad": "both_bad"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _HTTPError(Exception):
    """A refusal shown as an error page with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _LoginFirst(Exception):
    """A page view without a logged-in session: answered with a redirect to /login."""


@dataclass
class ArenaConfig:
    gen: GenerationConfig = field(default_factory=GenerationConfig)
    rating: RatingConfig = field(default_factory=RatingConfig)
    secure_cookies: bool = False  # set the cookie's Secure flag (behind an HTTPS proxy)


class Arena:
    """What the routes act on: contenders, the vote store, the accounts, the prompt set."""

    def __init__(
        self,
        contenders: Sequence[Contender],
        store: ArenaStore,
        accounts: UsageDB,
        prompts: Sequence[str],
        cfg: ArenaConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        names = [c.name for c in contenders]
        if len(names) < 2:
            raise HillclimbError(f"the arena needs at least 2 models, got {len(names)}")
        if len(set(names)) != len(names):
            raise HillclimbError(f"duplicate model names: {names}")
        if accounts.count_accounts() == 0:
            raise HillclimbError(
                f"the usage database {accounts.path} has no API keys, so the arena cannot tell "
                "voters apart; create one per voter with `hillclimb keys create --name NAME` "
                "(same --db / --state-dir)"
            )
        if not prompts:
            raise HillclimbError("the prompt set is empty")
        self.contenders = {c.name: c for c in contenders}
        self.store = store
        self.accounts = accounts
        self.prompts = list(prompts)
        self.cfg = cfg or ArenaConfig()
        self.rng = rng or random.SystemRandom()
        self._results_lock = threading.Lock()
        self._results_cache: tuple[int, list[ModelRating]] | None = None

    # ---- battles --------------------------------------------------------------------------
    def _open_pairs(self, voter: str, prompt: str) -> list[tuple[str, str]]:
        done = self.store.voted_pairs(voter, prompt)
        names = sorted(self.contenders)
        return [
            (a, b)
            for i, a in enumerate(names)
            for b in names[i + 1 :]
            if pair_key(a, b) not in done
        ]

    def draw_prompt(self, voter: str) -> str:
        order = list(self.prompts)
        self.rng.shuffle(order)
        for p in order:
            if self._open_pairs(voter, p):
                return p
        raise AlreadyVoted("you have voted on every prompt of the prompt set for every pair")

    def start_battle(self, voter: str, prompt: str, source: str) -> str:
        """Answer `prompt` with a random pair in random order; store the battle; its id."""
        pairs = self._open_pairs(voter, prompt)
        if not pairs:
            raise AlreadyVoted(
                "you have voted on this prompt for every pair of models; ask another prompt"
            )
        pair = list(self.rng.choice(pairs))
        self.rng.shuffle(pair)
        left, right = (self.contenders[n] for n in pair)
        seed = battle_seed()
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            futs = [ex.submit(c.answer, prompt, self.cfg.gen, seed) for c in (left, right)]
            (la, lf), (ra, rf) = (f.result() for f in futs)
        return self.store.add_battle(
            voter=voter,
            prompt=prompt,
            source=source,
            left=(left.name, la, lf),
            right=(right.name, ra, rf),
            seed=seed,
        )

    # ---- results --------------------------------------------------------------------------
    def results(self) -> tuple[list[ModelRating], int]:
        votes = self.store.votes()
        with self._results_lock:
            if self._results_cache is not None and self._results_cache[0] == len(votes):
                return self._results_cache[1], len(votes)
            ratings = ratings_from_votes(votes, self.contenders, self.cfg.rating)
            self._results_cache = (len(votes), ratings)
        return ratings, len(votes)


def ratings_from_votes(
    votes: Sequence[Any], models: Sequence[str] | dict[str, Any], cfg: RatingConfig
) -> list[ModelRating]:
    """Ratings over the given models and every model that appears in a stored vote."""
    names = set(models)
    for v in votes:
        names.update((v.model_left, v.model_right))
    games = [Game(v.model_left, v.model_right, OUTCOME_TO_GAME[v.outcome]) for v in votes]
    return rate(sorted(names), games, cfg)


# ---- the web app --------------------------------------------------------------------------
def create_app(arena: Arena) -> FastAPI:
    app = FastAPI(title="hillclimb arena", docs_url=None, redoc_url=None, openapi_url=None)
    store = arena.store

    def html(body: str, status: int = 200) -> Response:
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    def with_cookie(r: Response, token: str) -> Response:
        r.set_cookie(
            COOKIE, token, httponly=True, samesite="strict", secure=arena.cfg.secure_cookies
        )
        return r

    def redirect(url: str, token: str | None = None) -> Response:
        r = RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
        return r if token is None else with_cookie(r, token)

    def session_of(request: Request) -> tuple[str | None, Session | None]:
        token = request.cookies.get(COOKIE)
        return token, store.session(token)

    async def form_of(request: Request) -> dict[str, str]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise _HTTPError(415, "expected a form (application/x-www-form-urlencoded)")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise _HTTPError(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
        except (UnicodeDecodeError, ValueError) as exc:
            raise _HTTPError(400, f"malformed form: {exc}") from None
        return {k: v[0] for k, v in fields.items()}

    async def checked_post(request: Request) -> tuple[str, Session, dict[str, str]]:
        """Session + form of a POST whose CSRF token matches the session's (else 403)."""
        token, sess = session_of(request)
        form = await form_of(request)
        sent = form.get("csrf", "")
        if token is None or sess is None or not hmac.compare_digest(sent, sess.csrf):
            raise _HTTPError(403, "missing or wrong CSRF token: reload the page and try again")
        return token, sess, form

    @app.exception_handler(_HTTPError)
    async def _http_error(request: Request, exc: _HTTPError) -> Response:
        _, sess = session_of(request)
        voter = sess.voter_name if sess and sess.voter else None
        return html(
            pages.error_page(exc.message, csrf=sess.csrf if sess else None, voter=voter),
            exc.status,
        )

    def account_gone(sess: Session) -> str | None:
        """Why a logged-in session's account may no longer vote (None: it may).

        Read on every request, as the server reads a key's account on every request: the
        account was checked only at log-in, so `hillclimb keys revoke` left a voter who was
        logged in battling and voting for the rest of the session's 7 days."""
        try:
            acc = arena.accounts.account_by_name(sess.voter_name or "")
        except HillclimbError:
            acc = None
        if acc is None or f"account:{acc.id}" != sess.voter:
            return "your account no longer exists under this name: log in again"
        if acc.disabled:
            return "your API key has been revoked: log in with a valid key"
        return None

    def voter_of(sess: Session | None, token: str | None = None) -> tuple[str, str]:
        if sess is None or sess.voter is None or sess.voter_name is None:
            raise _HTTPError(401, "log in first")
        gone = account_gone(sess)
        if gone is not None:
            if token is not None:
                store.end_session(token)
            raise _HTTPError(401, gone)
        return sess.voter, sess.voter_name

    def page_voter(request: Request) -> tuple[Session, str, str]:
        """Session, voter and name of a logged-in page view (else: redirect to /login)."""
        token, sess = session_of(request)
        if sess is None or sess.voter is None or sess.voter_name is None:
            raise _LoginFirst
        if account_gone(sess) is not None:
            if token is not None:
                store.end_session(token)
            raise _LoginFirst
        return sess, sess.voter, sess.voter_name

    @app.exception_handler(_LoginFirst)
    async def _login_first(request: Request, exc: _LoginFirst) -> Response:
        return redirect("/login")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "models": len(arena.contenders)}

    @app.get("/login")
    async def login_form(request: Request) -> Response:
        token, sess = session_of(request)
        if sess is None:
            token = store.new_session()
            sess = store.session(token)
            assert sess is not None
            return with_cookie(html(pages.login_page(sess.csrf)), token)
        return html(pages.login_page(sess.csrf))

    @app.post("/login")
    async def login(request: Request) -> Response:
        old, sess, form = await checked_post(request)
        key = form.get("key", "").strip()
        acc = arena.accounts.account_by_key(key) if key else None
        if acc is None or acc.disabled:
            return html(pages.login_page(sess.csrf, "unknown or disabled API key"), 401)
        new = store.new_session(voter=f"account:{acc.id}", voter_name=acc.name)
        store.end_session(old)
        return redirect("/", new)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        token, _, _ = await checked_post(request)
        store.end_session(token)
        return redirect("/login")

    @app.get("/")
    async def home(request: Request) -> Response:
        sess, _, name = page_voter(request)
        return html(pages.home_page(sess.csrf, name, len(arena.prompts)))

    @app.post("/battle")
    async def new_battle(request: Request) -> Response:
        token, sess, form = await checked_post(request)
        voter, name = voter_of(sess, token)

        def refuse(msg: str, status: int) -> Response:
            return html(pages.home_page(sess.csrf, name, len(arena.prompts), msg), status)

        try:
            if form.get("action") == "draw":
                prompt, source = arena.draw_prompt(voter), "drawn"
            else:
                prompt, source = form.get("prompt", "").strip(), "typed"
                if not prompt:
                    return refuse("type a prompt, or draw one", 400)
                if len(prompt) > MAX_PROMPT_CHARS:
                    return refuse(f"the prompt is longer than {MAX_PROMPT_CHARS} characters", 400)
            bid = await run_in_threadpool(arena.start_battle, voter, prompt, source)
        except AlreadyVoted as exc:
            return refuse(str(exc), 409)
        except HillclimbError as exc:
            return refuse(f"a model failed to answer: {exc}", 502)
        return redirect(f"/battle/{bid}")

    def own_battle(battle_id: str, voter: str) -> Any:
        b = store.battle(battle_id)
        if b is None or b.voter != voter:  # another voter's battle is not found either
            raise _HTTPError(404, "no such battle")
        return b

    @app.get("/battle/{battle_id}")
    async def show_battle(battle_id: str, request: Request) -> Response:
        sess, voter, name = page_voter(request)
        return html(pages.battle_page(own_battle(battle_id, voter), sess.csrf, name))

    @app.post("/battle/{battle_id}/vote")
    async def vote(battle_id: str, request: Request) -> Response:
        token, sess, form = await checked_post(request)
        voter, name = voter_of(sess, token)
        b = own_battle(battle_id, voter)
        outcome = form.get("vote", "")
        if outcome not in pages.VOTE_LABELS:
            raise _HTTPError(400, f"unknown vote {outcome!r}")
        if b.outcome is not None:
            raise _HTTPError(409, "you have already voted on this battle")
        try:
            store.vote(battle_id, voter, outcome)
        except AlreadyVoted as exc:
            raise _HTTPError(409, str(exc)) from None
        return redirect(f"/battle/{battle_id}")

    @app.get("/results")
    async def results(request: Request) -> Response:
        sess, _, name = page_voter(request)
        try:
            ratings, n = await run_in_threadpool(arena.results)
        except HillclimbError as exc:
            # e.g. `--prior 0` while the win graph is not yet strongly connected: the stored votes
            # do not determine ratings yet. A state of the data, not a server fault (no 500).
            raise _HTTPError(409, f"no ratings from the stored votes yet: {exc}") from None
        rc = arena.cfg.rating
        return html(
            pages.results_page(
                ratings,
                n,
                csrf=sess.csrf,
                voter=name,
                confidence=rc.confidence,
                n_bootstrap=rc.n_bootstrap,
                prior=rc.prior,
            )
        )

    return app
