"""Attacks and constrained solvers: each an `Agent(env, policy=None, **hparams).learn(total_steps, callback)`."""

from rlft_gym.agents.best_of_n import BestOfN, best_of_n
from rlft_gym.agents.dai import AlphaSchedule, ExpertGuidedGRPO, SFTExpert, dai
from rlft_gym.agents.dpo import DPO
from rlft_gym.agents.grpo import GRPO
from rlft_gym.agents.grpo_lagrangian import GRPOLagrangian
from rlft_gym.agents.ppo import PPO
from rlft_gym.agents.ppo_lagrangian import PPOLagrangian
from rlft_gym.agents.sb3 import CostInfoMonitor, SB3Bridge, make_sb3_env
from rlft_gym.agents.sft import SFT
from rlft_gym.agents.trl_grpo import TRLGRPO

__all__ = ["GRPO", "PPO", "BestOfN", "CostInfoMonitor", "SB3Bridge", "best_of_n", "make_sb3_env"]
__all__ += ["AlphaSchedule", "ExpertGuidedGRPO", "SFTExpert", "dai"]
__all__ += ["DPO", "SFT", "TRLGRPO"]
__all__ += ["GRPOLagrangian", "PPOLagrangian"]
