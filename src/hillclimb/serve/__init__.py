"""Serving: the generation engine (batching, sampling, speculative decoding, reasoning budget),
the "auto" router, and the OpenAI-compatible server.

The engine is a library first (DESIGN.md, "One engine, three users"): the server, the agent
harness, RL rollouts and evaluation all import `hillclimb.serve.engine.Engine`. Nothing heavy is
imported here so `hillclimb --help` stays fast.
"""
