"""The harness package: sandbox, tools, agent loop, tasks, grading, telemetry.

One harness serves both RL rollouts and evaluation (DESIGN.md, "One engine, three users"): the
same task format, tools, episode runner and grader. Model-written code only ever runs through
`hillclimb.harness.sandbox.run_sandboxed`; everything here imports lazily so `hillclimb --help`
stays fast.
"""
