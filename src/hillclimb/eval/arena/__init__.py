"""The blind side-by-side arena (`hillclimb arena`): people compare two anonymous answers.

Why it exists: the suites score what a checker can verify; preference between two whole answers
is what users feel and no checker measures. Pieces: `store.py` (SQLite sessions, battles, votes;
one vote per voter per prompt and pair), `ratings.py` (Bradley–Terry with bootstrap intervals),
`models.py` (contenders through `eval.backends`, the prompt set), `pages.py` (HTML),
`app.py` (the FastAPI app), `cli.py` (the command). See docs/areas/arena.md.
"""
