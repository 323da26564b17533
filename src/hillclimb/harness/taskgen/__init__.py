"""The task generator: verifiable coding tasks from a library of small tested projects.

`projects/<language>/<name>/` holds the projects as real files (package data: realistic little
Python packages with pytest tests, Node.js modules with `node:test` tests) and `corpus.py` reads
them; `mutate.py` / `js_mutate.py` are the transforms (bug injection, feature removal, rename,
extract-function), `questions.py` repository questions answered from the AST, `terminal.py` shell
tasks with verifier scripts, `common.py` what both languages share (task record, sandboxed test
runner, project draw), and `generate.py` (Python) with `js_tasks.py` (JavaScript) tie them
together and validate every task in the sandbox.
"""
