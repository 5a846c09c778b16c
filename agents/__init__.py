"""Attacks and constrained solvers: each an `Agent(env, policy=None, **hparams).learn(total_steps, callback)`."""
from rlft_gym.agents.grpo import GRPO
from rlft_gym.agents.sb3 import CostInfoMonitor, SB3Bridge, make_sb3_env

__all__ = ["GRPO", "CostInfoMonitor", "SB3Bridge", "make_sb3_env"]
