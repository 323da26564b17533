"""The harness package: tools, agent loop, tasks, grading, telemetry.

One harness serves both RL rollouts and evaluation (DESIGN.md, "One engine, three users"): the
same task format, tools, episode runner and grader. Model-written code only ever runs through
`hillclimb.sandbox.run_sandboxed` (the sandbox is a foundation package of its own, below every
user of it); everything here imports lazily so `hillclimb --help` stays fast.
"""
