"""Reinforcement learning with verifiable rewards: rollouts, rewards, policy updates.

`rollout.rollout_and_check` is the one place problems are answered by a model and verified; the
evaluation (`hillclimb eval`) and RL both call it, so a number in a report and a reward in
training come from the same prompts, the same engine and the same checker.
"""
