"""Attacks and constrained solvers: each an `Agent(env, policy=None, **hparams).learn(total_steps, callback)`."""
from rlft_gym.agents.grpo import GRPO

__all__ = ["GRPO"]
