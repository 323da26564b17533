"""Can one API account learn another's prompt from the prefix cache? (session 25; JSON out)

Two keys on one server (micro models, server defaults). Alice sends a private prompt; Bob sends
the exact text (a right guess) and a variant (a wrong guess). `cached_tokens` of Bob's right
guess above his wrong guess means Bob can confirm Alice's prompt by guessing it. Before the
per-account cache scope: 165/166 vs 39/166; after: 0 (the count of a prompt nobody sent).

Usage: python bench/redteam/cache_scope.py
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path += [str(ROOT / "tests"), str(ROOT / "src")]  # PYTHONPATH=OLD/src compares old code

import httpx  # noqa: E402

from _server_util import load_engines, make_checkpoints  # noqa: E402
from hillclimb.serve.auth import KeySpec  # noqa: E402
from hillclimb.serve.server import ServerThread, build_state  # noqa: E402

A, B = "hc-test-alice-key-0001", "hc-test-bob-key-000002"


def main() -> None:
    root = pathlib.Path(tempfile.mkdtemp())
    engines = load_engines(make_checkpoints(root), max_batch=4, speculative=False)
    state = build_state(
        engines, db=root / "u.sqlite", keys=[KeySpec(A, "alice"), KeySpec(B, "bob")]
    )
    secret = (
        "Alice's private contract: the price is 41,337 dollars, payable to account 99-1234. " * 2
    )
    out = {}
    with ServerThread(state) as srv:

        def cached(key: str, prompt: str) -> list[int]:
            r = httpx.post(
                srv.url + "/v1/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "thinking", "prompt": prompt, "max_tokens": 2, "temperature": 0},
                timeout=60,
            ).json()["usage"]
            return [r["prompt_tokens_details"]["cached_tokens"], r["prompt_tokens"]]

        out["alice"] = cached(A, secret)
        out["bob_right_guess"] = cached(B, secret)
        out["bob_wrong_guess"] = cached(B, secret.replace("41,337", "55,555"))
        out["alice_repeat"] = cached(A, secret)
    print(json.dumps({"bench": "redteam_cache_scope", "cached_tokens_of_prompt_tokens": out}))


if __name__ == "__main__":
    main()
