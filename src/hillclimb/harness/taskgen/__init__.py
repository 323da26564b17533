"""The task generator: verifiable coding tasks from a library of small tested Python projects.

`corpus.py` holds the projects (realistic little packages, each with pytest tests),
`mutate.py` the AST transforms (bug injection, feature removal, rename, extract-function),
`questions.py` repository questions answered from the AST, `terminal.py` shell tasks with
verifier scripts, and `generate.py` ties them together and validates every task in the sandbox.
"""
